"""Families out of a trained relational model: root rows first, then each child table's rows after their parents'
text (a sequence one position at a time, each row after the ones before it), every value through the constrained
sampler; keys written fresh, so every foreign key names its parent; order values from the parent's first value
plus the sampled gaps, so every sequence is increasing."""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import torch
from tqdm.auto import tqdm

from llmsynth.data.families import TIME_UNITS, TablePlan, plan_fixes
from llmsynth.generate.calibration import fit_offsets
from llmsynth.generate.rows import condition_texts, values_frame
from llmsynth.generate.sampler import ConstrainedSampler, row_orders
from llmsynth.serialize.codecs import CategoricalColumn
from llmsynth.serialize.relational import (
    SEQUENCE_CONTEXT, RelationalEncoder, RelationalRecord, count_column, event_column, first_column, gap_column,
    row_header, row_line,
)

log = logging.getLogger(__name__)

CALIBRATION_ROWS = 2000  # a table's training rows that calibrate it (a sample of them where there are more)
CALIBRATION_FAMILIES = 2000  # families the model writes to calibrate its counts after (at most 4x the training's)


@dataclass
class _Written:
    values: dict[int, bytes]  # as the sampler gives them: each learned column's bytes after a space, b"" for null
    parent: int | None  # the parent row's index among its table's written rows
    above: str  # the family's text above this row's table name
    line: str = ""
    head: str = ""  # the text between `above` and the row's values: its table's name (a sequence's rows before it)


@dataclass
class Settings:
    seed: int
    batch_size: int
    temperature: float
    top_p: float
    column_order: str


def generate_families(model, encoder: RelationalEncoder, plans: Sequence[TablePlan], n: int,
                      conditions: Mapping[str, Any] | None, settings: Settings) -> dict[str, pd.DataFrame]:
    """`n` root rows (root `conditions` fixed) with everything below them, as typed tables in the source's
    column order; primary keys numbered from 1 in each table (`number_keys` numbers a batch on after others)."""
    written = _write(model, encoder, plans, n, conditions, settings)
    by_name = {plan.name: plan for plan in plans}
    frames: dict[str, pd.DataFrame] = {}
    for plan in plans:
        frames[plan.name] = _frame(plan, written[plan.name], frames, by_name, settings.seed)
    return {plan.name: frames[plan.name][plan.columns] for plan in plans}


def _write(model, encoder: RelationalEncoder, plans: Sequence[TablePlan], n: int, conditions: Mapping[str, Any] | None,
           settings: Settings) -> dict[str, list[_Written]]:
    """generate_families' rows as the sampler writes them, per table (parents first)."""
    samplers = _Samplers(model, encoder, plans)
    by_name = {plan.name: plan for plan in plans}
    root = plans[0]
    fixed = condition_texts(root.table_schema, conditions)
    written = {root.name: _sample(samplers.get(0), encoder, root, [_Written({}, None, "") for _ in range(n)],
                                  [row_header(root.name)] * n, fixed, settings, (0, 0))}
    for index, plan in enumerate(plans[1:], start=1):
        parents, parent_plan = written[plan.parent], by_name[plan.parent]
        column = parent_plan.learned_names.index(count_column(plan.name))
        counts = [int(p.values[column][1:] or 0) for p in parents]
        below = [p.above + p.line + "\n" for p in parents]
        if plan.order_by is None:
            rows = [_Written({}, p, below[p]) for p, count in enumerate(counts) for _ in range(count)]
            written[plan.name] = _sample(samplers.get(index), encoder, plan, rows, [row_header(plan.name)] * len(rows),
                                         {}, settings, (index, 0))
            continue
        sequences: list[list[_Written]] = [[] for _ in parents]
        room, gap = _room(plan, parent_plan, parents), plan.learned_names.index(gap_column(plan.order_by, plan.gap_unit))
        events = _Events(plan, parent_plan, parents)
        for position in range(max(counts, default=0)):
            members = [p for p, count in enumerate(counts) if count > position and room[p] >= 0]
            rows = []
            for group, ((fixed, ruled_out, ends), grouped) in enumerate(
                    events.groups(members, counts, position).items()):
                heads = ["".join(r.line + "\n" for r in sequences[p][-SEQUENCE_CONTEXT:])
                         + row_header(plan.name, position, counts[p], events.to_come(p)) for p in grouped]
                rows += _sample(samplers.get(index, ruled_out, ends), encoder, plan,
                                [_Written({}, p, below[p]) for p in grouped], heads, dict(fixed), settings,
                                (index, position, group))
            for row in rows:
                p = row.parent
                room[p] -= float(row.values[gap][1:] or 0) if position else 0
                if room[p] >= 0:  # a row past the source's last order value ends its sequence (a window's end)
                    sequences[p].append(row)
                    events.written(p, row)
        written[plan.name] = [row for sequence in sequences for row in sequence]
    return written


