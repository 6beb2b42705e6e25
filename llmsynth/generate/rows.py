"""Rows out of a trained model: conditions checked up front, batches streamed as typed DataFrames."""

from __future__ import annotations

import logging
from collections.abc import Iterator, Mapping
from typing import Any

import pandas as pd
from tqdm.auto import tqdm

from llmsynth.data.schema import Schema
from llmsynth.errors import GenerateError
from llmsynth.generate.identifiers import fill_identifiers
from llmsynth.generate.sampler import ConstrainedSampler, batch_plan, row_orders
from llmsynth.serialize.codecs import CategoricalColumn, IdentifierColumn, NumericColumn, is_null

log = logging.getLogger(__name__)


def condition_texts(schema: Schema, conditions: Mapping[str, Any] | None, noun: str = "column") -> dict[int, str]:
    """Validate conditions against the schema; value texts keyed by learned-column index. `noun` is what the
    user calls a column in messages (a conversation's metadata "field")."""
    learned = schema.learned
    names = [c.name for c in learned]
    result = {}
    for name, value in (conditions or {}).items():
        if name not in schema.names:
            raise GenerateError(f"cannot condition on unknown {noun} {name!r}; {noun}s: {names}")
        if name not in names:
            raise GenerateError(f"cannot condition on {name!r}: it is an identifier {noun}, which is not learned")
        column = learned[names.index(name)]
        if is_null(value) or value == "":
            if not column.nullable:
                raise GenerateError(f"{noun} {name!r} had no missing values in training; cannot condition on null")
            result[names.index(name)] = ""
            continue
        try:
            text = column.write(value)
        except (TypeError, ValueError) as exc:
            raise GenerateError(f"condition {name}={value!r}: not a valid {column.kind} value ({exc})") from exc
        if not column.complete(text.encode()):
            raise GenerateError(f"condition {name}={value!r}: {_expected(column)}")
        result[names.index(name)] = text
    return result


def _expected(column) -> str:
    if isinstance(column, CategoricalColumn):
        shown = ", ".join(column.categories[:20]) + (", ..." if len(column.categories) > 20 else "")
        return f"value not seen in training; expected one of: {shown}"
    if isinstance(column, NumericColumn):
        return f"expected a number in [{column.minimum:g}, {column.maximum:g}] with {column.decimals} decimal(s)"
    return f"not a valid value for this {column.kind} column"


def generate_rows(
    sampler: ConstrainedSampler,
    schema: Schema,
    n: int,
    conditions: Mapping[str, Any] | None = None,
    seed: int = 0,
    batch_size: int = 256,
    temperature: float = 1.0,
    top_p: float = 1.0,
    progress: bool = True,
    column_order: str = "conditional",
    shard: tuple[int, int] = (0, 1),
) -> Iterator[pd.DataFrame]:
    """Yield typed DataFrame chunks of `batch_size` rows, in schema column order; same seed, same rows.
    `shard` (i, k): only batches i, i + k, ... (see `batch_plan`)."""
    if n < 1:
        raise GenerateError(f"the number of rows must be at least 1, got {n}")
    fixed = condition_texts(schema, conditions)
    if column_order == "schema" and sorted(fixed) != list(range(len(fixed))):
        log.warning("this model learned every row in the table's order (column_order: schema), so conditions hold "
                    "well only on its leading columns (%s); conditioned on %s, the other columns may not follow "
                    "them: train with column_order: conditional to condition on any column",
                    ", ".join(c.name for c in schema.learned[:max(len(fixed), 1)]),
                    ", ".join(schema.learned[k].name for k in sorted(fixed)))
    plan = list(batch_plan(n, batch_size, seed, shard))
    with tqdm(total=sum(count for _, count, _, _ in plan), desc="generating", unit="row",
              disable=not progress) as bar:
        for start, count, rng, generator in plan:
            orders = list(row_orders(count, len(schema.learned), list(fixed), column_order, rng))
            batch = sampler.sample_batch(orders, fixed, generator, temperature, top_p)
            yield values_frame(batch, schema, seed + start)
            bar.update(count)


def values_frame(batch: list[dict[int, bytes]], schema: Schema, seed: int) -> pd.DataFrame:
    """Sampled value bytes (by learned-column index) as a typed DataFrame in schema order, identifiers filled."""
    frame = pd.DataFrame({
        column.name: column.to_series([column.read(row[k][1:].decode()) for row in batch])
        for k, column in enumerate(schema.learned)
    }, index=range(len(batch)))
    identifiers = [c for c in schema.columns if isinstance(c, IdentifierColumn)]
    return fill_identifiers(frame, identifiers, seed)[schema.names]
