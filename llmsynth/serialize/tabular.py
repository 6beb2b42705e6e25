"""Rows as GReaT-style text (` age is 34, state is CA`) and as the token ids the model trains on.

Every segment (a column's ` name is` prefix, a value, the separator, end of row) is tokenized on its own
and the ids are concatenated, so training sees exactly the token boundaries the constrained sampler
produces. A missing value is the empty string: ` age is,`.
"""

from __future__ import annotations

from collections.abc import Sequence

import pandas as pd

from llmsynth.errors import ModelError
from llmsynth.serialize.codecs import CategoricalColumn, ColumnCodec, escape

SEPARATOR = ","
MAX_WHOLE_VALUE_CATEGORIES = 256  # more are an identifier's or a free text's many values, which BPE spells well
IGNORE = -100  # label of tokens the loss skips
PLACE_CHARACTERS = "-.0123456789"  # what a number written by places holds


def value_texts(table: pd.DataFrame, columns: Sequence[ColumnCodec]) -> list[list[str]]:
    """Each row as its learned columns' value texts, in schema order."""
    per_column = [[column.write(v) for v in table[column.name].tolist()] for column in columns]
    return [list(row) for row in zip(*per_column)]


def whole_values(columns: Sequence[ColumnCodec]) -> list[str]:
    """The values a tiny tokenizer writes as one token each: the categories of columns with at most
    MAX_WHOLE_VALUE_CATEGORIES of them, as a row writes them (after a space). Adult's fifteen columns take 34 tokens
    a row instead of 46, which is as much less time to train and to sample."""
    return sorted({" " + column.write(category) for column in columns
                   if isinstance(column, CategoricalColumn) and len(column.categories) <= MAX_WHOLE_VALUE_CATEGORIES
                   for category in column.categories if category != ""})


def joined_values(columns: Sequence[ColumnCodec]) -> list[list[str]]:
    """Per column, the value texts a tiny tokenizer writes as one token with the column's segment (`joined_token`): a
    category column's with at most MAX_WHOLE_VALUE_CATEGORIES categories, its missing value's too; none for others."""
    return [list(dict.fromkeys([column.write(category) for category in column.categories]
                               + ([""] if column.nullable else [])))
            if isinstance(column, CategoricalColumn) and len(column.categories) <= MAX_WHOLE_VALUE_CATEGORIES else []
            for column in columns]


def joined_token(name: str, text: str) -> str:
    """A column's segment and value as one token's text (`, status is Married`); a missing value's ends in the
    separator, which no value text holds unescaped."""
    return SEPARATOR + column_prefix(name) + (f" {text}" if text else SEPARATOR)


def column_prefix(name: str) -> str:
    """What the sampler writes before a column's value."""
    return f" {escape(name)} is"


def segment_texts(name: str) -> tuple[str, str]:
    """The text before a column's value: as the first column, and after another value."""
    return column_prefix(name), SEPARATOR + column_prefix(name)


def row_text(names: Sequence[str], values: Sequence[str]) -> str:
    return SEPARATOR.join(column_prefix(name) + (f" {value}" if value else "") for name, value in zip(names, values))


def split_fields(text: str) -> list[str]:
    """Split on separators that are not escaped by a backslash."""
    fields, current, escaped = [], [], False
    for char in text:
        if escaped:
            escaped = False
        elif char == "\\":
            escaped = True
        elif char == SEPARATOR:
            fields.append("".join(current))
            current = []
            continue
        current.append(char)
    fields.append("".join(current))
    return fields


def parse_row_text(text: str, names: Sequence[str]) -> dict[str, str]:
    """Inverse of row_text: value texts by column name (columns in any order)."""
    by_length = sorted(names, key=lambda n: len(escape(n)), reverse=True)
    row = {}
    for field in split_fields(text):
        name = next((n for n in by_length if field == column_prefix(n) or field.startswith(column_prefix(n) + " ")), None)
        if name is None:
            raise ValueError(f"field {field!r} does not start with a known column name")
        row[name] = field[len(escape(name)) + 5:]
    return row


def _place_pieces(place: int) -> list[bytes]:
    """What the ids of a place stand for: the first place's carry the value's leading space (a token the fewer)."""
    return [((" " if place == 0 else "") + char).encode() for char in PLACE_CHARACTERS]


