"""Column codecs: one small class per kind of column.

Each codec describes its column in the manifest (it is a pydantic model), writes a value as text,
reads it back, and tells the constrained sampler which byte strings can still become a valid value
(`viable`) and which already are one (`complete`). The serializer and the sampler only loop over codecs.
Values are compared as UTF-8 bytes because a token may end in the middle of a character.
"""

from __future__ import annotations

import bisect
import re
from functools import cached_property
from typing import Annotated, Any, ClassVar, Literal, Union

import pandas as pd
from pydantic import BaseModel, ConfigDict, Field, model_validator

DIGITS = b"0123456789"


def escape(text: str) -> str:
    """Escape the separator so that a value can never end a field early."""
    return text.replace("\\", "\\\\").replace(",", "\\,")


def unescape(text: str) -> str:
    return re.sub(r"\\(.)", r"\1", text)


def _has_unescaped_comma_or_dangling_escape(data: bytes) -> tuple[bool, bool]:
    escaped = False
    for byte in data:
        if escaped:
            escaped = False
        elif byte == 0x5C:
            escaped = True
        elif byte == 0x2C:
            return True, False
    return False, escaped


def is_null(value: Any) -> bool:
    return value is None or (not isinstance(value, str) and bool(pd.isna(value)))


class ColumnCodec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str
    null_fraction: float = Field(0.0, ge=0.0, le=1.0, description="Share of missing values in training data.")

    learned: ClassVar[bool] = True

    def allowed_bytes(self) -> bytes | None:
        """Bytes a value may contain (a fast pre-filter on tokens); None means any."""
        return None

    @property
    def nullable(self) -> bool:
        return self.null_fraction > 0

    @property
    def place_count(self) -> int:
        """Characters a value written by places may take (see NumericColumn.places); 0: written in tokens."""
        return 0

    def write(self, value: Any) -> str:
        """Text of a value as the model sees it; the empty string stands for a missing value."""
        return "" if is_null(value) else self._write(value)

    def read(self, text: str) -> Any:
        return None if text == "" else self._read(text)

    def _write(self, value: Any) -> str:
        raise NotImplementedError

    def _read(self, text: str) -> Any:
        raise NotImplementedError

    def viable(self, prefix: bytes) -> bool:
        """Can `prefix` still be extended into a valid (non-empty) value?"""
        raise NotImplementedError

    def complete(self, text: bytes) -> bool:
        raise NotImplementedError

    def to_series(self, values: list) -> pd.Series:
        return pd.Series(values, name=self.name, dtype=object)


