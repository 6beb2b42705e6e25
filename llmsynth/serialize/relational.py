"""Related tables as the model learns them: every row a GReaT-style row after the text of what it belongs to (its
parent's row, the parent's parent's...; in a sequence also the rows just before it), so that one model learns every
table and writes each row knowing its family:

    customers: age is 42, segment is retail, number of accounts is 2
    accounts: type is checking, number of transactions is 31, first booked_at of transactions is 2024-01-03 09:12:00
    transactions: amount is 12.5, booked_at gap is 3600
    transactions: amount is 640, booked_at gap is 120
    transactions (29 more):                             <- the row learned (or written) here

A parent row carries its number of children per child table (and a sequence's first order value), so the counts are
learned with the parent's values; a sequence's rows carry the gap from the row before (0 for the first), so order
columns come out increasing, and the row learned says how many rows follow it in its sequence, so that a pattern
several rows long starts where it has room to end (a count left, not a place: no arithmetic for the model). A
sequence's rare events (a category few of its rows have, such as a fraud flag) are planned the same way: the parent
carries how many of its rows have each ("number of transactions with is_fraud 1 is 4"), and a row's header how many
are still to come, this row included ("transactions (6 more, 2 with is_fraud 1 from here):"). Keys are never
learned: generation writes fresh ones, consistent by construction.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from llmsynth.serialize.tabular import IGNORE, RowEncoder, row_text

SEQUENCE_CONTEXT = 3  # rows before a sequence's row that its context shows


def count_column(child: str) -> str:
    return f"number of {child}"


def first_column(child: str, order_by: str) -> str:
    return f"first {order_by} of {child}"


def event_column(child: str, column: str, value: str) -> str:
    return f"number of {child} with {column} {value}"


def row_header(table: str, position: int | None = None, count: int | None = None,
               events: Sequence[tuple[str, str, int]] = ()) -> str:
    """What a row's text starts with: its table's name, and in a sequence how many rows follow it (`position`
    from 0 of `count`) and, of its rare events (column, value, how many of this row and those after it have it),
    those still to come."""
    if position is None:
        return f"{table}:"
    to_come = "".join(f", {left} with {column} {value} from here" for column, value, left in events if left > 0)
    return f"{table} ({count - position - 1} more{to_come}):"


def gap_column(order_by: str, unit: str | None = None) -> str:
    """A sequence row's distance from the row before; times name their unit ("booked_at gap in minutes")."""
    return f"{order_by} gap" + (f" in {unit}" if unit else "")


@dataclass(frozen=True)
class RelationalRecord:
    table: int  # index into the plans (parents first)
    context: str  # the family's text above the row, ending with the table's name
    values: tuple[str, ...]  # the row's learned value texts, in its schema's order
    family: int  # the root entity's number: a family goes to training or validation whole
    has_event: bool = False  # one of its sequence's rare events (data.families._event_hits)
    unlearned: int = 0  # columns at the row's start that the loss skips (see synthesizers.relational._event_rows)
    ends: tuple[int, ...] = ()  # the rare events (by number) whose planned run this row ends (data.families._run_ends)


def row_line(table: str, names: Sequence[str], values: Sequence[str]) -> str:
    return row_header(table) + row_text(names, values)


class RelationalEncoder:
    """Token ids of related tables' rows: one RowEncoder per table, each row after its context's ids (`<bos>` and
    the context text, which the loss skips). Training passes one column order per record, sized for the widest
    table; a table takes the part of it that names its own columns (a permutation of them)."""

    def __init__(self, tokenizer, tables: Sequence[Sequence[str]]):
        """`tables`: each table's learned column names, parents first."""
        self.tokenizer = tokenizer
        self.rows = [RowEncoder(tokenizer, names) for names in tables]
        self.column_count = max(row.column_count for row in self.rows)
        self.pad_id = self.rows[0].pad_id

    def context_ids(self, context: str) -> list[int]:
        return self.rows[0].prefix_ids + self.rows[0].encode_text(context)

    def encode(self, record: RelationalRecord, order: Sequence[int], given_learned: bool = True
               ) -> tuple[list[int], list[int]]:
        """A root row in `order` (conditions fix root columns: any of them may come first); a row below the root in
        its table's order, the only order it is ever written in. `given_learned`: as `RowEncoder.encode`'s."""
        row = self.rows[record.table]
        columns = [c for c in order if c < row.column_count] if record.table == 0 else range(row.column_count)
        context = self.context_ids(record.context)
        ids, labels = row.encode(record.values, columns, context, given_learned)
        if record.unlearned:  # as far as the row's first columns go: the ids of those alone, less their end of row
            skipped = len(row.encode(record.values, columns[:record.unlearned], context)[0]) - 1
            labels[:skipped] = [IGNORE] * skipped
        return ids, labels

