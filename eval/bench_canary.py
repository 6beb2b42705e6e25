"""Canary memorization test on the demo chats, without and with differential privacy, side by side.

Runs the chat demo's pipeline (`llmsynth demo --kind chat`: split, scrub, train the tiny-chat recipe, generate 210
conversations at temperature 0.8, evaluate) twice with canaries inserted 1, 4, 16 and 64 times: once plainly within
the demo's 3-minute budget, once with DP-SGD at epsilon 8 (the tiny-chat-dp recipe: fixed epochs, larger batches). Writes exposure, extraction
and the evaluation's main figures of both runs to docs/benchmarks.md and eval/results/bench_canary.json.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

from llmsynth.demo import run_chat_demo
from llmsynth.data.canaries import parse_counts

sys.path.insert(0, str(Path(__file__).resolve().parent))
from report import machine, versions, write_section  # noqa: E402

FIGURES = [  # (label, path in metrics.json, format)
    ("requested intent recognized (label agreement)", "utility.label_agreement", ".1%"),
    ("utility ratio (intent classifier, synthetic / real)", "utility.ratio", ".3f"),
    ("label shape", "fidelity.label_shape", ".3f"),
    ("turn length shape", "fidelity.turn_length_shape", ".3f"),
    ("distinct-2 gap", "fidelity.distinct_2_gap", ".3f"),
    ("verbatim turn excess", "privacy.verbatim_excess", ".3f"),
    ("8-gram overlap excess", "privacy.ngram8_excess", ".3f"),
    ("nearest-conversation similarity excess", "privacy.similarity_excess", ".3f"),
]


def _figure(metrics: dict, path: str):
    for key in path.split("."):
        metrics = metrics[key]
    return metrics


def _run(args, counts: list[int], options: dict, max_minutes: float) -> dict:
    with tempfile.TemporaryDirectory() as out:
        _, run = run_chat_demo(Path(out), conversations=args.conversations, samples=args.samples,
                               max_minutes=max_minutes, train_options={"canaries": counts, **options})
    summary = run.synthesizer.summary
    return {"metrics": run.evaluation.metrics, "validation_loss": summary.best_validation_loss,
            "initial_validation_loss": summary.initial_validation_loss, "epochs": summary.epochs,
            "stopped_because": summary.stopped_because, "train_seconds": run.seconds["train"],
            "privacy": summary.privacy}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--conversations", type=int, default=600)
    parser.add_argument("--samples", type=int, default=210)
    parser.add_argument("--max-minutes", type=float, default=3.0, help="Training budget of the run without DP.")
    parser.add_argument("--canaries", default="1,4,16,64")
    parser.add_argument("--dp-recipe", default="tiny-chat-dp", help="Recipe of the DP run (epochs, batch, epsilon).")
    args = parser.parse_args()
    counts = parse_counts(args.canaries)
    runs = {"plain": _run(args, counts, {}, args.max_minutes),
            "dp": _run(args, counts, {"recipe": args.dp_recipe}, 60.0)}
    figures = {**runs, "machine": machine(), "versions": versions("llmsynth", "torch", "transformers", "opacus"),
               "setting": vars(args)}

    plain, dp = (runs[name]["metrics"]["canaries"] for name in ("plain", "dp"))
    rows = []
    for a, b in zip(plain["by_insertions"], dp["by_insertions"]):
        rows.append(f"| {a['inserted'] or 'never (8 references)'} | {a['exposure']:.1f} | {b['exposure']:.1f} | "
                    f"{a['p_secret']:.1e} | {b['p_secret']:.1e} | {a['prompted_hits']} / {b['prompted_hits']} | "
                    f"{a['bulk_hits']} / {b['bulk_hits']} |")
    utility = [f"| validation loss (initial {runs['plain']['initial_validation_loss']:.2f}) | "
               f"{runs['plain']['validation_loss']:.3f} | {runs['dp']['validation_loss']:.3f} |",
               f"| epochs (stopped by) | {runs['plain']['epochs']:g} ({runs['plain']['stopped_because']}) | "
               f"{runs['dp']['epochs']:g} ({runs['dp']['stopped_because']}) |"]
    for label, path, spec in FIGURES:
        utility.append(f"| {label} | {format(_figure(runs['plain']['metrics'], path), spec)} | "
                       f"{format(_figure(runs['dp']['metrics'], path), spec)} |")
    privacy = runs["dp"]["privacy"]
    nl = "\n"
    body = f"""Machine: {figures['machine']}. Versions: {', '.join(f'{k} {v}' for k, v in figures['versions'].items())}.
Demo support chats, {args.conversations} conversations (80% train), scrubbed; one canary conversation per count put
into the training part {args.canaries} times (a training conversation opening with "{plain['format']}"), 8 reference
canaries never inserted. Without DP: the tiny-chat recipe in the demo's {args.max_minutes:g}-minute budget. With DP: the
{args.dp_recipe} recipe, DP-SGD (Opacus, per-conversation clipping at norm {privacy['max_grad_norm']:g}, Poisson sampling at
rate {privacy['sample_rate']:.3f}, RDP accountant) for {runs['dp']['epochs']:g} epochs, epsilon {privacy['epsilon']:.2f} spent of
{privacy['target_epsilon']:g}, delta {privacy['delta']:.1e} (1/n^1.2), noise multiplier {privacy['noise_multiplier']:.3f}.
Exposure ranks each secret among {plain['candidates_scored']:,} random candidates (skew-normal extrapolation; at most
{plain['space_bits']:.1f} bits); extraction samples {plain['prompted_samples']} continuations of each canary's prefix
at temperature {plain['temperature']:g} and searches the {plain['bulk_records']} generated conversations.

| canary inserted | exposure, no DP (bits) | exposure, DP eps {privacy['target_epsilon']:g} | p(secret after prefix), no DP | DP | prompted hits, no DP / DP | bulk hits, no DP / DP |
|---|---:|---:|---:|---:|---:|---:|
{nl.join(rows)}

Exposure of the 64x canary over the references: **{plain['exposure_excess']:.1f} bits without DP, {dp['exposure_excess']:.1f}
bits with DP**; inserted canaries extracted: {plain['extracted']} without DP, {dp['extracted']} with DP. DP bounds what
one record can do to the model; a canary put in k times is a group of k records, covered only at k x epsilon, so the
most-repeated canaries can stay above the references while the once-inserted ones sit at chance.

The cost in utility (same data, same canaries; evaluation suite against the holdout):

| figure | no DP | DP eps {privacy['target_epsilon']:g} |
|---|---:|---:|
{nl.join(utility)}

Reproduce: `.venv/bin/python eval/bench_canary.py` (after `make install`; about 12 minutes). A single run:
`llmsynth demo --kind chat --canaries 1,4,16,64`, whose report has the canary section.
"""
    write_section("Canary memorization test, without and with DP (`eval/bench_canary.py`)", body, figures,
                  "bench_canary")
    print(body)


if __name__ == "__main__":
    main()