def number_keys(tables: dict[str, pd.DataFrame], plans: Sequence[TablePlan], key_offsets: dict[str, int]
                ) -> dict[str, pd.DataFrame]:
    """A batch's tables (keys from 1, as `generate_families` writes them) with each table's primary keys numbered on
    from `key_offsets` (updated) and its children's foreign keys following them, so that batches join up."""
    tables = {name: table.copy() for name, table in tables.items()}
    for plan in plans:
        if plan.primary_key is None:
            continue
        table, start = tables[plan.name], key_offsets.get(plan.name, 0)
        keys = _keys(plan, np.arange(start + 1, start + len(table) + 1))
        renamed = dict(zip(table[plan.primary_key], keys))
        table[plan.primary_key] = keys
        key_offsets[plan.name] = start + len(table)
        for child in plans:
            if child.parent == plan.name:
                tables[child.name][child.foreign_key] = tables[child.name][child.foreign_key].map(renamed)
    return tables


def _keys(plan: TablePlan, numbers: np.ndarray) -> Any:
    """Fresh primary keys in the source's shape: numbers, or its prefix and zero-padded numbers."""
    return numbers if plan.key_prefix is None else [f"{plan.key_prefix}{k:0{plan.key_width}d}" for k in numbers]


class _Samplers:
    """A constrained sampler per table, per set of event values a sequence's plan rules out (its categories less
    those values), and per set of events whose planned run the row ends (their offsets added to the counts')."""

    def __init__(self, model, encoder: RelationalEncoder, plans: Sequence[TablePlan]):
        self.model, self.encoder, self.plans = model, encoder, plans
        self.made: dict[tuple, ConstrainedSampler] = {}

    def get(self, table: int, ruled_out: tuple[tuple[int, str], ...] = (), ends: tuple[int, ...] = ()
            ) -> ConstrainedSampler:
        found = self.made.get((table, ruled_out, ends))
        if found is None:
            plan = self.plans[table]
            columns = list(plan.table_schema.learned)
            for column, value in ruled_out:
                codec = columns[column]  # a new codec, not model_copy: that keeps the cached trie of the old
                columns[column] = type(codec)(**{**codec.model_dump(), "categories": [
                    c for c in codec.categories if codec.write(c) != value]})
            bias: dict[int, dict[int, float]] = {}
            for offsets in [plan.count_bias] + [plan.end_bias[e] for e in ends if e < len(plan.end_bias)]:
                for name, tokens in offsets.items():
                    column = bias.setdefault(plan.learned_names.index(name), {})
                    for token, offset in tokens.items():
                        column[token] = column.get(token, 0.0) + offset
            found = self.made[(table, ruled_out, ends)] = ConstrainedSampler(
                self.model, self.encoder.rows[table], columns, bias)
        return found


def _counted_columns(plan: TablePlan, plans: Sequence[TablePlan]) -> list[int]:
    """A table's columns of how many rows each child table has below a row, and how many of a sequence's rare
    events it plans."""
    names = []
    for child in (p for p in plans if p.parent == plan.name):
        names += [count_column(child.name)]
        names += [event_column(child.name, column, value) for column, value in child.events]
    return [plan.learned_names.index(name) for name in names if name in plan.learned_names]


