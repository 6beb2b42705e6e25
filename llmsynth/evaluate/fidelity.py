"""Fidelity with SDMetrics' definitions (QualityReport 0.32), so figures compare with theirs one for one:
column shapes (KS / TV complement), column pair trends (correlation / contingency similarity) and detection."""

from __future__ import annotations

from itertools import combinations
from typing import NamedTuple

import numpy as np
import pandas as pd
from scipy.stats import ks_2samp, pearsonr
from scipy.stats.contingency import association
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.metrics import roc_auc_score
from sklearn.model_selection import PredefinedSplit, cross_val_predict

from llmsynth.data.schema import Schema
from llmsynth.evaluate.features import as_numbers, classifier_frames, is_continuous, row_keys, typed

_ROUND = 9  # SDMetrics rounds numbers to 9 decimals before the KS test
# A pair counts in the mean trend score when the real data relate it at least this strongly (SDMetrics' defaults).
STRONG_CORRELATION = 0.5
STRONG_ASSOCIATION = 0.3


def tv_complement(real: pd.Series, synthetic: pd.Series) -> float:
    """1 - total variation distance of two frequency tables (value -> share, or (a, b) -> share)."""
    return float(1 - 0.5 * real.subtract(synthetic, fill_value=0).abs().sum())


def ks_complement(real, synthetic) -> float:
    """1 - the two-sample Kolmogorov-Smirnov statistic."""
    return float(1 - ks_2samp(real, synthetic).statistic)


def column_shapes(real: pd.DataFrame, synthetic: pd.DataFrame, schema: Schema) -> dict[str, float]:
    """Per learned column: 1 - KS statistic (numbers, dates), or 1 - total variation distance of the category
    frequencies; missing values left out, as SDMetrics does."""
    real, synthetic = typed(real, schema), typed(synthetic, schema)
    scores = {}
    for column in schema.learned:
        r, s = real[column.name].dropna(), synthetic[column.name].dropna()
        if len(r) == 0 or len(s) == 0:
            scores[column.name] = float("nan")
        elif is_continuous(column):
            scores[column.name] = ks_complement(as_numbers(r).round(_ROUND), as_numbers(s).round(_ROUND))
        else:
            scores[column.name] = tv_complement(r.value_counts(normalize=True), s.value_counts(normalize=True))
    return scores


def _binned(values: pd.Series) -> np.ndarray:
    """Ten equal-width bins over the column's own range, missing in the top bin: SDMetrics discretizes real and
    synthetic each by its own range, and so do we, to give the same figures."""
    numbers = as_numbers(values)
    return np.digitize(numbers, np.histogram_bin_edges(numbers.dropna()))


class PairTrend(NamedTuple):
    score: float  # 1 = the pair relates in synthetic data as in real data
    real_strength: float  # |Pearson r| or Cramér's V of the pair in the real data
    strong: bool  # whether the real relationship is strong enough to count in the mean


def _correlation_similarity(real: pd.DataFrame, synthetic: pd.DataFrame) -> PairTrend:
    rhos = []
    for table in (real, synthetic):
        pair = table.apply(as_numbers).dropna()
        if len(pair) < 2 or (pair.nunique() < 2).any():
            return PairTrend(float("nan"), float("nan"), False)  # a constant column has no correlation
        rhos.append(pearsonr(pair.iloc[:, 0], pair.iloc[:, 1]).statistic)
    strength = abs(rhos[0])
    return PairTrend(float(1 - abs(rhos[0] - rhos[1]) / 2), float(strength), bool(strength > STRONG_CORRELATION))


def _contingency_similarity(real: pd.DataFrame, synthetic: pd.DataFrame) -> PairTrend:
    columns = list(real.columns)
    counts = real.groupby(columns, dropna=False).size()
    p, q = counts / len(real), synthetic.groupby(columns, dropna=False).size() / len(synthetic)
    table = counts.unstack(fill_value=0)
    strength = association(table.to_numpy(), method="cramer") if min(table.shape) >= 2 else float("nan")
    return PairTrend(tv_complement(p, q), float(strength),
                     bool(strength > STRONG_ASSOCIATION))


