"""Related tables made ready to learn (see serialize/relational.py for the text): sequences in order, each table's
learned frame (keys and order columns out; children's counts, a sequence's first value and gaps in), its plan (the
schema and how keys and order values are written back), and every row as a record with its family's text."""

from __future__ import annotations

from typing import Literal

import numpy as np
import pandas as pd
from pydantic import BaseModel

from llmsynth.data.relational import Database, TableLayout, is_time, order_values
from llmsynth.data.schema import MIN_ROWS, Schema, infer_column, infer_schema
from llmsynth.errors import DataError
from llmsynth.serialize.relational import (
    SEQUENCE_CONTEXT, RelationalRecord, count_column, event_column, first_column, gap_column, row_header, row_line,
)
from llmsynth.serialize.tabular import value_texts

NANOSECONDS = 1_000_000_000
TIME_UNITS = {"days": 86_400, "hours": 3_600, "minutes": 60, "seconds": 1}
RARE_EVENT_SHARE = 0.1  # a sequence's category held by fewer of its rows than this is a rare event, planned ...
EVENT_COLUMN_VALUES = 10  # ... in a column of at most this many values (a flag, a status; not an amount)


class TablePlan(BaseModel):
    """One table as the synthesizer learns and writes it (kept in the manifest)."""

    name: str
    columns: list[str]  # the source's columns, in its order: what the output has
    parent: str | None = None
    primary_key: str | None = None
    foreign_key: str | None = None
    order_by: str | None = None
    order_kind: Literal["time", "number"] | None = None
    key_prefix: str | None = None  # primary keys written as numbers (None), or as this text and zero-padded numbers
    key_width: int = 0
    gap_unit: str | None = None  # a time sequence's gaps are written in this unit (None: seconds, unnamed)
    order_last: str | None = None  # the source's last order value: generated sequences end before they pass it
    children: list[str] = []
    events: list[tuple[str, str]] = []  # a sequence's rare events: (column, value as written), see sequence_events
    event_runs: list[bool] = []  # per event: in every source sequence its rows are one unbroken run (see _one_run)
    # per column counting children or planned events: logit offsets of its values' first tokens, set after training
    # (generate.families.calibrated); {} for a root table and for models saved before
    count_bias: dict[str, dict[int, float]] = {}
    # per event (as `events`), per column: the same offsets for the row that ends the event's planned run (its
    # last, as generation fixes it: see plan_fixes); [] where there are none and for models saved before
    end_bias: list[dict[str, dict[int, float]]] = []
    table_schema: Schema

    @property
    def learned_names(self) -> list[str]:
        return [c.name for c in self.table_schema.learned]


def ordered(database: Database) -> Database:
    """The same database with each sequence's rows together and in order_by order (children of one parent in a
    run, their parents in order of first appearance)."""
    tables = dict(database.tables)
    for name, spec in database.layout.tables.items():
        if spec.order_by is not None:
            table = tables[name]
            groups = pd.factorize(table[spec.foreign_key or spec.order_by].astype(str))[0]
            times = order_values(table[spec.order_by], f"table {name!r}").to_numpy()
            tables[name] = table.iloc[np.lexsort((times, groups) if spec.foreign_key else (times,))
                                      ].reset_index(drop=True)
    return Database(database.layout, tables)


def learned_frames(database: Database) -> dict[str, pd.DataFrame]:
    """Each table as learned (from an `ordered` database): keys and order columns out; counts of children, a
    sequence's first order value and its gaps in."""
    layout = database.layout.tables
    frames = {}
    for name in database.parents_first():
        spec, table = layout[name], database.tables[name]
        frame = table.drop(columns=[c for c in (spec.primary_key, spec.foreign_key) if c])
        if spec.order_by is not None and spec.parent is not None:
            times = order_values(table[spec.order_by], f"table {name!r}")
            gaps = times.groupby(table[spec.foreign_key].astype(str)).diff().fillna(0)
            unit = gap_unit(table[spec.order_by])
            gaps = gaps / (NANOSECONDS * TIME_UNITS[unit]) if unit else gaps
            frame = frame.drop(columns=[spec.order_by])
            frame[gap_column(spec.order_by, unit)] = gaps.round(6)
            planned = list(dict.fromkeys(column for column, _ in sequence_events(table, spec)))
            frame = frame[planned + [c for c in frame.columns if c not in planned]]  # a row's planned events first
        for child in database.children(name):
            child_spec, children = layout[child], database.tables[child]
            keys = table[spec.primary_key].astype(str)
            frame[count_column(child)] = database.children_per_parent(child).to_numpy()
            if child_spec.order_by is not None:
                owners = children[child_spec.foreign_key].astype(str)
                first = children.groupby(owners)[child_spec.order_by].first()
                frame[first_column(child, child_spec.order_by)] = keys.map(first).to_numpy()
                for column, value, hits in _event_hits(children, child_spec):
                    planned = keys.map(hits.groupby(owners).sum()).fillna(0)
                    frame[event_column(child, column, value)] = planned.astype(int).to_numpy()
        frames[name] = frame
    return frames