@torch.no_grad()
def calibrated(model, encoder: RelationalEncoder, records: Sequence[RelationalRecord], plans: Sequence[TablePlan],
               seed: int = 0, column_order: str = "conditional", progress: bool = False) -> list[TablePlan]:
    """The plans with logit offsets for the first token of what a model trained for minutes writes too seldom or too
    often, though no one row's loss shows it: fitted so that, where generation asks for the value, the model starts
    it with each token as often as the training rows do (_offsets).

    - `count_bias`: per table below the root, its columns counting children or planned events (_counted_columns),
      one after another, after families the model writes itself above them (with the row's
      earlier counts calibrated). The demo bank's accounts with 11-14 transactions (every one of them a fraud
      account) came out at 2.4% of accounts where training has 3.1%, so its fraud pattern at 6.5% of card accounts
      where training has 8.4%. After the training rows' own customers one model planned fraud as often as they do,
      and after the customers it wrote, for 6.3% of card accounts against 7.2%. The root's columns come in any order
      in training, so their contexts are not one; they are left as the model writes them.
    - `end_bias`: per rare event of a sequence, the other columns of the row that ends its planned run, after the
      training rows that end one. A burst's end is seen once a sequence: one demo model wrote a small payment where
      the training rows have the large one that ends a burst of fraud in half of them."""
    rng = np.random.default_rng(seed)
    by_table: dict[int, list[RelationalRecord]] = {}
    for record in records:
        by_table.setdefault(record.table, []).append(record)
    families = min(CALIBRATION_FAMILIES, 4 * len({r.family for r in records}))  # the rows' own noise is no less
    updated: list[TablePlan] = []
    for index, plan in enumerate(tqdm(plans, desc="calibrating", unit="table", disable=not progress)):
        mine = by_table.get(index, [])
        if len(mine) > CALIBRATION_ROWS:
            mine = [mine[i] for i in sorted(rng.choice(len(mine), CALIBRATION_ROWS, replace=False))]
        sampler = ConstrainedSampler(model, encoder.rows[index], plan.table_schema.learned)
        count_bias: dict[str, dict[int, float]] = {}
        for column in sorted(_counted_columns(plan, plans)) if plan.parent is not None and mine else []:
            # the families above as calibrated so far, and this table's rows as the model writes them with its
            # earlier counts calibrated: a row's number of transactions sets how likely it plans fraud
            so_far = plan.model_copy(update={"count_bias": count_bias, "end_bias": []})
            rows = _write(model, encoder, [*updated, so_far], families, None,
                          Settings(seed, 256, 1.0, 1.0, column_order))[plan.name]
            generated = [RelationalRecord(index, row.above + row.head, tuple(_texts(row.values, plan)), 0)
                         for row in rows]
            count_bias[plan.learned_names[column]] = _offsets(model, encoder, sampler, mine, generated, index, column)
        event_columns = {plan.learned_names.index(column) for column, _ in plan.events}
        end_bias = []
        for number in range(len(plan.events)):
            ending = [r for r in by_table.get(index, []) if number in r.ends]
            end_bias.append({plan.learned_names[c]: _offsets(model, encoder, sampler, ending, ending, index, c)
                             for c in range(len(plan.learned_names)) if c not in event_columns and ending})
        updated.append(plan.model_copy(update={"count_bias": count_bias, "end_bias": end_bias}))
    return updated


def _offsets(model, encoder: RelationalEncoder, sampler: ConstrainedSampler, real: list[RelationalRecord],
             written_after: list[RelationalRecord], table: int, column: int) -> dict[int, float]:
    """Logit offsets of the tokens that may start `column`'s value, so that the model's average share of each after
    the contexts (and the row's columns before this one) of `written_after` is its share of the `real` rows' values
    (`fit_offsets`)."""
    row = encoder.rows[table]
    real, written_after = ([r for r in rows if r.values[column]] for rows in (real, written_after))  # no missing
    if not real or not written_after:
        return {}
    contexts = [row.encode(r.values, range(column), encoder.context_ids(r.context))[0][:-1]
                + row.segment_ids(column, first=column == 0) for r in written_after]
    tokens = torch.nonzero(sampler.value_tokens(column, b"")[0]).flatten()
    firsts = torch.tensor([row.value_ids(r.values[column], column)[0] for r in real])
    return fit_offsets(_first_token_logits(model, contexts, tokens, encoder.pad_id), firsts, tokens)


