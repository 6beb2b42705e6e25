"""Span scrubbing of free text with the analyzer and a pseudonymizer."""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field

from llmsynth.scrub.engine import Analyzer, ScrubConfig
from llmsynth.scrub.pseudonyms import Pseudonymizer


@dataclass
class Findings:
    """What was found and replaced; raw values are kept only in memory unless the user asks for them."""

    counts: Counter = field(default_factory=Counter)
    examples: list[str] = field(default_factory=list)
    raw_values: set[tuple[str, str]] = field(default_factory=set)


def replacement(entity: str, value: str, config: ScrubConfig, pseudonyms: Pseudonymizer) -> str:
    """What a found value becomes, by the configured mode."""
    if config.mode == "tag":
        return f"<{entity}>"
    if config.mode == "redact":
        return ""
    return pseudonyms.surrogate(entity, value)


@dataclass(frozen=True)
class Span:
    start: int
    end: int
    entity_type: str


def known_spans(text: str, known: Sequence[tuple[str, str]]) -> list[Span]:
    """Where the record's own identifier values (entity, value) occur in the text, ignoring case."""
    spans = []
    for entity, value in known:
        if len(value) >= 3:
            spans += [Span(m.start(), m.end(), entity) for m in re.finditer(re.escape(value), text, re.IGNORECASE)]
    return spans


def scrub_text(text: str, analyzer: Analyzer, config: ScrubConfig, pseudonyms: Pseudonymizer,
               findings: Findings, known: Sequence[tuple[str, str]] = ()) -> str:
    """Replace what Presidio finds and, first, the record's own identifier values (`known`)."""
    detected = [Span(r.start, r.end, r.entity_type)
                for r in analyzer.engine.analyze(text, language="en", entities=config.entities)]
    kept: list[Span] = []
    for span in known_spans(text, known) + sorted(detected, key=lambda r: (r.start, -(r.end - r.start))):
        if any(span.start < other.end and other.start < span.end for other in kept):
            continue  # overlaps a finding already kept: known values, then earlier and longer ones, win
        kept.append(span)
    kept.sort(key=lambda span: span.start)
    pieces, cursor = [], 0
    for result in kept:
        value = text[result.start:result.end]
        pieces += [text[cursor:result.start], replacement(result.entity_type, value, config, pseudonyms)]
        cursor = result.end
        findings.counts[result.entity_type] += 1
        findings.raw_values.add((result.entity_type, value))
    pieces.append(text[cursor:])
    scrubbed = "".join(pieces)
    if kept and len(findings.examples) < 5:
        findings.examples.append(_masked_example(text, kept))
    return scrubbed


def _masked_example(text: str, kept) -> str:
    """The text with each finding shown as its type, so a report never repeats the PII itself."""
    pieces, cursor = [], 0
    for result in kept:
        pieces += [text[cursor:result.start], f"<{result.entity_type}>"]
        cursor = result.end
    pieces.append(text[cursor:])
    return "".join(pieces)[:200]
