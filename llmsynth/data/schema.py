"""Schema inference: decide per column which codec describes it.

Works on CSV text (everything a string) and on typed DataFrames (Parquet, pandas) alike, so that
precision and leading zeros are judged from the values as written.
"""

from __future__ import annotations

import logging
import re
from collections import Counter

import numpy as np
import pandas as pd
from pydantic import BaseModel

from llmsynth.errors import DataError
from llmsynth.serialize.codecs import (
    CategoricalColumn,
    Column,
    ColumnCodec,
    DatetimeColumn,
    IdentifierColumn,
    NumericColumn,
    TextColumn,
    escape,
)

log = logging.getLogger(__name__)

MIN_ROWS = 10
MAX_CATEGORIES = 500
MAX_DECIMALS = 6
PLACE_DECIMALS = 4  # the decimals a number written by places keeps at most, as in REaLTabFormer's form

_NUMBER = re.compile(r"-?(0|[1-9]\d*)(\.\d+)?")
_DATE = re.compile(r"\d{4}-\d{2}-\d{2}([ T]\d{2}:\d{2}(:\d{2}(\.\d+)?)?)?")
_BOOLEAN_PAIRS = [{"true", "false"}, {"yes", "no"}, {"y", "n"}, {"t", "f"}, {"0", "1"}]
_IDENTIFIER_PATTERNS = {
    "email": re.compile(r"[^@\s]+@[^@\s]+\.[A-Za-z]{2,}"),
    "ssn": re.compile(r"\d{3}-\d{2}-\d{4}"),
    "phone": re.compile(r"\+?[\d\s().-]{7,20}(x\d+)?"),
}
_IDENTIFIER_NAMES = {
    "name": re.compile(r"(^|_)(full_?)?(first_?|last_?|sur)?name$", re.I),
    "address": re.compile(r"(address|street)", re.I),
    "email": re.compile(r"e-?mail", re.I),
    "phone": re.compile(r"(phone|mobile|tel)", re.I),
    "ssn": re.compile(r"(ssn|social_?security)", re.I),
    "id": re.compile(r"(^id$|_id$|^uuid$|number$)", re.I),
}


class Schema(BaseModel):
    columns: list[Column]

    @property
    def names(self) -> list[str]:
        return [c.name for c in self.columns]

    @property
    def learned(self) -> list[ColumnCodec]:
        return [c for c in self.columns if c.learned]

    def column(self, name: str) -> ColumnCodec:
        for column in self.columns:
            if column.name == name:
                return column
        raise KeyError(name)


def infer_schema(table: pd.DataFrame, overrides: dict[str, str] | None = None, min_rows: int = MIN_ROWS) -> Schema:
    """One codec per column; `overrides` maps a column name to a kind ('identifier', 'categorical', ...).
    `min_rows` is what learning needs; scrubbing, which learns nothing, takes any table."""
    if len(table) < min_rows:
        raise DataError(f"the table has {len(table)} row(s); at least {min_rows} are needed to learn from")
    overrides = overrides or {}
    unknown = sorted(set(overrides) - set(map(str, table.columns)))
    if unknown:
        raise DataError(f"column override for unknown column(s) {unknown}; the table has {list(map(str, table.columns))}")
    columns = [infer_column(str(name), table[name], overrides.get(str(name))) for name in table.columns]
    if not any(c.learned for c in columns):
        raise DataError("every column looks like an identifier; there is nothing to learn")
    return Schema(columns=columns)


def with_number_places(schema: Schema, when: str = "auto") -> Schema:
    """The schema with all its numbers written by places (`NumericColumn.places`): a character a token, padded to the
    widest integer part, at most PLACE_DECIMALS decimals; `when`: "auto" where at least half the table's numbers are
    floats, "always" or "never". A from-scratch model so learns California's latitude with its longitude far better
    (nine numbers, seven floats: detection AUC 0.724 / 0.758 -> 0.674 / 0.672, seeds 0 / 1, in 1.34x the fit time);
    its floats alone by places, the integers in BPE tokens beside them, did worse than neither (0.756), so a table's
    numbers go together. Where they are mostly integers (counts and amounts) BPE tokens did as well in less time:
    Adult (no float; 2.2x the time by places), the demo's customers (one of five; 1.2x) (docs/benchmarks.md, "Numbers
    by places")."""
    numbers = [column for column in schema.columns if isinstance(column, NumericColumn)]
    floats = sum(column.kind == "float" for column in numbers)
    if when == "never" or not numbers or (when == "auto" and 2 * floats < len(numbers)):
        return schema
    columns = []
    for column in schema.columns:
        if isinstance(column, NumericColumn):
            decimals = min(column.decimals, PLACE_DECIMALS)
            widest = int(round(max(abs(column.minimum), abs(column.maximum)), decimals))
            column = NumericColumn.model_validate({**column.model_dump(), "places": True, "decimals": decimals,
                                                   "width": len(str(widest))})
        columns.append(column)
    return Schema(columns=columns)