class RowEncoder:
    """Token ids of rows for one tokenizer: the shared vocabulary of training and sampling.

    A row is `<bos>` then, per column, a segment (` name is` for the first column, `, name is` after a
    value) and the value's tokens, then `<eos>`. The first token of each later segment (and `<eos>`)
    is the model's decision that the previous value is complete, so it is learned; the rest of a
    segment is written by the sampler and masked out of the loss. With the tiny preset each segment
    is a single token, so a column boundary costs one step.

    With column slots (`slots`: where each column's segment starts) a token's position id is its place in its
    column's slot, whatever the row's column order: a one-layer model tells which column a value token belongs to
    only by its position (` 4` starts an income as well as a room count), and the orders that move conditioned
    columns to the front would otherwise put each column at other positions in each. Rows are then encoded with a third
    list, their position ids.

    A joined column's value (a category, `joined`) is one token with its segment (`, status is Married`), the value
    and its column in one id, complete once written: where the column follows another joined one in the table's
    order, no segment is written ahead of it (`opening`), which saves a step for each such pair.

    An order longer than the row starts with a prompt: conditioned columns, written again in the row after it, which
    the loss skips (TrainConfig.prompt_share); the row after it is encoded as it is alone.

    A column written by places (`places`: NumericColumn.places) takes no tokenizer's ids: the character at place k of
    its value (` -122.2300`: the `-` at 0, with the value's leading space, the 1 at 1...) has an id of its own for the
    column and place, past the tokenizer's, so a digit tells the model its column and magnitude by itself.
    """

    def __init__(self, tokenizer, names: Sequence[str], end_of_row_id: int | None = None,
                 prefix_ids: Sequence[int] | None = None, slots: Sequence[int] | None = None,
                 places: Sequence[int] | None = None, joined: Sequence[Sequence[str]] | None = None):
        """`end_of_row_id` closes the row (default: end of sequence; a conversation's metadata header has its own);
        `prefix_ids` open it (default: beginning of sequence; a chat template's system turn has its own); `slots`:
        the first position of each column's slot and, last, the end of row's (see `lay_out_slots`); `places`: per
        column, the places of a column written by places (its `place_count`), 0 for the others; `joined`: per column,
        the value texts written as one token with the segment (`joined_values`), where the tokenizer has them all."""
        self.tokenizer = tokenizer
        self.names = list(names)
        self.column_count = len(names)
        self.place_counts = list(places) if places is not None else [0] * self.column_count
        self.first_place_ids, next_id = [], len(tokenizer)  # column c's place k, character j: first + 12k + j
        for count in self.place_counts:
            self.first_place_ids.append(next_id)
            next_id += len(PLACE_CHARACTERS) * count
        self.vocabulary_size = next_id  # the ids this encoder writes: the model's embeddings must hold as many
        bos_id = tokenizer.bos_token_id if tokenizer.bos_token_id is not None else tokenizer.eos_token_id
        self.prefix_ids = [bos_id] if prefix_ids is None else list(prefix_ids)
        self.end_of_row_id = tokenizer.eos_token_id if end_of_row_id is None else end_of_row_id
        self.pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
        if self.end_of_row_id is None:
            raise ModelError("the tokenizer needs an end-of-sequence token")
        segments = [[self.encode_text(text) for text in segment_texts(name)] for name in names]
        self.first_segment_ids = [first for first, _ in segments]
        self.next_segment_ids = [after for _, after in segments]
        added = tokenizer.get_added_vocab()
        self.joined_ids: list[dict[str, int]] = []  # per column, its joined tokens by value text; {}: not joined
        for name, texts in zip(names, joined if joined is not None else [[]] * self.column_count):
            found = {text: added.get(joined_token(name, text)) for text in texts}
            self.joined_ids.append(found if None not in found.values() else {})  # a model saved before joined tokens
        self.end_of_value_ids = sorted({ids[0] for ids in self.next_segment_ids} | {self.end_of_row_id})
        shared: dict[str, list[int]] = {}  # value texts' ids, by column: one dict for those the tokenizer writes
        self._value_cache = [{text: [token] for text, token in found.items()} if found else {} if count else shared
                             for count, found in zip(self.place_counts, self.joined_ids)]
        self.slots = list(slots) if slots is not None else None
        if self.slots is not None and len(self.slots) != self.column_count + 1:
            raise ModelError(f"{len(self.slots)} column slots for {self.column_count} columns and the end of row")

    def lay_out_slots(self, records: Sequence[Sequence[str]], margin: int = 1) -> list[int]:
        """Column slots wide enough for each column's segment and longest value in `records`, plus `margin`; a longer
        value sampled later runs on into the next slot, which only blurs its last tokens' positions."""
        start, slots = len(self.prefix_ids), []
        for column in range(self.column_count):
            slots.append(start)
            segment = max(len(self.first_segment_ids[column]), len(self.next_segment_ids[column]))
            start += segment + max(len(self.value_ids(record[column], column)) for record in records) + margin
        self.slots = slots + [start]
        return self.slots

    def encode_text(self, text: str) -> list[int]:
        return self.tokenizer.encode(text, add_special_tokens=False)

    def prompt_length(self, order: Sequence[int]) -> int:
        """How many of `order`'s columns are a prompt ahead of the whole row (an order longer than the row)."""
        return max(len(order) - self.column_count, 0)

    def segment_ids(self, column: int, first: bool) -> list[int]:
        return (self.first_segment_ids if first else self.next_segment_ids)[column]

    def opening(self, order: Sequence[int], position: int, text: str | None = None) -> tuple[list[int], int]:
        """The ids written ahead of the value of `order[position]` (its segment), and the slot positions left unused
        before them. A joined value (`text` one of its column's, or None: the one the sampler will draw) is written
        alone where its column follows a joined one that is the one before it in the table (or is column 0 at the
        row's start), as in every unconditioned row: that value was complete in its one token, and said which column
        comes next. After a value the model ends (a number), the segment stays as the token that ends it: drawing a
        number's end and the next category in one step as well (tried: a joint draw in the sampler) sampled 1.5x the
        rows/s, not 1.25x, at about the same quality (docs/benchmarks.md, "Joined categories")."""
        column = order[position]
        first = position == 0 or position == self.prompt_length(order)
        segment = self.first_segment_ids[column] if first else self.next_segment_ids[column]
        joined = self.joined_ids[column]
        previous = -1 if first else order[position - 1]
        if joined and (text is None or text in joined) and column == previous + 1 and (
                previous < 0 or self.joined_ids[previous]):
            return [], len(segment)
        return segment, 0

    def value_ids(self, text: str, column: int) -> list[int]:
        cache = self._value_cache[column]
        ids = cache.get(text)
        if ids is None:
            if not text:
                ids = []
            elif self.place_counts[column]:
                ids = self._place_ids(text, column)
            else:
                ids = self.encode_text(" " + text)
            if len(cache) < 200_000:
                cache[text] = ids
        return ids

    def _place_ids(self, text: str, column: int) -> list[int]:
        if len(text) > self.place_counts[column] or not set(text) <= set(PLACE_CHARACTERS):
            raise ModelError(f"column {self.names[column]!r}: {text!r} is not a number of its form (at most "
                             f"{self.place_counts[column]} characters of {PLACE_CHARACTERS!r})")
        first = self.first_place_ids[column]
        return [first + len(PLACE_CHARACTERS) * place + PLACE_CHARACTERS.index(char) for place, char in enumerate(text)]

    def place_tokens(self, column: int, place: int) -> list[tuple[int, bytes]]:
        """The ids of a column's character place with the bytes each stands for; none past its last place."""
        if place >= self.place_counts[column]:
            return []
        first = self.first_place_ids[column] + len(PLACE_CHARACTERS) * place
        return [(first + index, piece) for index, piece in enumerate(_place_pieces(place))]

    def place_bytes(self) -> list[bytes]:
        """The bytes each id past the tokenizer's stands for, in id order."""
        return [piece for count in self.place_counts for place in range(count) for piece in _place_pieces(place)]

    def place_sources(self) -> list[int]:
        """For each id past the tokenizer's, the tokenizer's id of its character: where its embedding starts from."""
        return [self.encode_text(char)[0] for char in PLACE_CHARACTERS] * sum(self.place_counts)

    def encode(self, values: Sequence[str], order: Sequence[int], prefix_ids: Sequence[int] | None = None,
               given_learned: bool = True
               ) -> tuple[list[int], list[int]] | tuple[list[int], list[int], list[int]]:
        """Ids and labels for one row with its columns in `order`, after `prefix_ids` (default: the encoder's;
        a related table's row has its own context) that the loss skips; with column slots, its position ids too.
        `given_learned=False`: a prompt's values unlearned where the row repeats them too (for validation: sampling
        writes them there itself, and the loss of copying them falls for epochs after the rest has levelled off)."""
        prefix = self.prefix_ids if prefix_ids is None else prefix_ids
        ids, labels = list(prefix), [IGNORE] * len(prefix)
        positions = list(range(len(prefix))) if self.slots is not None else None
        cached = self._value_cache  # looked up inline: this runs for every value of every row in every epoch
        prompt = self.prompt_length(order)  # columns written ahead of the whole row, unlearned
        given = () if given_learned else set(order[:prompt])
        joins = any(self.joined_ids)
        for position, column in enumerate(order):
            first = position == 0 or position == prompt
            if joins:
                segment, skipped = self.opening(order, position, values[column])
            else:  # a call less per value: this is most of the encoding's time
                segment, skipped = self.first_segment_ids[column] if first else self.next_segment_ids[column], 0
            value = cached[column].get(values[column])
            if value is None:  # not `or`: a missing value's [] is cached too
                value = self.value_ids(values[column], column)
            ids += segment + value
            if position < prompt:
                labels += [IGNORE] * (len(segment) + len(value))
            else:
                learned_end = [] if first else segment[:1]
                labels += learned_end + [IGNORE] * (len(segment) - len(learned_end))
                labels += [IGNORE] * len(value) if column in given else value
            if self.slots is not None:
                start = self.slots[column] + skipped
                positions += range(start, start + len(segment) + len(value))
        ids.append(self.end_of_row_id)
        labels.append(self.end_of_row_id)
        if self.slots is None:
            return ids, labels
        return ids, labels, positions + [self.slots[-1]]
