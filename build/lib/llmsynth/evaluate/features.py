"""Tables as the metrics need them: typed values per learned column, classifier features, distance vectors.

Every frame of one evaluation (train, holdout, synthetic) goes through the same schema, so a CSV's strings and a
Parquet file's numbers compare alike, and a value a peer's generator wrote that the column cannot hold becomes
missing rather than an error.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from llmsynth.data.schema import Schema
from llmsynth.errors import DataError
from llmsynth.serialize.codecs import CategoricalColumn, ColumnCodec, DatetimeColumn, NumericColumn

# sklearn's gradient boosting bins a categorical feature into at most 255 categories; wider ones go in as codes.
_MAX_NATIVE_CATEGORIES = 250
_CATEGORY_WEIGHT = 1 / np.sqrt(2)  # one-hot vectors of two categories then lie 1 apart, as a full range does


def is_continuous(column: ColumnCodec) -> bool:
    return isinstance(column, (NumericColumn, DatetimeColumn))


def check_columns(table: pd.DataFrame, schema: Schema, role: str) -> None:
    """Every learned column present: a synthetic file from another schema is a mistake worth a clear message."""
    missing = [c.name for c in schema.learned if c.name not in table.columns]
    if missing:
        raise DataError(f"the {role} table lacks column(s) {missing} that the real table has; "
                        f"its columns are {list(map(str, table.columns))}")
    if len(table) == 0:
        raise DataError(f"the {role} table has no rows")


def typed(table: pd.DataFrame, schema: Schema) -> pd.DataFrame:
    """The learned columns with numbers as floats, dates as datetimes, categories as strings, anything else NaN."""
    columns = {}
    for column in schema.learned:
        values = table[column.name]
        if isinstance(column, NumericColumn):
            columns[column.name] = pd.to_numeric(values, errors="coerce").astype(float)
        elif isinstance(column, DatetimeColumn):
            columns[column.name] = pd.to_datetime(values, errors="coerce", format="ISO8601")
        elif isinstance(column, CategoricalColumn):
            columns[column.name] = values.map(lambda v: v if pd.isna(v) else str(v)).astype(object)
    return pd.DataFrame(columns, index=table.index)


def as_numbers(values: pd.Series) -> pd.Series:
    """Numbers stay, dates become nanoseconds since the epoch (SDMetrics' conversion), missing stays NaN."""
    if pd.api.types.is_datetime64_any_dtype(values):
        numbers = values.astype("int64").astype(float)
        numbers[values.isna()] = np.nan
        return numbers
    return values.astype(float)


def row_keys(frame: pd.DataFrame, schema: Schema) -> pd.Series:
    """One hash per row of a typed frame over the learned columns (numbers to 9 digits), so that '34' from a CSV
    and 34.0 from Parquet are the same row."""
    values = pd.DataFrame({c.name: as_numbers(frame[c.name]).round(9) if is_continuous(c) else frame[c.name]
                           for c in schema.learned}, index=frame.index)
    return pd.util.hash_pandas_object(values.astype(str), index=False)


def classifier_frames(frames: list[pd.DataFrame], schema: Schema, drop: str | None = None) -> list[pd.DataFrame]:
    """Features for sklearn's gradient boosting (which takes NaN as is): categories as a shared pandas category
    dtype (native splits), or as codes when there are more than it can bin."""
    out = [pd.DataFrame(index=frame.index) for frame in frames]
    for column in schema.learned:
        if column.name == drop:
            continue
        if is_continuous(column):
            for target, frame in zip(out, frames):
                target[column.name] = as_numbers(frame[column.name])
            continue
        categories = pd.Index(sorted(set().union(*(frame[column.name].dropna().unique() for frame in frames))))
        for target, frame in zip(out, frames):
            values = pd.Categorical(frame[column.name], categories=categories)
            wide = len(categories) > _MAX_NATIVE_CATEGORIES
            target[column.name] = np.where(values.codes < 0, np.nan, values.codes) if wide else values
    return out


def distance_vectors(reference: pd.DataFrame, frames: list[pd.DataFrame], schema: Schema) -> list[np.ndarray]:
    """Rows as float32 vectors whose Euclidean distance is a Gower-like distance: each number scaled by the
    reference (training) range, each category one-hot so that a mismatch counts like a full range, and a
    missing value 1 away from any present one."""
    blocks: list[list[np.ndarray]] = [[] for _ in frames]
    for column in schema.learned:
        if is_continuous(column):
            known = as_numbers(reference[column.name])
            low, span = known.min(), known.max() - known.min()
            span = span if span > 0 else 1.0
            for block, frame in zip(blocks, frames):
                numbers = (as_numbers(frame[column.name]) - low) / span
                block.append(numbers.fillna(0).to_numpy()[:, None])
                block.append(numbers.isna().to_numpy(float)[:, None])
        else:
            categories = pd.Index(sorted(set().union(*(frame[column.name].dropna().unique() for frame in frames))))
            for block, frame in zip(blocks, frames):
                codes = pd.Categorical(frame[column.name], categories=categories).codes
                one_hot = np.zeros((len(frame), len(categories) + 1))
                one_hot[np.arange(len(frame)), codes] = _CATEGORY_WEIGHT  # code -1 (missing) is the last slot
                block.append(one_hot)
    return [np.hstack(block).astype(np.float32) for block in blocks]