def column_pair_trends(real: pd.DataFrame, synthetic: pd.DataFrame, schema: Schema) -> dict[tuple[str, str], PairTrend]:
    """Per pair of learned columns: 1 - |Pearson r real - r synthetic| / 2 for two continuous columns, otherwise
    1 - total variation distance of the pair's joint frequencies (continuous columns in 10 bins). NaN where a
    column is constant."""
    real, synthetic = typed(real, schema), typed(synthetic, schema)
    continuous = {c.name for c in schema.learned if is_continuous(c)}
    binned = [table.assign(**{name: _binned(table[name]) for name in continuous}) for table in (real, synthetic)]
    scores = {}
    for a, b in combinations([c.name for c in schema.learned], 2):
        if a in continuous and b in continuous:
            scores[(a, b)] = _correlation_similarity(real[[a, b]], synthetic[[a, b]])
        else:
            scores[(a, b)] = _contingency_similarity(binned[0][[a, b]], binned[1][[a, b]])
    return scores


def mean_pair_trend(pairs: dict[tuple[str, str], PairTrend]) -> float:
    """The mean over pairs strongly related in the real data (SDMetrics' QualityReport since 0.2x): pairs that
    are independent anyway would drown the ones that matter. NaN where no pair is strongly related."""
    strong = [trend.score for trend in pairs.values() if trend.strong and not np.isnan(trend.score)]
    return float(np.mean(strong)) if strong else float("nan")


def correlation(table: pd.DataFrame, a: str, b: str) -> float:
    """Pearson correlation over rows where both are present."""
    pair = table[[a, b]].apply(pd.to_numeric, errors="coerce").dropna()
    return float(pair[a].corr(pair[b]))


def detection_auc(holdout: pd.DataFrame, synthetic: pd.DataFrame, schema: Schema, seed: int = 0,
                  folds: int = 5, groups: tuple[pd.Series, pd.Series] | None = None) -> float:
    """Cross-validated ROC AUC of gradient boosting telling synthetic rows from real rows it never saw (C2ST):
    0.5 means indistinguishable, 1.0 means always told apart. Classes balanced by subsampling the larger.

    Folds are drawn at random per distinct row, so identical rows share a fold: otherwise a synthetic copy of a holdout row would be scored by a model that saw
    its twin labelled the other way, and a perfect copy of the holdout would score near 0 instead of 0.5.
    `groups` (a label per holdout and per synthetic row: related tables' root entities) keeps each group in one
    fold, so that rows sharing a parent's columns cannot be told apart by the parent alone."""
    size = min(len(holdout), len(synthetic))
    if size < 2:
        return float("nan")
    real_rows = typed(holdout, schema).sample(size, random_state=seed)
    fake_rows = typed(synthetic, schema).sample(size, random_state=seed)
    features = pd.concat(classifier_frames([real_rows, fake_rows], schema), ignore_index=True)
    labels = np.r_[np.zeros(size), np.ones(size)]
    if groups is None:
        _, row_group = np.unique(row_keys(pd.concat([real_rows, fake_rows]), schema), return_inverse=True)
    else:
        owners = ["real " + groups[0].loc[real_rows.index].astype(str),
                  "synthetic " + groups[1].loc[fake_rows.index].astype(str)]
        row_group = pd.factorize(pd.concat(owners))[0]
    group_fold = np.random.default_rng(seed).integers(0, min(folds, size), row_group.max() + 1)
    _fill_empty_in_folds(features, group_fold[row_group])
    classifier = HistGradientBoostingClassifier(categorical_features="from_dtype", random_state=seed)
    scores = cross_val_predict(classifier, features, labels, cv=PredefinedSplit(group_fold[row_group]),
                               method="predict_proba")[:, 1]
    return float(roc_auc_score(labels, scores))


def _fill_empty_in_folds(features: pd.DataFrame, fold: np.ndarray) -> None:
    """A number column all empty in some fold's training rows (a column 99% empty, such as an aircraft's speed)
    breaks sklearn's binning: its empties become a value below every number, which splits the same way."""
    for column in features.columns:
        values = features[column]
        if isinstance(values.dtype, pd.CategoricalDtype) or values.notna().all():
            continue
        if any(values[fold != f].isna().all() for f in np.unique(fold)):
            features[column] = values.fillna(values.min() - 1 if values.notna().any() else 0.0)
