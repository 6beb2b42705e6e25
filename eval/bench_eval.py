"""How long the evaluation suite takes at scale: 50,000 synthetic rows x 15 learned columns against 50,000
training rows and a 12,500-row holdout, on this machine's CPUs (target: 60 s).

    .venv/bin/python eval/bench_eval.py [--rows 50000] [--repeats 3]

The "synthetic" rows are fresh draws of the demo customers table (plus four derived columns): the figures then
also show what a perfect generator scores.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

from llmsynth.data.demo import customers
from llmsynth.evaluate import evaluate_tables, write_report

sys.path.insert(0, str(Path(__file__).resolve().parent))
from report import machine, versions, write_section  # noqa: E402


def wide_customers(n: int, seed: int) -> pd.DataFrame:
    """The demo customers table with four more learned columns (15 in all), related to the others."""
    table = customers(n, seed=seed)
    rng = np.random.default_rng(seed + 1)
    table["tenure_months"] = rng.integers(1, 240, n)
    table["products"] = np.clip(rng.poisson(1 + table["annual_income"] / 60000), 1, 8)
    table["channel"] = rng.choice(["branch", "online", "mobile", "phone"], n, p=[0.2, 0.35, 0.35, 0.1])
    table["balance"] = (table["annual_income"] * rng.uniform(0, 0.5, n)).round(2)
    return table


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=50_000)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()

    started = time.perf_counter()
    source = wide_customers(args.rows * 2 + args.rows // 4, seed=0)
    train = source.iloc[:args.rows]
    synthetic = source.iloc[args.rows:2 * args.rows].reset_index(drop=True)
    holdout = source.iloc[2 * args.rows:].reset_index(drop=True)
    print(f"data: {len(train)} train, {len(holdout)} holdout, {len(synthetic)} synthetic rows "
          f"({time.perf_counter() - started:.0f}s to build)", flush=True)

    seconds, report_seconds, evaluation = [], [], None
    for repeat in range(args.repeats):
        started = time.perf_counter()
        evaluation = evaluate_tables(train, holdout, synthetic, target="is_fraud", seed=repeat)
        seconds.append(time.perf_counter() - started)
        with tempfile.TemporaryDirectory() as folder:
            write_report(evaluation, folder)
        report_seconds.append(time.perf_counter() - started - seconds[-1])
        print(f"run {repeat + 1}: {seconds[-1]:.1f}s + report {report_seconds[-1]:.1f}s", flush=True)
    metrics = evaluation.metrics
    columns = len(metrics["columns"])
    figures = {"rows": args.rows, "holdout": len(holdout), "learned_columns": columns, "seconds": seconds,
               "median_seconds": statistics.median(seconds), "report_seconds": report_seconds,
               "median_report_seconds": statistics.median(report_seconds), "machine": machine(),
               "versions": versions("scikit-learn", "scipy", "pandas", "numpy"),
               "checks": {c["metric"]: round(c["value"], 4) for c in metrics["checks"]}}
    body = f"""Machine: {figures['machine']}. Command: `.venv/bin/python eval/bench_eval.py --rows {args.rows}`.

`evaluate_tables` on {args.rows:,} synthetic rows x {columns} learned columns against {args.rows:,} training rows and a
{len(holdout):,}-row holdout (target column `is_fraud`): every figure (shapes, pair trends, detection, TSTR, exact
matches, DCR / NNDR / membership by chunked brute-force neighbour search), no subsampling but the DCR's equal-size
training sample.

| runs | figures, median | all runs | + metrics.json and report.html, median |
|---|---|---|---|
| {args.repeats} | {figures['median_seconds']:.1f} s | {', '.join(f'{s:.1f}' for s in seconds)} s | {figures['median_report_seconds']:.1f} s |

Figures of this "perfect generator" (fresh draws of the same distribution): """ + ", ".join(
        f"{k} {v}" for k, v in figures["checks"].items()) + "."
    write_section("Evaluation suite at scale", body, figures, "bench_eval")
    print(body)


if __name__ == "__main__":
    main()
