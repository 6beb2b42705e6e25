"""Chat demo acceptance figures: train+generate time, structure, conditioning, diversity, copying, PII replay.

Runs the same code as `llmsynth demo --kind chat` (tiny-chat recipe, 3-minute training budget) several times, each
run with its own seed (demo chats, split, training, generation), and writes the median and range of each figure to
docs/benchmarks.md and eval/results/bench_chat.json: one run's figure depends on how training happened to go.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
from pathlib import Path

from llmsynth.synthesizers.chat import GUIDANCE, ChatSynthesizer
from llmsynth.data.chats import read_chats
from llmsynth.data.demo import CHAT_INTENTS
from llmsynth.demo import CHAT_TEMPERATURE, run_chat_demo
from llmsynth.evaluate.text import label_agreement, verbatim_share

sys.path.insert(0, str(Path(__file__).resolve().parent))
from report import machine, versions, write_section  # noqa: E402

ROWS = [  # (figure, label, format, target)
    ("total_seconds", "training + generation (s)", "{:.0f}", "<= 300 s"),
    ("generate_seconds", "of which generation (s)", "{:.0f}", ""),
    ("structure_valid_share", "structurally valid conversations", "{:.1%}", "100%"),
    ("intent_agreement", "requested intent recognized (TF-IDF + logistic regression trained on the real scrubbed "
     "chats)", "{:.1%}", ">= 90%"),
    ("intent_agreement_unguided", "the same without guidance (`--guidance 1`)", "{:.1%}", ""),
    ("intent_agreement_temperature_1", "the same at temperature 1 (with guidance)", "{:.1%}", ""),
    ("distinct_2_ratio", "distinct-2, synthetic / real", "{:.2f}x", "within 20%"),
    ("verbatim_turn_share", "turns > 40 characters copied verbatim from training", "{:.2%}", "< 1%"),
    ("verbatim_turn_share_unfiltered", "the same, generated with `--allow-copies`", "{:.1%}", ""),
    ("verbatim_turn_share_holdout", "the same for the real holdout conversations", "{:.1%}", ""),
    ("containing_training_turn_share", "turns > 40 characters that contain a whole training turn > 40 characters",
     "{:.1%}", ""),
    ("copies_resampled", "turns sampled again because they closed as a copy", "{:.0f}", ""),
    ("pii_values_replayed", "ground-truth PII values of the source in the output (whole words)", "{:.0f}", "0"),
    ("rescrubbed", "PII re-scrubbed in the output (not training surrogates)", "{:.0f}", ""),
    ("epochs", "epochs trained (best checkpoint kept)", "{:.0f}", ""),
]


def one_run(seed: int, args) -> dict:
    with tempfile.TemporaryDirectory() as out:
        figures, run = run_chat_demo(Path(out), conversations=args.conversations, samples=args.samples,
                                     max_minutes=args.max_minutes, seed=seed)
        real = read_chats(Path(out) / "train.jsonl").conversations  # scrubbed by the pipeline
        synthetic = read_chats(Path(out) / "synthetic.jsonl").conversations
        long_real = {m["content"].strip() for c in real for m in c["messages"] if len(m["content"].strip()) > 40}
        long_synthetic = [m["content"].strip() for c in synthetic for m in c["messages"]
                          if len(m["content"].strip()) > 40]
        figures["containing_training_turn_share"] = (sum(any(t in s for t in long_real) for s in long_synthetic)
                                                     / len(long_synthetic))
        # The same model at temperature 1, and without the novelty filter, against the same real conversations.
        model = ChatSynthesizer.load(Path(out) / "model")
        even = {"intent": {i: 1 / len(CHAT_INTENTS) for i in CHAT_INTENTS}}
        figures["intent_agreement_unguided"] = label_agreement(
            real, model.sample(args.samples, mix=even, seed=seed, temperature=CHAT_TEMPERATURE, guidance=1.0))
        figures["intent_agreement_temperature_1"] = label_agreement(
            real, model.sample(args.samples, mix=even, seed=seed, temperature=1.0))
        copies = model.sample(args.samples, mix=even, seed=seed, temperature=CHAT_TEMPERATURE, allow_copies=True)
        figures["verbatim_turn_share_unfiltered"] = verbatim_share(
            [m["content"] for c in copies for m in c["messages"]], [m["content"] for c in real for m in c["messages"]])
    figures.update(total_seconds=figures["train_seconds"] + figures["generate_seconds"],
                   distinct_2_ratio=figures["distinct_2_synthetic"] / figures["distinct_2_real"],
                   epochs=run.synthesizer.summary.epochs, stopped_because=run.synthesizer.summary.stopped_because)
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--conversations", type=int, default=600)
    parser.add_argument("--samples", type=int, default=210)
    parser.add_argument("--max-minutes", type=float, default=3.0)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    args = parser.parse_args()
    runs = [one_run(seed, args) for seed in args.seeds]
    lines = []
    for key, label, form, target in ROWS:
        values = [r[key] for r in runs]
        spread = f" ({form.format(min(values))} - {form.format(max(values))})" if len(values) > 1 else ""
        per_run = ", ".join(form.format(v) for v in values)
        lines.append(f"| {label} | {form.format(statistics.median(values))}{spread} | {per_run} | {target} |")
    figures = {"runs": runs, "machine": machine(), "versions": versions("llmsynth", "torch", "transformers"),
               "setting": vars(args)}
    body = f"""Machine: {figures['machine']}. Versions: {', '.join(f'{k} {v}' for k, v in figures['versions'].items())}.
Demo support chats, {args.conversations} conversations (80% train), scrubbed, tiny-chat recipe with a
{args.max_minutes:g}-minute training budget, {args.samples} conversations generated with an even mix of the 7 intents
at temperature {CHAT_TEMPERATURE:g} with classifier-free guidance {GUIDANCE:g} and the novelty filter (a turn that
closes as a training turn's copy is sampled again). {len(runs)} runs, seeds {', '.join(map(str, args.seeds))} (each its own demo chats, split, training and
generation): median (min - max), then each run.

| figure | median (range) | per run | target |
|---|---|---|---|
{chr(10).join(lines)}

Stopped by: {', '.join(r['stopped_because'] for r in runs)}.

Reproduce: `.venv/bin/python eval/bench_chat.py` (after `make install`; about 4 minutes a run).
"""
    write_section("Chat demo quality and time (`eval/bench_chat.py`)", body, figures, "bench_chat")
    print(body)


if __name__ == "__main__":
    main()
