"""Per-record risk: which training records the synthetic data exposes most, so that a user can drop or fix them
before a release.

A training record is exposed when the synthetic data come closer to it than they come to records the model never
saw. For a row: its distance to the nearest synthetic row over its distance to the nearest holdout row (how crowded
its neighbourhood is: a typical row has synthetic rows close by without being memorized, an outlier does not); for a
conversation: its TF-IDF similarity to the most similar synthetic conversation. That closeness is ranked among the
holdout records' own (each holdout row measured against the other holdout rows): the holdout percentile, the share of
unseen records at least as close (ties count half). For a generator that learned nothing about single records the
percentiles are uniform, so about 1% of the training records fall under 0.01 by chance (more with a small holdout);
more than that, and the records at the top of the list are the ones to look at. Related tables: each root entity
(a customer and everything below it) is one record. Conversations add the longest run of consecutive turns a
synthetic conversation copies from the training conversation (beside the holdout's, for templates and stock phrases),
and a conversation-level membership attack.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Sequence

import numpy as np
import pandas as pd
from sklearn.metrics import roc_auc_score

from llmsynth.data.relational import Database
from llmsynth.data.schema import Schema
from llmsynth.evaluate.features import distance_vectors, row_keys, typed
from llmsynth.evaluate.privacy import closer_share, nearest_rows
from llmsynth.evaluate.relational import family_frame, family_keys
from llmsynth.evaluate.text import conversation_text, most_similar, tfidf

RISK_LEVEL = 0.01
SHOWN = 10  # most exposed records in metrics.json (all of them in record_risk.csv)
MIN_TURN_CHARS = 40  # shorter turns ("Thanks!") repeat in any corpus
RESOLUTION = 1e-4  # distances this small are float noise (float32 vectors): a copy


def holdout_percentiles(train_closeness: np.ndarray, holdout_closeness: np.ndarray) -> np.ndarray:
    """Per training record, the share of holdout records at least as close to the synthetic data (ties half);
    closeness: higher is closer."""
    ordered = np.sort(holdout_closeness)
    above = len(ordered) - np.searchsorted(ordered, train_closeness, side="right")
    ties = np.searchsorted(ordered, train_closeness, side="right") - np.searchsorted(ordered, train_closeness)
    return (above + 0.5 * ties) / len(ordered)


def _summary(records: pd.DataFrame, unit: str, holdout_size: int) -> dict:
    """The share under RISK_LEVEL against what chance gives: a record beats all but fewer than RISK_LEVEL x n of n
    exchangeable holdout records with probability ceil(RISK_LEVEL x n) / (n + 1) (1% for a large holdout, 1/37 for
    36 records)."""
    at_risk = records["holdout_percentile"] < RISK_LEVEL
    expected = math.ceil(RISK_LEVEL * holdout_size) / (holdout_size + 1)
    columns = [c for c in records.columns if c != "nearest_synthetic_record"]
    return {unit: len(records), "at_risk": int(at_risk.sum()), "at_risk_share": float(at_risk.mean()),
            "expected_share": expected, "at_risk_excess": float(at_risk.mean() - expected),
            "most_exposed": records[columns].head(SHOWN).to_dict(orient="records")}


def _ranked(train: np.ndarray, holdout: np.ndarray, synthetic: np.ndarray) -> pd.DataFrame:
    """Per training vector: its nearest synthetic and holdout distances, its holdout percentile (the synthetic
    distance relative to the holdout one, ranked among the holdout vectors' own) and its nearest synthetic vector."""
    to_synthetic, nearest = (found[:, 0] for found in nearest_rows(synthetic, train))
    holdout_to_synthetic = nearest_rows(synthetic, holdout)[0][:, 0]
    # How crowded each record's neighbourhood is: its nearest real record the model never saw (for a holdout record,
    # the nearest other one).
    crowd = nearest_rows(holdout, train)[0][:, 0]
    holdout_crowd = nearest_rows(holdout, holdout, k=2)[0][:, -1]
    return pd.DataFrame({
        "nearest_synthetic_distance": to_synthetic,
        "nearest_holdout_distance": crowd,
        "holdout_percentile": holdout_percentiles(-_relative(to_synthetic, crowd),
                                                  -_relative(holdout_to_synthetic, holdout_crowd)),
        "nearest_synthetic_record": nearest,
    })


def table_record_risk(train: pd.DataFrame, holdout: pd.DataFrame, synthetic: pd.DataFrame,
                      schema: Schema) -> tuple[dict, pd.DataFrame]:
    """The figures, and every training row's risk, most exposed first (`record`: 1 = the first training row)."""
    frames = [typed(frame, schema) for frame in (train, holdout, synthetic)]
    records = _ranked(*distance_vectors(frames[0], frames, schema))
    records.insert(0, "record", np.arange(1, len(train) + 1))
    records["exact_copy"] = row_keys(frames[0], schema).isin(set(row_keys(frames[2], schema))).to_numpy()
    records["nearest_synthetic_record"] += 1
    records = records.sort_values(["holdout_percentile", "nearest_synthetic_distance"], kind="stable")
    figures = _summary(records, "records", len(holdout))
    figures["exact_copies"] = int(records["exact_copy"].sum())
    return figures, records.reset_index(drop=True)


def family_record_risk(train: Database, holdout: Database, synthetic: Database, seed: int = 0
                       ) -> tuple[dict, pd.DataFrame]:
    """Related tables: each training root entity (a customer with everything below it) as one record, summed up as
    its root row's values, and per table below it the row count, numeric means and category shares; `record`: the
    root key. Beside them, whole families repeated row for row (`family_keys`) and the DCR share of families."""
    frames = [family_frame(database, train) for database in (train, holdout, synthetic)]
    low, span = frames[0].min(), (frames[0].max() - frames[0].min()).replace(0, 1)
    vectors = [((frame - low) / span).fillna(0).to_numpy(np.float32) for frame in frames]
    records = _ranked(*vectors)
    records.insert(0, "record", frames[0].index.to_numpy())
    records["nearest_synthetic_record"] = frames[2].index.to_numpy()[records["nearest_synthetic_record"]]
    keys = [family_keys(database, train) for database in (train, holdout, synthetic)]
    records["exact_copy"] = keys[0].isin(set(keys[2])).to_numpy()
    records = records.sort_values(["holdout_percentile", "nearest_synthetic_distance"], kind="stable")
    figures = _summary(records, "families", len(frames[1]))
    figures["near_copies"] = int((records["nearest_synthetic_distance"] <= RESOLUTION).sum())
    figures["exact_family_matches"] = {role: float(found.isin(set(keys[0])).mean())
                                       for role, found in (("synthetic", keys[2]), ("holdout", keys[1]))}
    figures["dcr_share"] = _family_dcr_share(*vectors, seed)
    return figures, records.reset_index(drop=True)


def _family_dcr_share(train: np.ndarray, holdout: np.ndarray, synthetic: np.ndarray, seed: int) -> float:
    """As for rows (`privacy.distance_figures`): training families subsampled to the holdout's number (or the
    holdout to theirs), so that 0.5 is what a generator that copies no family scores."""
    size = min(len(train), len(holdout))
    rng = np.random.default_rng(seed)
    train, holdout = (vectors[rng.choice(len(vectors), size, replace=False)] for vectors in (train, holdout))
    return closer_share(nearest_rows(train, synthetic)[0][:, 0], nearest_rows(holdout, synthetic)[0][:, 0])


def _relative(distance: np.ndarray, crowd: np.ndarray) -> np.ndarray:
    """Distance to the nearest synthetic record over the distance to the nearest unseen real one: under 1, the
    synthetic data come closer than the real data's own spacing does (an exact copy of a record no unseen one
    repeats scores near 0; of one the holdout repeats, 1)."""
    return (distance + RESOLUTION) / (crowd + RESOLUTION)


def _turn_keys(conversation: dict) -> list[str | None]:
    return [" ".join(m["content"].split()) if len(m["content"].strip()) > MIN_TURN_CHARS else None
            for m in conversation["messages"]]


def copied_turn_runs(train: Sequence[dict], synthetic: Sequence[dict]) -> np.ndarray:
    """Per training conversation, the longest run of consecutive turns (over 40 characters) that one synthetic
    conversation repeats word for word, in order."""
    where = defaultdict(list)  # turn text -> (training conversation, position)
    for number, conversation in enumerate(train):
        for position, key in enumerate(_turn_keys(conversation)):
            if key is not None:
                where[key].append((number, position))
    longest = np.zeros(len(train), dtype=int)
    for conversation in synthetic:
        runs: dict[tuple[int, int], int] = {}
        for key in _turn_keys(conversation):
            runs = {(number, position): runs.get((number, position - 1), 0) + 1
                    for number, position in where.get(key, ())} if key is not None else {}
            for (number, _), length in runs.items():
                longest[number] = max(longest[number], length)
    return longest


def chat_record_risk(train: Sequence[dict], holdout: Sequence[dict], synthetic: Sequence[dict],
                     seed: int = 0) -> tuple[dict, pd.DataFrame]:
    """The figures, and every training conversation's risk, most exposed first (`record`: its line among the
    training conversations)."""
    vectorizer = tfidf(train)
    synthetic_vectors = vectorizer.transform([conversation_text(c) for c in synthetic])
    train_similarity, nearest = most_similar(synthetic_vectors, vectorizer.transform(
        [conversation_text(c) for c in train]))
    holdout_similarity, _ = most_similar(synthetic_vectors, vectorizer.transform(
        [conversation_text(c) for c in holdout]))
    records = pd.DataFrame({
        "record": np.arange(1, len(train) + 1),
        "nearest_synthetic_similarity": train_similarity,
        "holdout_percentile": holdout_percentiles(train_similarity, holdout_similarity),
        "copied_turns": copied_turn_runs(train, synthetic),
        "nearest_synthetic_record": nearest + 1,
    }).sort_values(["holdout_percentile", "copied_turns"], ascending=[True, False], kind="stable")
    size = min(len(train), len(holdout))
    members = np.random.default_rng(seed).choice(train_similarity, size, replace=False)
    outsiders = np.random.default_rng(seed).choice(holdout_similarity, size, replace=False)
    figures = _summary(records, "conversations", len(holdout))
    figures["membership_auc"] = float(roc_auc_score(np.r_[np.ones(size), np.zeros(size)], np.r_[members, outsiders]))
    baseline = copied_turn_runs(holdout, synthetic)  # what templates and stock phrases give unseen conversations
    figures["longest_copied_turns"] = {"train": int(records["copied_turns"].max()), "holdout": int(baseline.max())}
    figures["copied_turns_share"] = {"train": float((records["copied_turns"] >= 2).mean()),
                                     "holdout": float((baseline >= 2).mean())}
    return figures, records.reset_index(drop=True)
