"""Time to reach a quality: llmsynth's default recipe (tiny-cpu) trained under several wall-clock budgets.

Same tables, split and judges as eval/bench_peers.py (run in its environment by `make bench`): each budget is a fresh
process that fits the training rows and draws as many rows as the holdout has; quality by llmsynth's evaluation suite
and SDMetrics' QualityReport. Writes a docs/benchmarks.md section and eval/results/bench_fit.json.
"""

from __future__ import annotations

import argparse
import json
import time

from bench_peers import TABLES, judge, run_isolated, split
from report import machine, versions, write_section

from llmsynth.data.schema import infer_schema


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tables", nargs="+", default=["adult"], choices=list(TABLES))
    parser.add_argument("--budgets", nargs="+", type=float, default=[60, 120, 180], help="Training budgets, seconds.")
    parser.add_argument("--train-rows", type=int, default=5000)
    parser.add_argument("--holdout-rows", type=int, default=2000)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    started = time.perf_counter()
    results: dict = {}
    for name in args.tables:
        spec = TABLES[name]
        source = spec.load()
        source = source[[c.name for c in infer_schema(source).learned]]
        train, holdout = split(source, args.train_rows, args.holdout_rows, args.seed)
        schema = infer_schema(train)
        results[name] = []
        for budget in args.budgets:
            print(f"[{name}] budget {budget:.0f} s ...", flush=True)
            run = run_isolated("llmsynth", train, len(holdout), args.seed, {"budget_seconds": budget})
            rows = run.pop("rows")
            run.update(budget_seconds=budget, rows_per_second=len(rows) / run["sample_seconds"],
                       **judge(train, holdout, rows, schema, spec.target, args.seed))
            run.pop("paper", None)
            results[name].append(run)
            print(json.dumps(run, default=float), flush=True)
    figures = {"machine": machine(), "versions": versions("llmsynth", "torch", "transformers", "sdmetrics"),
               "setting": vars(args), "tables": results, "minutes": (time.perf_counter() - started) / 60}
    write_section("Time to reach a quality (`eval/bench_fit.py`)", markdown(figures), figures, "bench_fit")


def markdown(figures: dict) -> str:
    s = figures["setting"]
    packages = ", ".join(f"{package} {number}" for package, number in figures["versions"].items())
    lines = [f"Machine: {figures['machine']}. Versions: {packages}.",
             f"Command: `python eval/bench_fit.py` (in `make bench`; {figures['minutes']:.0f} minutes). The tiny-cpu "
             f"recipe under each wall-clock budget, each in a fresh process, on the split of the peer benchmark "
             f"({s['train_rows']:,} training rows, {s['holdout_rows']:,} holdout rows drawn, seed {s['seed']}); "
             "columns as in the peer table. Training stops at the first validation past the budget, so fit time runs "
             "a little over it."]
    for name, runs in figures["tables"].items():
        lines += ["", f"**{TABLES[name].title}**:", "",
                  "| budget (s) | fit (s) | epochs | rows/s | valid | shapes | pair trends | SDM score "
                  "| detection AUC | TSTR ratio | DCR share |",
                  "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
        for run in runs:
            ours, sdm = run["ours"], run["sdmetrics"]
            lines.append(f"| {run['budget_seconds']:.0f} | {run['fit_seconds']:.0f} | {run['details']['epochs']:.0f} "
                         f"| {run['rows_per_second']:.0f} | {run['valid_share']:.1%} | {ours['column_shapes']:.3f} "
                         f"| {ours['column_pair_trends']:.3f} | {sdm['score']:.3f} | {ours['detection_auc']:.3f} "
                         f"| {ours['tstr_ratio']:.3f} | {ours['dcr_share']:.3f} |")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
