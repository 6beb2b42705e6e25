"""Bias audit: does the synthetic data keep, close or widen the gap in a target's rate between the groups of a
sensitive column (sex, race), and does a model trained on it treat the groups as one trained on real data does?

- Rate: the share of rows with the positive target value (the rarer class of a categorical target; above the real
  median for a numeric one) in each group, in the training data, the holdout and the synthetic data.
- Parity gap: the highest rate minus the lowest over the groups (statistical parity difference), left out groups
  with fewer than MIN_GROUP training rows (their rates are noise; they are still listed).
- Amplification: synthetic gap / real gap; gap excess: synthetic gap - real gap. Intervals: bootstrap percentiles
  over rows resampled with replacement; the excess's lower end is the growth the data are 97.5% sure of, what a
  check can hold against a table whose small groups make every gap noisy.
- Downstream: gradient boosting trained on real rows and on synthetic rows predicts the positive value on the
  holdout; per group its accuracy and false-positive rate, and the gaps between groups with MIN_GROUP holdout rows
  or more (Hardt et al.'s equalized odds asks for equal false-positive rates).
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence

import numpy as np
import pandas as pd

from llmsynth.errors import DataError

MIN_GROUP = 30
RESAMPLES = 200
NUMERIC_BINS = 4  # a numeric sensitive column (age) is audited in quartiles of its training values
AMPLIFICATION_FLOOR = 0.05  # below this real gap a ratio says more about noise than about bias
ROLES = ("real", "holdout", "synthetic")


def _is_number(values: pd.Series) -> bool:
    """Numbers and dates are binned or split at the median; booleans are two categories."""
    return (pd.api.types.is_numeric_dtype(values) or pd.api.types.is_datetime64_any_dtype(values)) \
        and not pd.api.types.is_bool_dtype(values)


def positive_outcome(real: pd.Series) -> tuple[str, Callable[[pd.Series], np.ndarray]]:
    """What counts as the positive outcome, said in words, and a function marking it in any frame's column."""
    values = real.dropna()
    if values.empty:
        raise DataError(f"the target column {real.name!r} has no values in the real data")
    if _is_number(values):
        median = values.median()
        return f"{real.name} > {median}", lambda column: (column > median).to_numpy()
    counts = values.astype(str).value_counts()
    if len(counts) < 2:
        raise DataError(f"the target column {real.name!r} holds one value only ({counts.index[0]!r}): "
                        "there is no rate to compare between groups")
    rarest = sorted(counts.index, key=lambda v: (counts[v], v))[0]
    return f"{real.name} = {rarest}", lambda column: (column.astype(str) == rarest).to_numpy()


def group_labels(real: pd.Series, frames: Sequence[pd.Series]) -> tuple[list[str], list[np.ndarray]]:
    """The groups of a sensitive column (categories, or quartiles of numbers) and each frame's rows as group codes
    (-1: missing or a group the real data lacks)."""
    if _is_number(real.dropna()) and not pd.api.types.is_datetime64_any_dtype(real):
        edges = np.unique(np.quantile(real.dropna(), np.linspace(0, 1, NUMERIC_BINS + 1)))
        names = [f"{low:g}-{high:g}" for low, high in zip(edges[:-1], edges[1:])]
        inner = edges[1:-1]
        return names, [np.where(f.isna(), -1, np.searchsorted(inner, f.to_numpy(float), side="right"))
                       for f in frames]
    names = sorted(real.dropna().astype(str).unique())
    return names, [pd.Categorical(f.map(lambda v: v if pd.isna(v) else str(v)), categories=names).codes
                   for f in frames]


