"""Demo acceptance figures: train+generate time and quality of `llmsynth demo` on this machine.

Runs the same code as `llmsynth demo` (tiny-cpu recipe, 3-minute training budget) and writes its
figures to docs/benchmarks.md and eval/results/bench_demo.json.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

from llmsynth import TabularSynthesizer
from llmsynth.demo import run_tabular_demo
from llmsynth.evaluate.fidelity import correlation

sys.path.insert(0, str(Path(__file__).resolve().parent))
from report import machine, versions, write_section  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=4000)
    parser.add_argument("--samples", type=int, default=1000)
    parser.add_argument("--max-minutes", type=float, default=3.0)
    parser.add_argument("--large-sample", type=int, default=10000, help="Rows drawn again to measure shares.")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as out:
        figures, _ = run_tabular_demo(Path(out), rows=args.rows, samples=args.samples, max_minutes=args.max_minutes)
        # The demo's 1,000 rows leave about +-0.6 points of sampling noise on a 4% share; a larger draw
        # from the same model measures the model itself.
        large = TabularSynthesizer.load(Path(out) / "model").sample(args.large_sample, seed=1)
    figures["fraud_share_large_sample"] = float(large["is_fraud"].mean())
    figures["income_credit_corr_large_sample"] = correlation(large, "annual_income", "credit_score")
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
| same, over {args.large_sample:,} rows from the same model | {f['fraud_share_large_sample']:.2%}; correlation {f['income_credit_corr_large_sample']:.3f} | |

Reproduce: `.venv/bin/python eval/bench_demo.py` (after `make install`).
"""
    write_section("Demo quality and time (`eval/bench_demo.py`)", body, figures, "bench_demo")
    print(body)


if __name__ == "__main__":
    main()