def infer_column(name: str, values: pd.Series, kind: str | None = None) -> ColumnCodec:
    present = values.dropna()
    if len(present) == 0:
        raise DataError(f"column {name!r} is empty (all values missing); drop it or fill it")
    null_fraction = round(1 - len(present) / len(values), 6)
    common = {"name": name, "null_fraction": null_fraction}
    if kind is None:
        kind = _guess_kind(name, present)
    if kind in ("integer", "float"):
        numbers, decimals = _as_numbers(present)
        if numbers is None:
            raise DataError(f"column {name!r} cannot be numeric: it holds non-numbers such as {present.iloc[0]!r}")
        return NumericColumn(kind="integer" if decimals == 0 else "float", minimum=float(numbers.min()),
                             maximum=float(numbers.max()), decimals=decimals, width=_width(numbers, decimals),
                             **common)
    if kind in ("categorical", "boolean"):
        return _categorical(present, kind, common)
    if kind == "datetime":
        stamps = pd.to_datetime(present.astype(str) if present.dtype == object else present, format="ISO8601")
        with_time = bool((stamps != stamps.dt.normalize()).any())
        fmt = "%Y-%m-%d %H:%M:%S" if with_time else "%Y-%m-%d"
        return DatetimeColumn(minimum=stamps.min().strftime(fmt), maximum=stamps.max().strftime(fmt),
                              with_time=with_time, **common)
    if kind == "text":
        return TextColumn(max_bytes=max(len(escape(str(v)).encode()) for v in present), **common)
    if kind == "identifier":
        return IdentifierColumn(identifier_type=_identifier_type(name, present), shape=_common_shape(present), **common)
    raise DataError(f"column {name!r}: unknown kind {kind!r}; expected integer, float, categorical, boolean, "
                    "datetime, text or identifier")


def _guess_kind(name: str, present: pd.Series) -> str:
    if pd.api.types.is_bool_dtype(present):
        return "boolean"
    if pd.api.types.is_datetime64_any_dtype(present):
        return "datetime"
    texts = present.astype(str)
    distinct = texts.nunique()
    unique_ratio = distinct / len(texts)
    if _IDENTIFIER_NAMES["id"].search(name) and unique_ratio > 0.9:
        return "identifier"
    if set(texts.str.lower().unique()) in _BOOLEAN_PAIRS:
        return "boolean"
    if _as_numbers(present)[0] is not None:
        return "integer"
    if texts.str.fullmatch(_DATE).all():
        return "datetime"
    if unique_ratio > 0.5 and _identifier_type(name, texts) != "id":
        return "identifier"
    if unique_ratio > 0.5 and texts.str.len().mean() > 20 and texts.str.contains(" ").mean() > 0.5:
        return "text"
    if distinct <= MAX_CATEGORIES and (distinct <= 0.5 * len(texts) or distinct <= 20):
        return "categorical"
    return "identifier"


def _width(numbers: pd.Series, decimals: int) -> int:
    """Integer digits to write every value with: the most any value has, where values differ by two digits or more
    (409 and 15,255 as 00409 and 15255: the first token of an amount then tells its magnitude, which otherwise is known
    only once it ends; German credit's credit amount against its duration, real correlation 0.63, came out at
    0.06-0.11 unpadded and 0.43-0.56 padded, three trainings each). 0 (as few as it takes) where they differ by one
    at most: a count of 1-14 padded (01) lost what it depended on in the demo bank (transactions per account against
    its kind, real -0.65, synthetic -0.03), its tokens shared with the hours of every time."""
    whole = np.floor(numbers.abs().round(decimals).to_numpy())
    digits = np.floor(np.log10(np.maximum(whole, 1))).astype(int) + 1
    return int(digits.max()) if digits.max() - digits.min() >= 2 else 0


def _as_numbers(present: pd.Series) -> tuple[pd.Series | None, int]:
    """The values as floats and their precision, or None when they are not all plain numbers."""
    if pd.api.types.is_numeric_dtype(present) and not pd.api.types.is_bool_dtype(present):
        numbers = present.astype(float)
        if not np.isfinite(numbers).all():
            return None, 0
        for decimals in range(MAX_DECIMALS + 1):
            if np.allclose(numbers.round(decimals), numbers, rtol=0, atol=1e-9):
                return numbers, decimals
        return numbers, MAX_DECIMALS
    texts = present.astype(str)
    if not texts.str.fullmatch(_NUMBER).all():
        return None, 0
    decimals = int(texts.str.partition(".")[2].str.len().max())
    return texts.astype(float), min(decimals, MAX_DECIMALS)


def _categorical(present: pd.Series, kind: str, common: dict) -> CategoricalColumn:
    if pd.api.types.is_bool_dtype(present):
        dtype, categories = "bool", sorted({str(bool(v)) for v in present})
    elif pd.api.types.is_numeric_dtype(present) and (present.astype(float) % 1 == 0).all():
        dtype, categories = "int", sorted({str(int(v)) for v in present})
    else:
        texts = present.astype(str)
        dtype = "int" if set(texts.unique()) <= {"0", "1"} else "str"
        categories = sorted(texts.unique())
    return CategoricalColumn(kind=kind, categories=categories, dtype=dtype, **common)


def _identifier_type(name: str, present: pd.Series) -> str:
    texts = present.astype(str)
    for kind in ("email", "ssn", "phone"):
        if texts.str.fullmatch(_IDENTIFIER_PATTERNS[kind]).mean() > 0.9 and (
            kind != "phone" or _IDENTIFIER_NAMES["phone"].search(name)
        ):
            return kind
    for kind in ("name", "address", "email", "phone", "ssn"):
        if _IDENTIFIER_NAMES[kind].search(name):
            return kind
    return "id"


def _common_shape(present: pd.Series) -> str:
    shapes = Counter(re.sub(r"[A-Za-z]", "A", re.sub(r"\d", "9", str(v))) for v in present.head(1000))
    return shapes.most_common(1)[0][0]