def _rates(codes: np.ndarray, positive: np.ndarray, groups: int) -> tuple[np.ndarray, np.ndarray]:
    """Rows and positive rate per group along the last axis (codes may be a batch of resamples)."""
    rows = np.stack([(codes == g).sum(axis=-1) for g in range(groups)], axis=-1)
    hits = np.stack([((codes == g) & positive).sum(axis=-1) for g in range(groups)], axis=-1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return rows, np.where(rows > 0, hits / np.maximum(rows, 1), np.nan)


def _gap(rates: np.ndarray, kept: np.ndarray) -> np.ndarray:
    chosen = rates[..., kept]
    with warnings.catch_warnings():  # a group absent from a resample: its rate is NaN, left out
        warnings.simplefilter("ignore", RuntimeWarning)
        return np.nanmax(chosen, axis=-1) - np.nanmin(chosen, axis=-1)


def _interval(values: np.ndarray, point: float) -> dict:
    finite = values[np.isfinite(values)]
    low, high = np.quantile(finite, [0.025, 0.975]) if len(finite) else (np.nan, np.nan)
    return {"value": float(point), "low": float(low), "high": float(high)}


def _parity(codes: list[np.ndarray], positives: list[np.ndarray], names: list[str], rng: np.random.Generator,
            resamples: int) -> dict:
    """Rates per group and the parity gap per role with bootstrap intervals, and the amplification."""
    counts_rates = [_rates(c, p, len(names)) for c, p in zip(codes, positives)]
    kept = counts_rates[0][0] >= MIN_GROUP
    if kept.sum() < 2:
        return {"skipped": f"fewer than two groups have {MIN_GROUP} or more training rows"}
    gaps, resampled = {}, {}
    for role, c, p, (_, rates) in zip(ROLES, codes, positives, counts_rates):
        picks = rng.integers(0, len(c), size=(resamples, len(c)))
        resampled[role] = _gap(_rates(c[picks], p[picks], len(names))[1], kept)
        gaps[role] = _interval(resampled[role], _gap(rates, kept))
    with np.errstate(invalid="ignore", divide="ignore"):
        ratio = _interval(resampled["synthetic"] / resampled["real"], gaps["synthetic"]["value"] / gaps["real"]["value"])
    excess = _interval(resampled["synthetic"] - resampled["real"], gaps["synthetic"]["value"] - gaps["real"]["value"])
    groups = [{"group": name, "in_gap": bool(kept[g]),
               "rows": {role: int(rows[g]) for role, (rows, _) in zip(ROLES, counts_rates)},
               "rate": {role: float(rates[g]) for role, (_, rates) in zip(ROLES, counts_rates)}}
              for g, name in enumerate(names)]
    return {"groups": groups, "parity_gap": gaps, "gap_excess": excess, "amplification": ratio}


def _group_errors(truth: np.ndarray, predicted: np.ndarray, codes: np.ndarray, names: list[str],
                  kept: list[bool]) -> dict:
    """Accuracy and false-positive rate per group, and the highest-minus-lowest gap of each over the kept groups."""
    by_group = {}
    for g, name in enumerate(names):
        member = codes == g
        negatives = member & ~truth
        by_group[name] = {
            "accuracy": float(np.mean(truth[member] == predicted[member])) if member.any() else float("nan"),
            "false_positive_rate": float(predicted[negatives].mean()) if negatives.any() else float("nan")}
    figures = {"by_group": by_group}
    for figure in ("accuracy", "false_positive_rate"):
        values = [by_group[n][figure] for n, k in zip(names, kept) if k and not np.isnan(by_group[n][figure])]
        figures[f"{figure}_gap"] = float(max(values) - min(values)) if len(values) >= 2 else float("nan")
    return figures


def _predictions(frames: list[pd.DataFrame], positives: list[np.ndarray], features: list[pd.DataFrame],
                 seed: int) -> dict[str, np.ndarray]:
    """Holdout predictions of the positive outcome by a model trained on the real rows and one on synthetic rows."""
    from sklearn.ensemble import HistGradientBoostingClassifier

    predictions = {}
    for role, index in (("real_trained", 0), ("synthetic_trained", 2)):
        labels = positives[index]
        if labels.all() or not labels.any():  # one outcome only: predicting it is all a model can learn
            predictions[role] = np.full(len(frames[1]), bool(labels.any()))
            continue
        model = HistGradientBoostingClassifier(categorical_features="from_dtype", random_state=seed)
        predictions[role] = model.fit(features[index], labels).predict(features[1]).astype(bool)
    return predictions


def bias_audit(train: pd.DataFrame, holdout: pd.DataFrame, synthetic: pd.DataFrame, sensitive: Sequence[str],
               target: str, features: list[pd.DataFrame] | None = None, seed: int = 0,
               resamples: int = RESAMPLES) -> dict:
    """The audit of every sensitive column on typed frames (as `features.typed` gives them). `features`: the
    classifier features of (train, holdout, synthetic) without the target, for the downstream figures; None leaves
    them out (conversation metadata has nothing to predict from)."""
    frames = [train, holdout, synthetic]
    for name in [*sensitive, target]:
        for role, frame in zip(ROLES, frames):
            if name not in frame.columns:
                raise DataError(f"bias audit: column {name!r} is not in the {role} data; its columns are "
                                f"{list(map(str, frame.columns))}")
    if target in sensitive:
        raise DataError(f"bias audit: {target!r} is both the target and a sensitive column")
    outcome, mark = positive_outcome(train[target])
    positives = [mark(frame[target]) for frame in frames]
    rng = np.random.default_rng([seed, 0xB1A5])
    predictions = _predictions(frames, positives, features, seed) if features is not None else None
    columns = {}
    for name in sensitive:
        names, codes = group_labels(train[name], [frame[name] for frame in frames])
        audit = _parity(codes, positives, names, rng, resamples)
        if predictions is not None and "skipped" not in audit:  # scored on the holdout: its small groups are noise
            kept = [group["in_gap"] and group["rows"]["holdout"] >= MIN_GROUP for group in audit["groups"]]
            audit["downstream"] = {role: _group_errors(positives[1], predicted, codes[1], names, kept)
                                   for role, predicted in predictions.items()}
        columns[name] = audit
    audited = [a for a in columns.values() if "skipped" not in a]
    amplified = [a["amplification"]["value"] for a in audited
                 if a["parity_gap"]["real"]["value"] >= AMPLIFICATION_FLOOR]
    return {"target": target, "positive": outcome, "resamples": resamples, "min_group_rows": MIN_GROUP,
            "columns": columns,
            "gap_excess_max": max((a["gap_excess"]["value"] for a in audited), default=None),
            "gap_excess_low_max": max((a["gap_excess"]["low"] for a in audited), default=None),
            "amplification_max": max(amplified, default=None)}
