"""Surrogates for identifier columns, which are never learned: Faker values in the source's format."""

from __future__ import annotations

import pandas as pd
from faker import Faker

from llmsynth.serialize.codecs import IdentifierColumn

UPPER = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"


def fill_identifiers(table: pd.DataFrame, columns: list[IdentifierColumn], seed: int) -> pd.DataFrame:
    """Add one surrogate per row for each identifier column; e-mails follow a name column when there is one."""
    fake = Faker("en_US")
    # A stream of its own: Faker seeded with a small number is how test and demo data are made (ours is), and the same
    # seed would write the source's very names back (the relational demo's first customers came out as its own).
    fake.seed_instance(f"llmsynth identifiers {seed}")
    names: list[str] | None = None
    for column in columns:
        if column.identifier_type == "name":
            values = [fake.name() for _ in range(len(table))]
            names = names or values
        elif column.identifier_type == "email":
            values = [_email(fake, names[i] if names else fake.name()) for i in range(len(table))]
        elif column.identifier_type == "address":
            values = [fake.street_address() for _ in range(len(table))]
        elif column.identifier_type == "ssn":
            values = [fake.ssn() for _ in range(len(table))]
        else:
            pattern = column.shape.replace("#", "\\#").replace("9", "#").replace("A", "?") or "????-####"
            values = [fake.bothify(pattern, letters=UPPER) for _ in range(len(table))]
        table[column.name] = values
    return table


def _email(fake: Faker, name: str) -> str:
    parts = [p for p in name.lower().replace(".", "").split() if p.isalpha()] or ["user"]
    return f"{parts[0]}.{parts[-1]}{fake.random_int(1, 99)}@{fake.free_email_domain()}"