class NumericColumn(ColumnCodec):
    """Integers and fixed-point decimals inside the range seen in training."""

    kind: Literal["integer", "float"]
    minimum: float
    maximum: float
    decimals: int = Field(0, ge=0, le=12, description="Digits after the decimal point.")
    width: int = Field(0, ge=0, le=30, description="Integer digits every value is written with, zero-padded "
                       "(0042): a number's first token then tells its magnitude. 0: as few as it takes (42).")
    places: bool = Field(False, description="Written a character a token, each column and character place with "
                         "ids of its own (REaLTabFormer's number form; see serialize.tabular.RowEncoder).")

    def allowed_bytes(self) -> bytes:
        return DIGITS + b"-."

    @model_validator(mode="after")
    def _places_need_a_width(self) -> "NumericColumn":
        if self.places and self.width == 0:
            raise ValueError("a number written by places needs a width: every value as many characters")
        return self

    @property
    def place_count(self) -> int:
        """Characters of the longest value text."""
        if not self.places:
            return 0
        return (self.minimum < 0) + self.width + (self.decimals + 1 if self.decimals else 0)

    @cached_property
    def _scale(self) -> int:
        return 10**self.decimals

    @cached_property
    def _bounds(self) -> tuple[int, int]:
        return round(self.minimum * self._scale), round(self.maximum * self._scale)

    def _write(self, value: Any) -> str:
        number = float(value)
        text = str(int(round(number))) if self.decimals == 0 else f"{number:.{self.decimals}f}"
        sign = "-" if text.startswith("-") and text.strip("-0.") else ""
        int_part, dot, fraction = text.lstrip("-").partition(".")
        return sign + int_part.zfill(self.width) + dot + fraction

    def _read(self, text: str) -> Any:
        return int(text) if self.kind == "integer" else float(text)

    def _units_interval(self, body: str) -> tuple[int, int] | None:
        """Smallest and largest magnitude (in units of 10^-decimals) of numbers written starting with body."""
        int_part, dot, frac = body.partition(".")
        if not int_part.isdigit() or not self._integer_part_fits(int_part, bool(dot)):
            return None
        if dot:
            if self.decimals == 0 or len(frac) > self.decimals or (frac and not frac.isdigit()):
                return None
            base = int(int_part) * self._scale
            return base + int(frac.ljust(self.decimals, "0") or 0), base + int(frac.ljust(self.decimals, "9") or 0)
        if self.width:  # the digits still to come are the integer part's last
            unit = 10 ** (self.width - len(int_part)) * self._scale
            return int(int_part) * unit, (int(int_part) + 1) * unit - 1
        return int(int_part) * self._scale, None  # open: more integer digits may follow

    def _integer_part_fits(self, int_part: str, closed: bool) -> bool:
        """Whether an integer part so far is the start of one this column writes (all of it where `closed`)."""
        if self.width:
            return len(int_part) == self.width if closed else len(int_part) <= self.width
        return len(int_part) == 1 or int_part[0] != "0"

    def _signed_ranges(self, prefix: str):
        negative = prefix.startswith("-")
        body = prefix[1:] if negative else prefix
        low, high = self._bounds
        if body == "":
            yield (low, -1) if negative else (0, high)
            return
        interval = self._units_interval(body)
        if interval is None:
            return
        start, end = interval
        if end is not None:
            candidates = [(start, end)]
        else:
            int_part = body
            candidates = [(start, start + self._scale - 1)]
            if int_part != "0":
                digits = 1
                limit = max(abs(low), abs(high))
                while int(int_part) * 10**digits * self._scale <= limit:
                    candidates.append((int(int_part) * 10**digits * self._scale, (int(int_part) + 1) * 10**digits * self._scale - 1))
                    digits += 1
        for lo, hi in candidates:
            if negative:
                lo = max(lo, 1)  # no negative zero
                if lo <= hi:
                    yield -hi, -lo
            else:
                yield lo, hi

    def viable(self, prefix: bytes) -> bool:
        if not prefix:
            return True
        try:
            text = prefix.decode("ascii")
        except UnicodeDecodeError:
            return False
        low, high = self._bounds
        return any(lo <= high and hi >= low for lo, hi in self._signed_ranges(text))

    def takes_digits(self, body: str) -> bool:
        """Whether `body` is the start of a number without sign that digits may follow: `digit_continuations`."""
        int_part, dot, fraction = body.partition(".")
        return (int_part.isdigit() and self._integer_part_fits(int_part, bool(dot))
                and (self.width > 0 or int_part != "0" or dot != "")
                and (not dot or self.decimals > 0 and (fraction == "" or fraction.isdigit())))

    def digit_continuations(self, body: str, length: int) -> list[tuple[int, int]]:
        """For `body`, the start of a number without sign (see `takes_digits`): the values of `length` more digits
        that keep it viable, as intervals. Equal to `viable(body + digits)` for each, and what lets the sampler find
        the viable tokens among hundreds by bisection instead of one by one."""
        if not self.takes_digits(body):
            raise ValueError(f"{body!r}: no number's start that digits may follow")
        low, high = self._bounds  # in units of 10^-decimals
        int_part, dot, fraction = body.partition(".")
        size = 10**length
        if dot:  # the new digits end the fraction or go on with it: one run of values
            places = self.decimals - len(fraction) - length
            if places < 0:
                return []
            unit = 10**places
            base = int(int_part) * self._scale + int(fraction or 0) * 10**(self.decimals - len(fraction))
            lowest, highest = max(0, -(-(low - base + 1) // unit) - 1), min(size - 1, (high - base) // unit)
            return [(lowest, highest)] if lowest <= highest else []
        base, intervals, scale = int(body) * size, [], self._scale
        if self.width:  # as many integer digits follow the new ones as the width leaves (none past it)
            if len(int_part) + length > self.width:
                return []
            scale *= 10 ** (self.width - len(int_part) - length)
        while base * scale <= high:  # `scale` units a step: integer digits or a fraction may follow the new ones
            lowest = -(-(low + 1) // scale) - 1 - base  # the least that, with digits after it, reaches `low`
            highest = high // scale - base
            if max(0, lowest) <= min(size - 1, highest):
                intervals.append((max(0, lowest), min(size - 1, highest)))
            if self.width:
                break
            scale *= 10
        return intervals

    def complete(self, text: bytes) -> bool:
        try:
            value = text.decode("ascii")
        except UnicodeDecodeError:
            return False
        integer = rf"\d{{{self.width}}}" if self.width else r"(0|[1-9]\d*)"
        pattern = "-?" + integer + (rf"\.\d{{{self.decimals}}}" if self.decimals else "")
        if not re.fullmatch(pattern, value):
            return False
        units = round(float(value) * self._scale)
        low, high = self._bounds
        if value.startswith("-") and units == 0:
            return False
        return low <= units <= high

    def to_series(self, values: list) -> pd.Series:
        if self.kind == "integer":
            return pd.Series(values, name=self.name, dtype="Int64" if self.nullable else "int64")
        return pd.Series(values, name=self.name, dtype="float64")


class CategoricalColumn(ColumnCodec):
    """A closed set of values, written as they appeared in the data."""

    kind: Literal["categorical", "boolean"]
    categories: list[str] = Field(description="Values seen in training, as written.")
    dtype: Literal["str", "int", "bool"] = Field("str", description="Type the values are given back as.")

    @cached_property
    def _escaped(self) -> list[bytes]:
        return sorted(escape(c).encode() for c in self.categories)

    @cached_property
    def _escaped_set(self) -> frozenset[bytes]:
        return frozenset(self._escaped)

    def allowed_bytes(self) -> bytes:
        return bytes(sorted(set(b"".join(self._escaped))))

    def _write(self, value: Any) -> str:
        if isinstance(value, float) and value.is_integer():
            value = int(value)
        return escape(str(value))

    def _read(self, text: str) -> Any:
        value = unescape(text)
        if self.dtype == "int":
            return int(value)
        if self.dtype == "bool":
            return value == "True"
        return value

    def viable(self, prefix: bytes) -> bool:
        index = bisect.bisect_left(self._escaped, prefix)
        return index < len(self._escaped) and self._escaped[index].startswith(prefix)

    def complete(self, text: bytes) -> bool:
        return text in self._escaped_set

    def to_series(self, values: list) -> pd.Series:
        dtype = {"str": object, "int": "Int64", "bool": "boolean"}[self.dtype]
        return pd.Series(values, name=self.name, dtype=dtype)


_TIME_RULES = [b" ", b"012", DIGITS, b":", b"012345", DIGITS, b":", b"012345", DIGITS]


class DatetimeColumn(ColumnCodec):
    """Dates (YYYY-MM-DD) or date-times to the second, inside the day range seen in training."""

    kind: Literal["datetime"] = "datetime"
    minimum: str
    maximum: str
    with_time: bool = False

    def allowed_bytes(self) -> bytes:
        return DIGITS + (b"-: " if self.with_time else b"-")

    @cached_property
    def _days(self) -> list[bytes]:
        days = pd.date_range(self.minimum[:10], self.maximum[:10], freq="D")
        return [d.encode() for d in days.strftime("%Y-%m-%d")]

    def _write(self, value: Any) -> str:
        stamp = pd.Timestamp(value)
        return stamp.strftime("%Y-%m-%d %H:%M:%S" if self.with_time else "%Y-%m-%d")

    def _read(self, text: str) -> Any:
        return pd.Timestamp(text)

    def viable(self, prefix: bytes) -> bool:
        date, time = prefix[:10], prefix[10:]
        index = bisect.bisect_left(self._days, date)
        if index == len(self._days) or not self._days[index].startswith(date):
            return False
        if not time:
            return True
        if not self.with_time or len(date) < 10 or len(time) > len(_TIME_RULES):
            return False
        if any(byte not in rule for byte, rule in zip(time, _TIME_RULES)):
            return False
        return not (len(time) >= 3 and time[1:3] > b"23")

    def complete(self, text: bytes) -> bool:
        return self.viable(text) and len(text) == (19 if self.with_time else 10)

    def to_series(self, values: list) -> pd.Series:
        return pd.Series(pd.to_datetime(values), name=self.name)


def _utf8_within(prefix: bytes, limit: int) -> bool:
    """Whether `prefix` is UTF-8 or its start, with the last character's missing bytes still inside `limit`: byte-level
    tokens can split a character, and a value that can never decode (or only past the limit) is a dead end."""
    try:
        prefix.decode("utf-8")
        return True
    except UnicodeDecodeError as error:
        if error.reason != "unexpected end of data":
            return False
        lead = prefix[error.start]
        return error.start + (2 if lead < 0xE0 else 3 if lead < 0xF0 else 4) <= limit


class TextColumn(ColumnCodec):
    """Free text, bounded in length; the separator is escaped inside it."""

    kind: Literal["text"] = "text"
    max_bytes: int = Field(description="Longest value seen in training, in UTF-8 bytes (escaped).")

    def _write(self, value: Any) -> str:
        return escape(str(value))

    def _read(self, text: str) -> Any:
        return unescape(text)

    def viable(self, prefix: bytes) -> bool:
        if len(prefix) > self.max_bytes or b"\n" in prefix or not _utf8_within(prefix, self.max_bytes):
            return False
        return not _has_unescaped_comma_or_dangling_escape(prefix)[0]

    def complete(self, text: bytes) -> bool:
        if not text or not self.viable(text) or _has_unescaped_comma_or_dangling_escape(text)[1]:
            return False
        try:
            text.decode("utf-8")
        except UnicodeDecodeError:
            return False
        return True


class IdentifierColumn(ColumnCodec):
    """Direct identifiers are never learned; output gets consistent Faker surrogates instead."""

    kind: Literal["identifier"] = "identifier"
    identifier_type: Literal["name", "email", "phone", "ssn", "address", "id"] = "id"
    shape: str = Field("", description="Most common shape of the values (A=letter, 9=digit), for 'id'.")

    learned: ClassVar[bool] = False

    def _write(self, value: Any) -> str:
        return escape(str(value))

    def _read(self, text: str) -> Any:
        return unescape(text)


Column = Annotated[
    Union[NumericColumn, CategoricalColumn, DatetimeColumn, TextColumn, IdentifierColumn],
    Field(discriminator="kind"),
]