def sequence_events(table: pd.DataFrame, spec: TableLayout) -> list[tuple[str, str]]:
    """A sequence table's rare events: (column, value as written) for each category that fewer than RARE_EVENT_SHARE
    of its rows have, in a column of at most EVENT_COLUMN_VALUES values (a fraud flag). Its parent learns how many of
    its rows have each, and each row's header says how many are left: a pattern of a few rare rows (a burst of fraud)
    is planned with the parent, which sees the whole family, not left to each row's chance."""
    return [(column, value) for column, value, _ in _event_hits(table, spec)]


def _event_hits(table: pd.DataFrame, spec: TableLayout) -> list[tuple[str, str, pd.Series]]:
    """sequence_events, each with which rows have it."""
    events = []
    keys = (spec.primary_key, spec.foreign_key, spec.order_by)
    for column in table.columns:
        present = table[column].dropna()
        if column in keys or not 2 <= present.nunique() <= EVENT_COLUMN_VALUES:
            continue
        texts = table[column].map(infer_column(str(column), present).write)
        shares = texts.value_counts(normalize=True)
        events += [(str(column), value, texts == value) for value in sorted(shares.index[shares < RARE_EVENT_SHARE])
                   if value != ""]
    return events


def gap_unit(order: pd.Series) -> str | None:
    """The largest unit every time of an order column is a whole number of (bookings at whole minutes:
    "minutes"), so that gaps are short whole numbers and come back at the source's resolution; None for numbers."""
    if not is_time(order):
        return None
    times = order_values(order, f"order column {order.name!r}").to_numpy()
    return next((unit for unit, seconds in TIME_UNITS.items() if not (times % (seconds * NANOSECONDS)).any()),
                "seconds")


def last_value(order: pd.Series) -> str:
    """An order column's last value as text: a time (ISO) or a number."""
    if is_time(order):
        return str(pd.to_datetime(order, format="mixed").max())
    return str(pd.to_numeric(order).max())


def derived_kinds(database: Database, name: str, unit: str | None) -> dict[str, str]:
    """The kinds of the columns `learned_frames` adds: counts and gaps (in `unit`, as `gap_unit` gives) are numbers
    (a count of 0 or 1 is no boolean), a first value is a time or a number as its order column is."""
    spec = database.layout.tables[name]
    kinds = {gap_column(spec.order_by, unit): "integer"} if spec.order_by and spec.parent else {}
    for child in database.children(name):
        kinds[count_column(child)] = "integer"
        order_by = database.layout.tables[child].order_by
        if order_by is not None:
            kinds[first_column(child, order_by)] = "datetime" if is_time(database.tables[child][order_by]) else "integer"
            for column, value in sequence_events(database.tables[child], database.layout.tables[child]):
                kinds[event_column(child, column, value)] = "integer"
    return kinds


def table_plans(database: Database, frames: dict[str, pd.DataFrame], column_kinds: dict[str, dict[str, str]]
                ) -> list[TablePlan]:
    plans = []
    for name in database.parents_first():
        spec, table = database.layout.tables[name], database.tables[name]
        sequence = table[spec.order_by] if spec.order_by and spec.parent else None
        unit = gap_unit(sequence) if sequence is not None else None
        kinds = {**derived_kinds(database, name, unit), **column_kinds.get(name, {})}
        try:  # a child table may be small, or hold nothing but its keys (then only how many rows is learned)
            schema = (infer_schema(frames[name], kinds, min_rows=MIN_ROWS if spec.parent is None else 1)
                      if len(frames[name].columns) else Schema(columns=[]))
        except DataError as exc:
            raise DataError(f"table {name!r}: {exc}") from exc
        prefix, width = key_shape(table[spec.primary_key]) if spec.primary_key else (None, 0)
        event_hits = _event_hits(table, spec) if sequence is not None else []
        plans.append(TablePlan(
            name=name, columns=[str(c) for c in table.columns], parent=spec.parent, primary_key=spec.primary_key,
            foreign_key=spec.foreign_key, order_by=spec.order_by,
            order_kind=None if spec.order_by is None else ("time" if is_time(table[spec.order_by]) else "number"),
            key_prefix=prefix, key_width=width,
            gap_unit=unit, order_last=last_value(sequence) if sequence is not None else None,
            children=database.children(name), table_schema=schema,
            events=[(column, value) for column, value, _ in event_hits],
            event_runs=[_one_run(hits, table[spec.foreign_key]) for *_, hits in event_hits]))
    return plans


def plan_fixes(left: int, rows_left: int, run: bool, before: bool) -> bool:
    """Whether generation gives a sequence's row an event (rather than leave it to the model): as many of it are
    still to come as rows are left (a burst the model started late would otherwise be cut off by the sequence's
    end), or the row before had it, more are to come and the source's runs of it are never broken."""
    return left >= rows_left or (left > 0 and run and before)


