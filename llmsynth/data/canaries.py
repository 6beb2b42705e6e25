"""Canaries (Carlini et al. 2019, "The Secret Sharer"): random secrets put into the training data to measure what
the model memorized (the measuring is in `llmsynth.evaluate.canary`).

Secrets of one format ("Hi, my reference number is 7 3 9 1 0 4 2 8") go into the training data after scrubbing
(the scrubber would erase them before), each a chosen number of times; reference canaries of the same format are
never put in, and show what chance looks like. The DP audit's canaries are each put in once or not at all by a
coin flip (Steinke, Nasr and Jagielski 2023, "Privacy auditing with one (1) training run"). The secrets live in a file beside the synthesizer directory
(`model.canaries.json` for `model/`), never inside it, so the model can be shipped without them.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import BaseModel, Field, ValidationError

from llmsynth.data.io import write_text
from llmsynth.errors import DataError

PREFIX = "Hi, my reference number is"
DIGITS = 8
REFERENCES = 8
FILE_FORMAT = "llmsynth-canaries"


class Canary(BaseModel):
    secret: str = Field(description="Digits separated by spaces, as they appear in the training text.")
    inserted: int = Field(description="Copies in the training data; 0 for a reference canary.")
    audit: bool = Field(False, description="One of the DP audit's canaries: inserted once or not, by a coin flip.")


class CanarySet(BaseModel):
    format: str = FILE_FORMAT
    kind: str = Field(description="'tabular' or 'chat': the synthesizer the canaries went into.")
    prefix: str = PREFIX
    digits: int = DIGITS
    template: dict[str, Any] = Field(default_factory=dict, description="Where in a record the secret goes.")
    canaries: list[Canary]
    seed: int = 0

    @property
    def inserted(self) -> list[Canary]:
        return [c for c in self.canaries if c.inserted]

    @property
    def copies(self) -> list[str]:
        """The secrets as many times as they go into training."""
        return [c.secret for c in self.inserted for _ in range(c.inserted)]


def parse_counts(text: str) -> list[int]:
    """'1,4,16,64' -> [1, 4, 16, 64]: how many times each canary is inserted (one canary per count)."""
    try:
        counts = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise DataError(f"canary counts must be whole numbers separated by commas, like 1,4,16,64; got {text!r}") \
            from None
    if not counts or min(counts) < 1:
        raise DataError(f"canary counts must be at least 1; got {text!r}")
    return counts


def random_secret(rng: np.random.Generator, digits: int) -> str:
    return " ".join(str(d) for d in rng.integers(0, 10, digits))


def make_canaries(kind: str, counts: Sequence[int], seed: int = 0, references: int = REFERENCES,
                  digits: int = DIGITS, audit: int = 0) -> CanarySet:
    """One canary per count and `references` never-inserted ones (none without counts), and `audit` canaries each
    inserted once with probability 1/2 (the one-run DP audit's); all distinct secrets drawn from `seed`."""
    rng = np.random.default_rng([seed, 0xCA4A])
    references = references if counts else 0
    secrets: list[str] = []
    while len(secrets) < len(counts) + references + audit:
        secret = random_secret(rng, digits)
        if secret not in secrets:
            secrets.append(secret)
    first_audit = len(counts) + references
    inserted = [Canary(secret=s, inserted=int(k)) for s, k in zip(secrets, counts)]
    flips = np.random.default_rng([seed, 0xA0D1]).random(audit) < 0.5
    return CanarySet(kind=kind, digits=digits, seed=seed,
                     canaries=inserted + [Canary(secret=s, inserted=0) for s in secrets[len(counts):first_audit]]
                     + [Canary(secret=s, inserted=int(flip), audit=True)
                        for s, flip in zip(secrets[first_audit:], flips)])


def canary_path(model_dir: str | Path) -> Path:
    """The canary file of a synthesizer directory: beside it, not inside it."""
    model_dir = Path(model_dir)
    return model_dir.parent / f"{model_dir.resolve().name}.canaries.json"


def write_canaries(canaries: CanarySet, path: Path) -> Path:
    write_text(path, canaries.model_dump_json(indent=2))
    return path


def read_canaries(path: str | Path) -> CanarySet:
    path = Path(path)
    try:
        canaries = CanarySet.model_validate(json.loads(path.read_text(encoding="utf-8")))
    except OSError as error:
        raise DataError(f"{path}: cannot read the canary file ({error.strerror})") from None
    except (ValueError, ValidationError) as error:
        raise DataError(f"{path}: not a canary file written by `llmsynth train --canaries` ({error})") from None
    if canaries.format != FILE_FORMAT:
        raise DataError(f"{path}: not a canary file (format {canaries.format!r})")
    return canaries
