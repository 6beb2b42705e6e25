"""Scrubbing a table: a per-column policy from the schema, with a report that never repeats the PII."""

from __future__ import annotations

import logging
import re
from collections import Counter

import pandas as pd

from llmsynth.data.schema import infer_schema
from llmsynth.errors import ScrubError
from llmsynth.scrub.engine import ScrubConfig, build_analyzer
from llmsynth.scrub.pseudonyms import Pseudonymizer
from llmsynth.scrub.text import Findings, detect, replacement, scrub_spans
from llmsynth.serialize.codecs import IdentifierColumn, TextColumn, is_null

log = logging.getLogger(__name__)
# Sweeney's triple: ZIP code, birth date and sex single out most people; each kind, by column name.
QUASI_IDENTIFIERS = {"postcode": re.compile(r"zip|postal|postcode", re.I), "birth date": re.compile(r"birth|dob", re.I),
                     "sex": re.compile(r"^(sex|gender)$", re.I)}
QUASI_UNIQUE_WARNING = 0.05  # warn when more than this share of rows is unique on the combination

IDENTIFIER_ENTITIES = {"name": "PERSON", "email": "EMAIL_ADDRESS", "phone": "PHONE_NUMBER", "ssn": "US_SSN",
                       "address": "ADDRESS", "id": "ID"}


def scrub_table(table: pd.DataFrame, config: ScrubConfig | None = None,
                column_kinds: dict[str, str] | None = None, progress: bool = True) -> tuple[pd.DataFrame, dict, set]:
    """Identifier columns get consistent surrogates, free-text columns span scrubbing; the rest is kept.

    Returns the scrubbed table, a JSON-ready report, and the raw (entity, value) pairs found, which the
    caller may keep privately for PII-replay tests and must never put next to the output.
    """
    config = config or ScrubConfig()
    if "messages" in table.columns:
        raise ScrubError("the input has a 'messages' column: it looks like conversations; scrub it with --kind chat")
    schema = infer_schema(table, column_kinds, min_rows=1)
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
            cells = [None if is_null(v) else str(v) for v in values]
            texts = [c for c in cells if c is not None]
            found = iter(detect(texts, analyzer, config, progress=f"scrubbing {column.name}" if progress else None))
            scrubbed[column.name] = [None if c is None else
                                     scrub_spans(c, next(found), config, pseudonyms, findings, row_identifiers[i])
                                     for i, c in enumerate(cells)]
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
        "quasi_identifiers": quasi_identifiers(table),
    }
    return scrubbed, report, raw


def quasi_identifiers(table: pd.DataFrame) -> dict | None:
    """Columns that together single people out (ZIP + birth date + sex), with the share of rows they make unique.

    They are kept (the synthesizer needs them), so the caller warns; coarsening (ZIP3, birth year) is the fix.
    """
    found = {}
    for kind, pattern in QUASI_IDENTIFIERS.items():
        match = next((c for c in table.columns if pattern.search(str(c))), None)
        if match is not None:
            found[kind] = str(match)
    if len(found) < 2:
        return None
    sizes = table.groupby(list(found.values()), dropna=False).size()
    unique_share = float((sizes == 1).sum() / len(table))
    warning = None
    if unique_share > QUASI_UNIQUE_WARNING:
        warning = (f"columns {list(found.values())} together single out {unique_share:.0%} of rows; "
                   "coarsen them (e.g. 3-digit ZIP, birth year) or drop one before training")
        log.warning("quasi-identifiers: %s", warning)
    return {"columns": found, "unique_rows_share": round(unique_share, 4), "warning": warning}