def _first_token_logits(model, contexts: list[list[int]], tokens: torch.Tensor, pad_id: int,
                        batch_size: int = 64) -> torch.Tensor:
    """The model's next-token logits of `tokens` after each context (a row each)."""
    rows = []
    for start in range(0, len(contexts), batch_size):
        batch = contexts[start:start + batch_size]
        lengths = torch.tensor([len(ids) for ids in batch])
        ids = torch.full((len(batch), int(lengths.max())), pad_id, dtype=torch.long)
        for number, context in enumerate(batch):
            ids[number, :len(context)] = torch.tensor(context)
        mask = (torch.arange(ids.shape[1])[None, :] < lengths[:, None]).long()
        logits = model(input_ids=ids.to(model.device), attention_mask=mask.to(model.device)).logits
        rows.append(logits[torch.arange(len(batch)), lengths - 1].float().cpu()[:, tokens])
    return torch.cat(rows)


class _Events:
    """A sequence table's rare events per parent: how many its parent planned, less those written so far, and
    whether the row before had each."""

    def __init__(self, plan: TablePlan, parent_plan: TablePlan, parents: list[_Written]):
        self.events = plan.events
        self.runs = plan.event_runs or [False] * len(plan.events)  # a model saved before runs were learned
        self.columns = [plan.learned_names.index(column) for column, _ in plan.events]
        self.categorical = [isinstance(plan.table_schema.learned[k], CategoricalColumn) for k in self.columns]
        planned = [parent_plan.learned_names.index(event_column(plan.name, column, value))
                   for column, value in plan.events]
        self.left = [[int(p.values[k][1:] or 0) for k in planned] for p in parents]
        self.before = [[False] * len(plan.events) for _ in parents]

    def groups(self, members: list[int], counts: list[int], position: int) -> dict[tuple, list[int]]:
        """The parents by what the plan asks of their row at `position`: (event values it is given, event values
        ruled out, events whose run it ends). A row is given an event where the plan fixes it (plan_fixes); an event
        none of which is left is ruled out (a category's value: a flag's other value is then all that is left)."""
        grouped: dict[tuple, list[int]] = {}
        for p in members:
            forced: dict[int, str] = {}
            ruled_out, ends = [], []
            for number, ((_, value), column, left, run, before, categorical) in enumerate(zip(
                    self.events, self.columns, self.left[p], self.runs, self.before[p], self.categorical)):
                if plan_fixes(left, counts[p] - position, run, before):
                    forced.setdefault(column, value)
                    if left == 1 and forced[column] == value:
                        ends.append(number)
                elif left <= 0 and categorical:
                    ruled_out.append((column, value))
            key = (tuple(sorted(forced.items())), tuple(sorted(c for c in ruled_out if c[0] not in forced)),
                   tuple(ends))
            grouped.setdefault(key, []).append(p)
        return grouped

    def to_come(self, parent: int) -> list[tuple[str, str, int]]:
        return [(column, value, left) for (column, value), left in zip(self.events, self.left[parent])]

    def written(self, parent: int, row: _Written) -> None:
        for number, ((_, value), column) in enumerate(zip(self.events, self.columns)):
            self.before[parent][number] = hit = row.values[column][1:].decode() == value
            self.left[parent][number] -= hit


def _room(plan: TablePlan, parent_plan: TablePlan, parents: list[_Written]) -> list[float]:
    """Per parent, how many gap units its sequence has between its first order value and the source's last."""
    if plan.order_last is None:
        return [math.inf] * len(parents)
    column = parent_plan.learned_names.index(first_column(plan.name, plan.order_by))
    firsts = [p.values[column][1:].decode() for p in parents]
    if plan.order_kind == "time":
        last, unit = pd.Timestamp(plan.order_last), TIME_UNITS[plan.gap_unit or "seconds"]
        return [(last - pd.Timestamp(first)).total_seconds() / unit if first else math.inf for first in firsts]
    return [float(plan.order_last) - float(first) if first else math.inf for first in firsts]


