"""Demo acceptance figures: train+generate time and quality of `llmsynth demo` on this machine.

Runs the same code as `llmsynth demo` (tiny-cpu recipe, 3-minute training budget) and writes its
figures to docs/benchmarks.md and eval/results/bench_demo.json.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

from llmsynth.demo import run_tabular_demo

sys.path.insert(0, str(Path(__file__).resolve().parent))
from report import machine, versions, write_section  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=4000)
    parser.add_argument("--samples", type=int, default=1000)
    parser.add_argument("--max-minutes", type=float, default=3.0)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as out:
        figures = run_tabular_demo(Path(out), rows=args.rows, samples=args.samples, max_minutes=args.max_minutes)
    figures.update(machine=machine(), versions=versions("llmsynth", "torch", "transformers"), setting=vars(args))
    f = figures
    body = f"""Machine: {f['machine']}. Versions: {', '.join(f'{k} {v}' for k, v in f['versions'].items())}.
Demo customers table, {args.rows} rows (80% train), tiny-cpu recipe with a {args.max_minutes:g}-minute training
budget, {args.samples} rows generated, compared with the training rows.

| figure | value | target |
|---|---|---|
| training (s) | {f['train_seconds']:.0f} | |
| generation (s) | {f['generate_seconds']:.1f} ({f['rows_per_second']:.0f} rows/s) | train+generate <= 240 s |
| rows valid | {f['valid_share']:.1%} | 100% |
| mean column shape (KS/TV complement) | {f['mean_column_shape']:.3f} | >= 0.85 |
| income-credit score correlation | real {f['income_credit_corr_real']:.3f}, synthetic {f['income_credit_corr_synthetic']:.3f} | within 0.1 |
| is_fraud share | real {f['fraud_share_real']:.2%}, synthetic {f['fraud_share_synthetic']:.2%} | within 1 point |

Reproduce: `.venv/bin/python eval/bench_demo.py` (after `make install`).
"""
    write_section("Demo quality and time (`eval/bench_demo.py`)", body, figures, "bench_demo")
    print(body)


if __name__ == "__main__":
    main()
