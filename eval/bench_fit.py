"""Time to reach a quality: llmsynth's default recipe (tiny-cpu) as shipped at several depths, and under budgets.

Same tables, split and judges as eval/bench_peers.py (run in its environment by `make bench`): each setting is a fresh
process that fits the training rows and draws as many rows as the holdout has; quality by llmsynth's evaluation suite,
SDMetrics' QualityReport and mostlyai-qa. The depths are what the recipe's one layer was chosen on: the same stopping
rule (two epochs of decay once validation levels off) with 1 and 2 layers (4 by `--layers`). Writes a
docs/benchmarks.md section and eval/results/bench_fit.json.
"""

from __future__ import annotations

import argparse
import json
import time

from bench_peers import TABLES, judge, run_generator, split
from report import machine, versions, write_section

from llmsynth.data.schema import infer_schema


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tables", nargs="+", default=["adult"], choices=list(TABLES),
                        help="Tables (default Adult: all three would add some 15 minutes to `make bench`).")
    parser.add_argument("--layers", nargs="+", type=int, default=[1, 2], help="Depths to run as shipped (four "
                        "layers, 4.5x one layer's time, last ran at 4f141a9: docs/benchmarks.md).")
    parser.add_argument("--budgets", nargs="+", type=float, default=[], help="Training budgets (seconds) to run the "
                        "recipe under, at its own depth.")
    parser.add_argument("--train-rows", type=int, default=5000)
    parser.add_argument("--holdout-rows", type=int, default=2000)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    settings = [{"num_layers": layers, "budget_seconds": None} for layers in args.layers] + \
               [{"num_layers": None, "budget_seconds": budget} for budget in args.budgets]
    started = time.perf_counter()
    results: dict = {}
    for name in args.tables:
        spec = TABLES[name]
        source = spec.load()
        source = source[[c.name for c in infer_schema(source).learned]]
        train, holdout = split(source, args.train_rows, args.holdout_rows, args.seed)
        schema = infer_schema(train)
        results[name] = []
        for setting in settings:
            print(f"[{name}] {setting} ...", flush=True)
            run = run_generator("llmsynth", train, len(holdout), args.seed, setting)
            rows = run.pop("rows")
            run.update(setting=setting, rows_per_second=len(rows) / run["sample_seconds"],
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
             f"recipe as shipped (it stops two epochs after validation levels off) at each depth, and under each "
             f"wall-clock budget asked for, each in a fresh process, on the split of the peer benchmark "
             f"({s['train_rows']:,} training rows, {s['holdout_rows']:,} holdout rows drawn, seed {s['seed']}); "
             "columns as in the peer table; validation loss is the best reached (lower is better; comparable within "
             "a table). A budget stops training at the first validation past it."]
    for name, runs in figures["tables"].items():
        lines += ["", f"**{TABLES[name].title}**:", "",
                  "| layers | budget (s) | fit (s) | epochs | stopped | validation loss | rows/s | valid | shapes "
                  "| pair trends | SDM score | QA accuracy | detection AUC | TSTR ratio | DCR share |",
                  "|---:|---:|---:|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
        for run in runs:
            ours, sdm, setting, details = run["ours"], run["sdmetrics"], run["setting"], run["details"]
            budget = f"{setting['budget_seconds']:.0f}" if setting["budget_seconds"] else "none"
            lines.append(f"| {setting['num_layers'] or 'recipe'} | {budget} | {run['fit_seconds']:.0f} "
                         f"| {details['epochs']:.0f} | {details['stopped_because']} "
                         f"| {details['best_validation_loss']:.4f} | {run['rows_per_second']:.0f} "
                         f"| {run['valid_share']:.1%} | {ours['column_shapes']:.3f} | {ours['column_pair_trends']:.3f} "
                         f"| {sdm['score']:.3f} | {run['mostlyai_qa']['overall']:.3f} | {ours['detection_auc']:.3f} "
                         f"| {ours['tstr_ratio']:.3f} | {ours['dcr_share']:.3f} |")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
