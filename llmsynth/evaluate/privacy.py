"""Privacy against a holdout: exact copies, distance to closest record (DCR), nearest-neighbour distance ratio
(NNDR), a nearest-neighbour membership attack, and replay of the source's raw PII values.

Each figure has a baseline from rows the model never saw, because real data has near-duplicates of its own: a
synthetic row being close to a training row only means something if it is closer than a fresh real row is.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.metrics import roc_auc_score
from sklearn.neighbors import NearestNeighbors

from llmsynth.data.schema import Schema
from llmsynth.errors import DataError
from llmsynth.evaluate.features import distance_vectors, row_keys, typed
from llmsynth.evaluate.text import replayed_values


def exact_match_rates(train: pd.DataFrame, holdout: pd.DataFrame, synthetic: pd.DataFrame,
                      schema: Schema) -> dict[str, float]:
    """Share of synthetic rows that equal a training row, and the same share for holdout rows (the rate at which
    real data repeats itself, which a good generator need not beat)."""
    known = set(row_keys(typed(train, schema), schema))
    return {role: float(row_keys(typed(frame, schema), schema).isin(known).mean())
            for role, frame in (("synthetic", synthetic), ("holdout", holdout))}


def nearest_rows(reference: np.ndarray, queries: np.ndarray, k: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """Distances from each query to its k nearest reference rows and their indices (brute force in chunks: no
    n x n matrix)."""
    index = NearestNeighbors(n_neighbors=min(k, len(reference)), algorithm="brute").fit(reference)
    return index.kneighbors(queries, return_distance=True)


def _nearest(reference: np.ndarray, queries: np.ndarray, k: int = 1) -> np.ndarray:
    return nearest_rows(reference, queries, k)[0]


def closer_share(to_train: np.ndarray, to_holdout: np.ndarray) -> float:
    """DCR share: synthetic records nearer a training record than any holdout record (ties half)."""
    return float((to_train < to_holdout).mean() + 0.5 * (to_train == to_holdout).mean())


def _nndr(distances: np.ndarray) -> np.ndarray:
    """Nearest over second-nearest distance; 0 for an exact copy, near 1 for a row in a crowd."""
    if distances.shape[1] < 2:
        return np.zeros(len(distances))
    first, second = distances[:, 0], distances[:, 1]
    return np.divide(first, second, out=np.zeros_like(first), where=second > 0)


def distance_figures(train: pd.DataFrame, holdout: pd.DataFrame, synthetic: pd.DataFrame, schema: Schema,
                     seed: int = 0) -> tuple[dict[str, float], dict[str, np.ndarray]]:
    """DCR share, NNDR and the membership attack's AUC, with the distances behind them for the report.

    Training rows are subsampled to the holdout's size (or the holdout to the training rows'), so that a synthetic
    row drawn from the real distribution is as likely to be nearer one as the other: a DCR share of 0.5."""
    size = min(len(train), len(holdout))
    train_rows = typed(train, schema).sample(size, random_state=seed)
    holdout_rows = typed(holdout, schema).sample(size, random_state=seed)
    synthetic_rows = typed(synthetic, schema)
    train_vectors, holdout_vectors, synthetic_vectors = distance_vectors(
        train_rows, [train_rows, holdout_rows, synthetic_rows], schema)

    to_train = _nearest(train_vectors, synthetic_vectors, k=2)
    to_holdout = _nearest(holdout_vectors, synthetic_vectors)[:, 0]
    holdout_to_train = _nearest(train_vectors, holdout_vectors, k=2)

    # Membership: a training row nearer to some synthetic row than a holdout row is, is guessed a member.
    member_distance = _nearest(synthetic_vectors, train_vectors)[:, 0]
    outsider_distance = _nearest(synthetic_vectors, holdout_vectors)[:, 0]
    labels = np.r_[np.ones(size), np.zeros(size)]
    figures = {
        "dcr_share": closer_share(to_train[:, 0], to_holdout),
        "dcr_median_train": float(np.median(to_train[:, 0])),
        "dcr_median_holdout": float(np.median(to_holdout)),
        "nndr_median": float(np.median(_nndr(to_train))),
        "nndr_median_holdout": float(np.median(_nndr(holdout_to_train))),
        "membership_auc": float(roc_auc_score(labels, -np.r_[member_distance, outsider_distance])),
        "compared_rows": size,
    }
    return figures, {"synthetic_to_train": to_train[:, 0], "synthetic_to_holdout": to_holdout,
                     "holdout_to_train": holdout_to_train[:, 0]}


def read_raw_pii(path: str | Path) -> list[tuple[str, str]]:
    """The (entity, value) pairs `llmsynth scrub --raw-pii` wrote, one JSON object per line."""
    path = Path(path)
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as error:
        raise DataError(f"cannot read the raw PII file {path}: {error}") from None
    pairs = []
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
            pairs.append((str(record["entity"]), str(record["value"])))
        except (json.JSONDecodeError, KeyError, TypeError):
            raise DataError(f"{path}, line {number}: expected a JSON object with 'entity' and 'value' "
                            "(as `llmsynth scrub --raw-pii` writes)") from None
    return pairs


def pii_replay(raw_pii: Sequence[tuple[str, str]], synthetic_texts: Sequence[str], holdout_texts: Sequence[str],
               seed: int = 0) -> dict:
    """How many of the source's raw PII values appear in the synthetic output, and in as many holdout records
    (scrubbed data that never reached the model: what surrogates and common words give by chance). Counts per
    entity type only: the report must not repeat the PII."""
    size = min(len(synthetic_texts), len(holdout_texts))
    rng = np.random.default_rng(seed)
    sample = [synthetic_texts[i] for i in rng.choice(len(synthetic_texts), size, replace=False)]
    values = {value for _, value in raw_pii}
    found = {"synthetic": replayed_values(sample, values), "holdout": replayed_values(holdout_texts[:size], values)}
    entity_of = dict((value, entity) for entity, value in raw_pii)
    return {
        "raw_values": len(values),
        "compared_records": size,
        "synthetic_share": len(found["synthetic"]) / len(values) if values else 0.0,
        "holdout_share": len(found["holdout"]) / len(values) if values else 0.0,
        "synthetic_by_entity": dict(Counter(entity_of[v] for v in found["synthetic"])),
        "synthetic_only": len(found["synthetic"] - found["holdout"]),
    }


def row_texts(table: pd.DataFrame) -> list[str]:
    """Each row's cells as one line of text, for PII replay."""
    return table.astype(str).agg(" | ".join, axis=1).tolist()
