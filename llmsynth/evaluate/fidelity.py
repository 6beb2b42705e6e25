"""Column-level fidelity with the SDMetrics definitions: KS complement (numeric, dates), TV complement (categories)."""

from __future__ import annotations

import pandas as pd
from scipy.stats import ks_2samp

from llmsynth.data.schema import Schema
from llmsynth.serialize.codecs import CategoricalColumn, DatetimeColumn, NumericColumn


def _numeric(values: pd.Series, column) -> pd.Series:
    values = values.dropna()
    if isinstance(column, DatetimeColumn):
        return pd.to_datetime(values).astype("int64").astype(float)
    return pd.to_numeric(values).astype(float)


def column_shapes(real: pd.DataFrame, synthetic: pd.DataFrame, schema: Schema) -> dict[str, float]:
    """Per learned column: 1 - KS statistic, or 1 - total variation distance of the category frequencies."""
    scores = {}
    for column in schema.learned:
        if isinstance(column, (NumericColumn, DatetimeColumn)):
            scores[column.name] = 1 - ks_2samp(_numeric(real[column.name], column),
                                               _numeric(synthetic[column.name], column)).statistic
        elif isinstance(column, CategoricalColumn):
            p = real[column.name].dropna().astype(str).value_counts(normalize=True)
            q = synthetic[column.name].dropna().astype(str).value_counts(normalize=True)
            scores[column.name] = 1 - 0.5 * p.subtract(q, fill_value=0).abs().sum()
    return scores


def correlation(table: pd.DataFrame, a: str, b: str) -> float:
    """Pearson correlation over rows where both are present."""
    pair = table[[a, b]].apply(pd.to_numeric, errors="coerce").dropna()
    return float(pair[a].corr(pair[b]))
