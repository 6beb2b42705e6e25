"""Scrubbing a table: a per-column policy from the schema, with a report that never repeats the PII."""

from __future__ import annotations

from collections import Counter

import pandas as pd
from tqdm.auto import tqdm

from llmsynth.data.schema import infer_schema
from llmsynth.scrub.engine import ScrubConfig, build_analyzer
from llmsynth.scrub.pseudonyms import Pseudonymizer
from llmsynth.scrub.text import Findings, replacement, scrub_text
from llmsynth.serialize.codecs import IdentifierColumn, TextColumn, is_null

IDENTIFIER_ENTITIES = {"name": "PERSON", "email": "EMAIL_ADDRESS", "phone": "PHONE_NUMBER", "ssn": "US_SSN",
                       "address": "ADDRESS", "id": "ID"}


def scrub_table(table: pd.DataFrame, config: ScrubConfig | None = None,
                column_kinds: dict[str, str] | None = None, progress: bool = True) -> tuple[pd.DataFrame, dict, set]:
    """Identifier columns get consistent surrogates, free-text columns span scrubbing; the rest is kept.

    Returns the scrubbed table, a JSON-ready report, and the raw (entity, value) pairs found, which the
    caller may keep privately for PII-replay tests and must never put next to the output.
    """
    config = config or ScrubConfig()
    schema = infer_schema(table, column_kinds)
    pseudonyms = Pseudonymizer(config.secret_env)
    scrubbed = table.copy()
    raw: set[tuple[str, str]] = set()
    columns = {}
    text_columns = [c for c in schema.columns if isinstance(c, TextColumn)]
    analyzer = build_analyzer(config) if text_columns else None
    identifiers = [c for c in schema.columns if isinstance(c, IdentifierColumn)]
    row_identifiers = [  # each record's own identifier values, looked for again in its free text
        [(IDENTIFIER_ENTITIES[c.identifier_type], str(v)) for c in identifiers if not is_null(v := row[c.name])]
        for _, row in table[[c.name for c in identifiers]].iterrows()
    ] if text_columns else []
    for column in schema.columns:
        values = table[column.name]
        if isinstance(column, IdentifierColumn):
            entity = IDENTIFIER_ENTITIES[column.identifier_type]
            scrubbed[column.name] = [None if is_null(v) else replacement(entity, str(v), config, pseudonyms)
                                     for v in values]
            raw |= {(entity, str(v)) for v in values if not is_null(v)}
            columns[column.name] = {"policy": "identifier: replaced whole", "entity": entity,
                                    "replaced": int(values.notna().sum())}
        elif isinstance(column, TextColumn):
            findings = Findings()
            cells = tqdm(values, desc=f"scrubbing {column.name}", unit="cell", disable=not progress)
            scrubbed[column.name] = [None if is_null(v) else
                                     scrub_text(str(v), analyzer, config, pseudonyms, findings, row_identifiers[i])
                                     for i, v in enumerate(cells)]
            raw |= findings.raw_values
            columns[column.name] = {"policy": "free text: spans replaced", "entities": dict(findings.counts),
                                    "replaced": sum(findings.counts.values()), "examples": findings.examples}
        else:
            columns[column.name] = {"policy": "kept", "kind": column.kind}
    report = {
        "rows": len(table),
        "mode": config.mode,
        "ner": (analyzer.ner_enabled if analyzer else None),
        "spacy_model": (analyzer.spacy_model if analyzer else None),
        "keyed_pseudonyms": pseudonyms.keyed,
        "entities": dict(sum((Counter(c.get("entities", {})) for c in columns.values()), Counter())),
        "columns": columns,
    }
    return scrubbed, report, raw

