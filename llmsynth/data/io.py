"""Tables in and out: CSV, Parquet, JSONL or a DataFrame, with errors that name the file and line.

CSV is read as text so that schema inference sees values as written (precision, leading zeros);
writes go to a temporary name and are renamed only when complete.
"""

from __future__ import annotations

import csv
import io
import json
import os
from pathlib import Path
from typing import TypeVar

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import yaml
from pydantic import BaseModel, ValidationError

from llmsynth.errors import DataError, LlmsynthError

Config = TypeVar("Config", bound=BaseModel)

NULL_STRINGS = frozenset({"", "NA", "N/A", "NaN", "nan", "null", "NULL", "<NA>"})
TABLE_SUFFIXES = (".csv", ".parquet", ".jsonl")


def table_format(path: Path) -> str:
    suffix = path.suffix.lower()
    if suffix not in TABLE_SUFFIXES:
        raise DataError(f"{path}: unsupported file type {suffix or '(none)'!r}; expected one of {', '.join(TABLE_SUFFIXES)}")
    return suffix[1:]


def read_table(path: str | os.PathLike) -> pd.DataFrame:
    """Read a CSV, Parquet or JSONL table; every problem becomes a DataError naming the file."""
    path = Path(path)
    fmt = table_format(path)
    if not path.is_file():
        raise DataError(f"{path}: no such file")
    if fmt == "parquet":
        try:
            table = pd.read_parquet(path)
        except Exception as exc:  # pyarrow raises many types for a broken file
            raise DataError(f"{path}: not a readable Parquet file ({exc})") from exc
    else:
        text = read_utf8(path)
        table = _parse_csv(path, text) if fmt == "csv" else _parse_jsonl(path, text)
    check_table(table, str(path))
    return table


def check_table(table: pd.DataFrame, source: str) -> None:
    """Reject tables no synthesizer can learn from, naming the source."""
    if table.shape[1] == 0:
        raise DataError(f"{source}: the table has no columns")
    if len(table) == 0:
        raise DataError(f"{source}: the table has a header but no rows")
    names = [str(c) for c in table.columns]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise DataError(f"{source}: duplicate column names {duplicates}; rename them so each is unique")


def read_utf8(path: Path) -> str:
    raw = path.read_bytes()
    if not raw.strip():
        raise DataError(f"{path}: the file is empty")
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        column = exc.start - (raw.rfind(b"\n", 0, exc.start) + 1) + 1
        raise DataError(
            f"{path}: line {line}, column {column}: byte 0x{raw[exc.start]:02x} is not valid UTF-8; "
            "re-save the file as UTF-8"
        ) from exc


def _parse_csv(path: Path, text: str) -> pd.DataFrame:
    reader = csv.reader(io.StringIO(text, newline=""), strict=True)
    try:
        header = next(reader)
        if any(not name.strip() for name in header):
            raise DataError(f"{path}: line 1: the header has an empty column name")
        rows = []
        for row in reader:
            if not row:
                continue
            if len(row) != len(header):
                raise DataError(
                    f"{path}: line {reader.line_num}: expected {len(header)} fields like the header, found {len(row)}"
                )
            rows.append([None if value in NULL_STRINGS else value for value in row])
    except csv.Error as exc:
        raise DataError(f"{path}: line {reader.line_num}: malformed CSV ({exc})") from exc
    return pd.DataFrame(rows, columns=header, dtype=object)


def _parse_jsonl(path: Path, text: str) -> pd.DataFrame:
    records = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as exc:
            raise DataError(f"{path}: line {number}, column {exc.colno}: invalid JSON ({exc.msg})") from exc
        if not isinstance(record, dict):
            raise DataError(f"{path}: line {number}: expected a JSON object, found {type(record).__name__}")
        records.append(record)
    return pd.DataFrame.from_records(records)


def write_text(path: str | os.PathLike, text: str) -> Path:
    """Write a text file atomically: a temporary name, renamed when complete."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.partial")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(path)
    return path


def write_table(table: pd.DataFrame, path: str | os.PathLike) -> Path:
    """Write a whole table atomically."""
    with TableWriter(path) as writer:
        writer.write(table)
    return Path(path)


class TableWriter:
    """Streams chunks to a temporary file and renames it to `path` only when all chunks are in.

    On an exception (or Ctrl-C) the temporary file is removed, so no half-written file
    ever carries the final name.
    """

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        self.format = table_format(self.path)
        self.tmp_path = self.path.with_name(f".{self.path.name}.partial")
        self._handle = None
        self._parquet: pq.ParquetWriter | None = None

    def __enter__(self) -> "TableWriter":
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if self.format != "parquet":
            self._handle = open(self.tmp_path, "w", encoding="utf-8", newline="")
        return self

    def write(self, chunk: pd.DataFrame | list[dict]) -> None:
        """A chunk of rows, or (JSONL only) a list of records such as conversations."""
        if isinstance(chunk, list):
            if self.format != "jsonl":
                raise DataError(f"{self.path}: conversations are written as .jsonl")
            self._handle.write("".join(json.dumps(record, ensure_ascii=False) + "\n" for record in chunk))
        elif self.format == "csv":
            chunk.to_csv(self._handle, index=False, header=self._handle.tell() == 0)
        elif self.format == "jsonl":
            chunk.to_json(self._handle, orient="records", lines=True, date_format="iso")
        else:
            arrow = pa.Table.from_pandas(chunk, preserve_index=False)
            if self._parquet is None:
                self._parquet = pq.ParquetWriter(self.tmp_path, arrow.schema)
            self._parquet.write_table(arrow.cast(self._parquet.schema))

    def __exit__(self, exc_type, exc, tb) -> None:
        if self._handle is not None:
            self._handle.close()
        if self._parquet is not None:
            self._parquet.close()
        if exc_type is None:
            os.replace(self.tmp_path, self.path)
        else:
            self.tmp_path.unlink(missing_ok=True)


def read_config(path: str | os.PathLike, model: type[Config], what: str,
                error: type[LlmsynthError] = DataError) -> Config:
    """A YAML file validated into `model` (an empty file: the defaults); every problem names the file and, for
    a wrong value, the field."""
    path = Path(path)
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise error(f"{path}: cannot read the {what} ({exc.strerror})") from None
    except yaml.YAMLError as exc:
        raise error(f"{path}: not valid YAML ({exc})") from None
    if not isinstance(raw, dict | None):
        raise error(f"{path}: expected a {what} of fields (field: value, one per line), found a YAML "
                    f"{type(raw).__name__}")
    try:
        return model.model_validate({} if raw is None else raw)
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc'])) or what}: {e['msg']}" for e in exc.errors())
        raise error(f"{path}: {problems}") from None
