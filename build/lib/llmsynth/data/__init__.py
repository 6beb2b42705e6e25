"""Reading and writing tables, schema inference and the bundled demo data."""

from llmsynth.data.io import TableWriter, read_table, write_table, write_text
from llmsynth.data.schema import Schema, infer_schema

__all__ = ["read_table", "write_table", "write_text", "TableWriter", "Schema", "infer_schema"]