def _one_run(hits: pd.Series, owners: pd.Series) -> bool:
    """Whether in every sequence (of an `ordered` table) the rows with an event come one after another: a burst of
    fraud is, and generation keeps it so where the source never breaks one."""
    sequences = owners.astype(str).to_numpy()
    starts = hits & ~hits.groupby(sequences).shift(fill_value=False)
    return bool((starts.groupby(sequences).sum() <= 1).all())


def key_shape(keys: pd.Series) -> tuple[str | None, int]:
    """How fresh primary keys look like the source's: numbers (None), or the letters every key starts with and
    the digits' width ("A00017": "A", 5); keys of no such shape as the key column's name and a number."""
    if pd.api.types.is_integer_dtype(keys):
        return None, 0
    texts = keys.astype(str)
    parts = texts.str.extract(r"^(\D*)(\d+)$")
    if parts.isna().any().any() or parts[0].nunique() != 1:
        return f"{keys.name}-", 0
    padded = parts[1].str.match(r"0\d")
    width = int(parts[1].str.len().max()) if padded.any() else 0
    return parts[0].iloc[0], width


def family_records(database: Database, frames: dict[str, pd.DataFrame], plans: list[TablePlan]
                   ) -> list[RelationalRecord]:
    """Every row of every table as a record with its family's text above it."""
    lines: dict[str, list[str]] = {}
    above: dict[str, list[str]] = {}  # each row's context without its own table's name
    families: dict[str, np.ndarray] = {}
    records = []
    for index, plan in enumerate(plans):
        table = database.tables[plan.name]
        learned = plan.table_schema.learned
        values = value_texts(frames[plan.name], learned) if learned else [[] for _ in range(len(table))]
        lines[plan.name] = [row_line(plan.name, plan.learned_names, v) for v in values]
        if plan.parent is None:
            parents = np.arange(len(table))
            families[plan.name] = parents
            chains = [""] * len(table)
        else:
            parent_plan = next(p for p in plans if p.name == plan.parent)
            position = {k: i for i, k in enumerate(database.tables[plan.parent][parent_plan.primary_key].astype(str))}
            parents = np.array([position[k] for k in table[plan.foreign_key].astype(str)], dtype=int)
            families[plan.name] = families[plan.parent][parents]
            chains = [above[plan.parent][p] + lines[plan.parent][p] + "\n" for p in parents]
        above[plan.name] = chains
        sequence = plan.order_by is not None and plan.parent is not None
        runs = pd.Series(parents).groupby(parents)
        positions, counts = runs.cumcount().to_numpy(), runs.transform("size").to_numpy()
        # the hits the parent's planned counts were taken from (learned_frames), so that a header starts at that count
        event_hits = _event_hits(table, database.layout.tables[plan.name]) if plan.events else []
        to_come = {(column, value): _to_come(hits, parents) for column, value, hits in event_hits}
        with_event = np.logical_or.reduce([hits.to_numpy() for *_, hits in event_hits] or [np.zeros(len(table), bool)])
        ends = _run_ends(event_hits, to_come, parents, counts - positions, plan.event_runs)
        for row, chain in enumerate(chains):
            header, before = row_header(plan.name), ""
            if sequence:
                siblings = [r for r in range(max(0, row - SEQUENCE_CONTEXT), row) if parents[r] == parents[row]]
                before = "".join(lines[plan.name][r] + "\n" for r in siblings)
                header = row_header(plan.name, positions[row], counts[row],
                                    [(column, value, left[row]) for (column, value), left in to_come.items()])
            records.append(RelationalRecord(index, chain + before + header, tuple(values[row]),
                                            int(families[plan.name][row]), bool(with_event[row]), ends=ends[row]))
    return records


def _run_ends(event_hits: list, to_come: dict, parents: np.ndarray, rows_left: np.ndarray, runs: list[bool]
              ) -> list[tuple[int, ...]]:
    """Per row of a sequence, the events (by number) whose planned run it ends as generation writes it: the row has
    the event, none is left after it, and generation fixes it there (plan_fixes), not the model."""
    ends: list[list[int]] = [[] for _ in parents]
    for number, ((column, value, hits), run) in enumerate(zip(event_hits, runs)):
        hits, left = hits.to_numpy(), to_come[(column, value)]
        for row in np.flatnonzero(hits & (left == 1)):
            before = row > 0 and parents[row - 1] == parents[row] and bool(hits[row - 1])
            if plan_fixes(1, int(rows_left[row]), run, before):
                ends[row].append(number)
    return [tuple(e) for e in ends]


def _to_come(hits: pd.Series, parents: np.ndarray) -> np.ndarray:
    """Per row of a sequence, how many of it and the rows after it in its sequence are hits."""
    reversed_hits = pd.Series(hits.to_numpy()[::-1].astype(int))
    return reversed_hits.groupby(parents[::-1]).cumsum().to_numpy()[::-1]
