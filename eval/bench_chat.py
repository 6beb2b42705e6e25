"""Chat demo acceptance figures: train+generate time, structure, conditioning, diversity, copying, PII replay.

Runs the same code as `llmsynth demo --kind chat` (tiny-chat recipe, 3-minute training budget) and writes its
figures to docs/benchmarks.md and eval/results/bench_chat.json.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

from llmsynth.chat_synthesizer import ChatSynthesizer
from llmsynth.data.chats import read_chats
from llmsynth.data.demo import CHAT_INTENTS
from llmsynth.demo import CHAT_TEMPERATURE, run_chat_demo
from llmsynth.evaluate.text import label_agreement

sys.path.insert(0, str(Path(__file__).resolve().parent))
from report import machine, versions, write_section  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--conversations", type=int, default=600)
    parser.add_argument("--samples", type=int, default=210)
    parser.add_argument("--max-minutes", type=float, default=3.0)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as out:
        figures, _ = run_chat_demo(Path(out), conversations=args.conversations, samples=args.samples,
                                max_minutes=args.max_minutes)
        # The same model at temperature 1, against the same real conversations (the demo's train split).
        real = read_chats(Path(out) / "train.jsonl").conversations  # scrubbed by the pipeline
        plain = ChatSynthesizer.load(Path(out) / "model").sample(
            args.samples, mix={"intent": {i: 1 / len(CHAT_INTENTS) for i in CHAT_INTENTS}}, temperature=1.0)
        figures["intent_agreement_temperature_1"] = label_agreement(real, plain, "intent")
    figures.update(machine=machine(), versions=versions("llmsynth", "torch", "transformers"), setting=vars(args))
    f = figures
    total = f["train_seconds"] + f["generate_seconds"]
    ratio = f["distinct_2_synthetic"] / f["distinct_2_real"]
    body = f"""Machine: {f['machine']}. Versions: {', '.join(f'{k} {v}' for k, v in f['versions'].items())}.
Demo support chats, {args.conversations} conversations (80% train), scrubbed, tiny-chat recipe with a
{args.max_minutes:g}-minute training budget, {args.samples} conversations generated with an even mix of the 7 intents
at temperature {CHAT_TEMPERATURE:g}.

| figure | value | target |
|---|---|---|
| training + generation (s) | {f['train_seconds']:.0f} + {f['generate_seconds']:.0f} = {total:.0f} ({f['conversations_per_second']:.1f} conversations/s) | <= 300 s |
| structurally valid conversations | {f['structure_valid_share']:.1%} | 100% |
| requested intent recognized (TF-IDF + logistic regression trained on the real scrubbed chats) | {f['intent_agreement']:.1%} (at temperature 1: {f['intent_agreement_temperature_1']:.1%}) | >= 90% |
| distinct-2, synthetic vs real | {f['distinct_2_synthetic']:.3f} vs {f['distinct_2_real']:.3f} ({ratio:.2f}x) | within 20% |
| turns > 40 characters copied verbatim from training | {f['verbatim_turn_share']:.1%} (real holdout: {f['verbatim_turn_share_holdout']:.1%}) | < 1% |
| ground-truth PII values of the source in the output (whole words) | {f['pii_values_replayed']} | 0 |
| PII re-scrubbed in the output (not training surrogates) | {f['rescrubbed']} | |

Reproduce: `.venv/bin/python eval/bench_chat.py` (after `make install`).
"""
    write_section("Chat demo quality and time (`eval/bench_chat.py`)", body, figures, "bench_chat")
    print(body)


if __name__ == "__main__":
    main()
