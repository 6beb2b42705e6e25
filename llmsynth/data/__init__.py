"""Reading and writing tables and conversations, schema inference and the bundled demo data."""

from __future__ import annotations

import os

import pandas as pd

from llmsynth.data.chats import read_chats
from llmsynth.data.io import TableWriter, read_table, write_table, write_text
from llmsynth.data.schema import Schema, infer_schema

__all__ = ["read_records", "read_table", "write_table", "write_text", "TableWriter", "Schema", "infer_schema"]


def read_records(kind: str, path: str | os.PathLike) -> list[dict] | pd.DataFrame:
    """A file of records of `kind`: conversations ('chat', JSONL) or a table (CSV, Parquet, JSONL)."""
    return read_chats(path).conversations if kind == "chat" else read_table(path)
