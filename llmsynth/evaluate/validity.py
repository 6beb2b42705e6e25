"""Row validity by the same codecs that constrain sampling: any generator's output can be checked."""

from __future__ import annotations

import pandas as pd

from llmsynth.data.schema import MAX_DECIMALS, PLACE_DECIMALS, Schema
from llmsynth.serialize.codecs import ColumnCodec, NumericColumn, is_null


def _valid_value(column: ColumnCodec, value) -> bool:
    if is_null(value):
        return column.nullable
    try:
        text = column.write(value)
        if isinstance(column, NumericColumn):
            cap = PLACE_DECIMALS if column.places else MAX_DECIMALS
            if column.decimals < cap and float(text) != float(value):
                return False  # not at the column's precision (at the cap, the real numbers were finer: 5.663073...)
        return column.complete(text.encode())
    except (TypeError, ValueError):
        return False


def valid_rows(table: pd.DataFrame, schema: Schema) -> pd.Series:
    """True where every learned column is present (or null where nulls were seen) with a valid value."""
    valid = pd.Series(True, index=table.index)
    for column in schema.learned:
        if column.name not in table.columns:
            return pd.Series(False, index=table.index)
        valid &= table[column.name].map(lambda v, c=column: _valid_value(c, v)).astype(bool)
    return valid