def _sample(sampler: ConstrainedSampler, encoder: RelationalEncoder, plan: TablePlan, rows: list[_Written],
            heads: list[str], fixed: dict[int, str], settings: Settings, step: tuple[int, ...]) -> list[_Written]:
    """The rows' values, each after its family's text and its head (a sequence's rows before it and the row's
    header), in batches; each batch's generators seeded by the seed, the table, the step and the batch's number
    alone."""
    names = plan.learned_names
    for number, start in enumerate(range(0, len(rows), settings.batch_size)):
        chunk = rows[start:start + settings.batch_size]
        rng = np.random.default_rng([settings.seed, *step, number])
        generator = torch.Generator().manual_seed(int(rng.integers(2**62)))
        mode = settings.column_order if plan.parent is None else "schema"  # as learned (RelationalEncoder.encode)
        orders = list(row_orders(len(chunk), len(names), list(fixed), mode, rng))
        chunk_heads = heads[start:start + settings.batch_size]
        prefixes = [encoder.context_ids(row.above + head) for row, head in zip(chunk, chunk_heads)]
        values = sampler.sample_batch(orders, fixed, generator, settings.temperature, settings.top_p, prefixes)
        for row, sampled, head in zip(chunk, values, chunk_heads):
            row.values, row.head = sampled, head
            row.line = row_line(plan.name, names, _texts(sampled, plan))
    return rows


def _texts(values: dict[int, bytes], plan: TablePlan) -> list[str]:
    """A written row's value texts, in its table's learned order (the sampler's bytes less their leading space)."""
    return [values[k][1:].decode() for k in range(len(plan.learned_names))]


def _frame(plan: TablePlan, rows: list[_Written], frames: dict[str, pd.DataFrame], by_name: dict[str, TablePlan],
           seed: int) -> pd.DataFrame:
    """The written rows as a typed table: values, fresh primary keys, the parents' keys, order values."""
    frame = values_frame([row.values for row in rows], plan.table_schema, seed)
    if plan.primary_key is not None:
        frame[plan.primary_key] = _keys(plan, np.arange(1, len(rows) + 1))
    if plan.parent is None:
        return frame
    parent_plan, parent_frame = by_name[plan.parent], frames[plan.parent]
    parents = np.array([row.parent for row in rows], dtype=int)
    frame[plan.foreign_key] = parent_frame[parent_plan.primary_key].to_numpy()[parents]
    if plan.order_by is not None:
        frame[plan.order_by] = _order_values(plan, frame, parent_frame, parents)
    return frame


def _order_values(plan: TablePlan, frame: pd.DataFrame, parent_frame: pd.DataFrame, parents: np.ndarray) -> Any:
    """Each sequence's first value (written with its parent) plus the gaps after it (the first row's gap is 0)."""
    first = parent_frame[first_column(plan.name, plan.order_by)]
    if len(parents) == 0:
        return first.iloc[:0].to_numpy()
    missing = first.iloc[np.unique(parents)].isna()
    if missing.any():  # a parent with children but no first value: the column's least value stands in
        minimum = first.dropna().min() if first.notna().any() else 0
        log.warning("%d %s sequences had no first %s; they start at %s", int(missing.sum()), plan.name,
                    plan.order_by, minimum)
        first = first.fillna(minimum)
    gaps = frame[gap_column(plan.order_by, plan.gap_unit)].fillna(0).astype(float).to_numpy()
    starts = np.r_[True, parents[1:] != parents[:-1]]
    gaps[starts] = 0
    offsets = pd.Series(gaps).groupby(np.cumsum(starts)).cumsum().to_numpy()
    if plan.order_kind == "time":
        seconds = TIME_UNITS[plan.gap_unit or "seconds"]
        return (pd.to_datetime(first.to_numpy()[parents]) + pd.to_timedelta(offsets * seconds, unit="s")).to_numpy()
    values = first.to_numpy()[parents] + offsets
    whole = pd.api.types.is_integer_dtype(first) and np.all(offsets == np.round(offsets))
    return values.astype(np.int64) if whole else values
