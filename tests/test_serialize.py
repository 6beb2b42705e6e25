"""GReaT-style rows: exact round trip through text and tokens, shuffled order, masked prefixes."""

import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from llmsynth.data.schema import infer_schema, with_number_places
from llmsynth.errors import ModelError
from llmsynth.model import token_bytes, train_tokenizer
from llmsynth.serialize.tabular import (IGNORE, RowEncoder, joined_token, parse_row_text, row_text, segment_texts,
                                        value_texts)

NAMES = ["age", "city", "note, with comma", "is"]
values = st.text(alphabet=st.characters(blacklist_categories=["Cs"]), max_size=12)


@given(st.lists(values, min_size=4, max_size=4), st.permutations(range(4)))
def test_row_text_round_trips_in_any_column_order(raw, order):
    from llmsynth.serialize.codecs import escape

    texts = [escape(v) for v in raw]
    names = [NAMES[i] for i in order]
    text = row_text(names, [texts[i] for i in order])
    assert parse_row_text(text, NAMES) == dict(zip(NAMES, texts))


def test_numbers_are_written_at_column_precision():
    table = pd.DataFrame({"rate": [1.5, 2.25, 3.0] * 4, "n": [1, 2, 3] * 4})
    schema = infer_schema(table)
    assert value_texts(table, schema.learned)[0] == ["1.50", "1"]


def test_missing_value_is_empty():
    table = pd.DataFrame({"a": [1, None] * 6, "b": ["x", "y"] * 6})
    schema = infer_schema(table)
    assert row_text(["a", "b"], value_texts(table, schema.learned)[1]) == " a is, b is y"


@settings(max_examples=30, deadline=None)
@given(st.permutations(range(3)))
def test_token_encoding_decodes_to_the_row_text(order):
    names = ["state", "age", "rate"]
    rows = [["CA", "34", "5.25"], ["NY", "", "12.00"]]
    tokenizer = train_tokenizer([row_text(names, r) for r in rows * 20], 300)
    encoder = RowEncoder(tokenizer, names)
    for row in rows:
        ids, labels = encoder.encode(row, order)
        assert ids[0] == tokenizer.bos_token_id and ids[-1] == tokenizer.eos_token_id
        expected = row_text([names[i] for i in order], [row[i] for i in order])
        decoded = tokenizer.decode(ids[1:-1])
        assert decoded == expected
        learned = tokenizer.decode([t for t, label in zip(ids, labels) if label != IGNORE][:-1])
        assert " is" not in learned  # column-name prefixes are written by the sampler, not learned
        assert labels[-1] == tokenizer.eos_token_id


@settings(max_examples=30, deadline=None)
@given(st.permutations(range(3)))
def test_column_slots_give_each_columns_tokens_the_same_positions_in_any_order(order):
    names = ["state", "age", "rate"]
    rows = [["CA", "34", "5.25"], ["NY", "", "112.00"], ["Utah", "7", "0.5"]]
    tokenizer = train_tokenizer([row_text(names, r) for r in rows * 20], 300)
    encoder = RowEncoder(tokenizer, names)
    slots = encoder.lay_out_slots(rows)
    assert slots[0] == 1 and all(a < b for a, b in zip(slots, slots[1:]))
    for row in rows:
        ids, labels, positions = encoder.encode(row, order)
        assert len(positions) == len(ids) and positions[0] == 0 and positions[-1] == slots[-1]
        start = 1
        for place, column in enumerate(order):
            length = len(encoder.segment_ids(column, first=place == 0)) + len(encoder.value_ids(row[column], column))
            assert positions[start:start + length] == list(range(slots[column], slots[column] + length))
            assert slots[column] + length < slots[column + 1]  # the widest value still leaves a margin
            start += length
        assert RowEncoder(tokenizer, names).encode(row, order) == (ids, labels)  # no slots: ids and labels only


@settings(max_examples=30, deadline=None)
@given(st.lists(st.integers(0, 2), min_size=1, max_size=3, unique=True))
def test_a_prompt_of_conditioned_columns_is_unlearned_and_leaves_the_whole_row_after_it_as_without(prompt):
    """TrainConfig.prompt_share: the conditioned columns ahead of the row, which follows whole in the table's order,
    its ids, labels and position ids those of the row alone; for validation (`given_learned=False`), the conditioned
    values unlearned in the row too, and nothing else."""
    names = ["state", "age", "rate"]
    rows = [["CA", "34", "5.25"], ["NY", "", "112.00"], ["Utah", "7", "0.5"]]
    tokenizer = train_tokenizer([row_text(names, r) for r in rows * 20], 300)
    encoder = RowEncoder(tokenizer, names)
    encoder.lay_out_slots(rows)
    for row in rows:
        alone = encoder.encode(row, range(3))
        ids, labels, positions = encoder.encode(row, prompt + [0, 1, 2])
        row_start = len(ids) - len(alone[0]) + 1  # after the prefix and the prompt
        assert (ids[row_start:], labels[row_start:], positions[row_start:]) == tuple(part[1:] for part in alone)
        expected, start = list(alone[1]), 1
        for column in range(3):
            start += len(encoder.segment_ids(column, first=column == 0))
            end = start + len(encoder.value_ids(row[column], column))
            if column in prompt:
                expected[start:end] = [IGNORE] * (end - start)
            start = end
        assert encoder.encode(row, prompt + [0, 1, 2], given_learned=False) == (ids, labels[:row_start] + expected[1:],
                                                                               positions)
        assert set(labels[:row_start]) == {IGNORE}
        assert tokenizer.decode(ids[1:row_start]) == row_text([names[i] for i in prompt], [row[i] for i in prompt])
        in_slots = [p for place, column in enumerate(prompt) for p in range(
            encoder.slots[column], encoder.slots[column] + len(encoder.segment_ids(column, first=place == 0))
            + len(encoder.value_ids(row[column], column)))]
        assert positions[1:row_start] == in_slots  # each conditioned column where the row has it


@settings(max_examples=20, deadline=None)
@given(st.permutations(range(4)))
def test_a_joined_category_is_one_token_with_its_segment_written_ahead_only_where_the_model_needs_it(order):
    """A category column's value and segment as one token (missing value included), learned, at one position of its
    slot in any order; its segment ahead of it only where the column does not follow a joined one (or the row's
    start) in the table's order: after a moved column, or after a number, whose end the segment decides; a tokenizer
    without joined tokens (a model saved before them) encodes as it did."""
    names, joined = ["state", "city", "age", "kind"], [["CA", "NY", "Utah", ""], ["LA", "SF"], [], ["a", "b"]]
    rows = [["CA", "LA", "34", "a"], ["", "SF", "", "b"], ["Utah", "LA", "7", "b"]]
    texts = [row_text(names, r) for r in rows * 20]
    segments = [t for name in names for t in segment_texts(name)]
    tokenizer = train_tokenizer(texts, 300, whole_tokens=segments + [
        joined_token(name, t) for name, values in zip(names, joined) for t in values])
    encoder = RowEncoder(tokenizer, names, joined=joined)
    slots = encoder.lay_out_slots(rows)
    for row in rows:
        ids, labels, positions = encoder.encode(row, order)
        for place, column in enumerate(order):
            if not joined[column]:
                continue
            token = tokenizer.convert_tokens_to_ids(joined_token(names[column], row[column]))
            (at,) = [k for k, t in enumerate(ids) if t == token]
            assert labels[at] == token and positions[at] == slots[column] + 1
            previous = order[place - 1] if place else -1
            announced = ids[at - 1] in encoder.segment_ids(column, first=place == 0)
            assert announced == (column != previous + 1 or (previous >= 0 and not joined[previous]))
            if announced and place:
                assert labels[at - 1] == ids[at - 1]  # the segment is the end of the value before
        table_order = encoder.encode(row, range(4))[0]
        assert len(table_order) == 1 + 1 + 1 + 1 + len(encoder.value_ids(row[2], 2)) + 1 + 1 + 1  # kind's segment
    plain = train_tokenizer(texts, 300, whole_tokens=segments)
    assert RowEncoder(plain, names, joined=joined).encode(rows[0], order) == RowEncoder(plain, names).encode(
        rows[0], order)


def test_categories_are_one_token_each_and_sampled_as_their_text():
    """Byte-level BPE splits ` Never-married` at its hyphen into three or four tokens; a whole value is one, which
    the sampler reads as value bytes, while column segments stay the sampler's own and numbers keep their BPE."""
    from llmsynth.serialize.tabular import whole_values

    table = pd.DataFrame({"status": ["Never-married", "Married-civ-spouse", "Divorced"] * 20,
                          "code": ["1", "2", "3"] * 20, "age": [15, 21, 34] * 20})
    schema = infer_schema(table, {"code": "categorical"})
    values = whole_values(schema.learned)
    assert values == [" 1", " 2", " 3", " Divorced", " Married-civ-spouse", " Never-married"]
    rows = value_texts(table, schema.learned)
    tokenizer = train_tokenizer([row_text(["status", "code", "age"], r) for r in rows], 300,
                                whole_tokens=[" status is", ", code is"], whole_values=values)
    encoder = RowEncoder(tokenizer, ["status", "code", "age"])
    pieces = token_bytes(tokenizer)
    for value in values:
        (token,) = encoder.value_ids(value.strip(), 1 if value.strip().isdigit() else 0)
        assert pieces[token] == value.encode()
    assert len(encoder.value_ids("15", 2)) == 1 and pieces[encoder.value_ids("15", 2)[0]] == b" 15"  # not " 1" + "5"
    assert pieces[encoder.segment_ids(1, first=False)[0]] == b""
    ids, _ = encoder.encode(rows[0], [0, 1, 2])
    assert tokenizer.decode(ids[1:-1]) == row_text(["status", "code", "age"], rows[0])


def test_a_number_written_by_places_takes_ids_of_its_own_column_and_place():
    """REaLTabFormer's number form: a table's numbers (where at least half of them are floats) padded to their widest,
    a character a token, and each character's id its column's and place's own (past the tokenizer's), so one digit
    tells the model which number and which magnitude it is; a table of mostly integers keeps the tokenizer's BPE."""
    table = pd.DataFrame({"lat": [37.88, 4.05, 40.1] * 10, "lon": [-122.23, -18.24, -121.5] * 10,
                          "ratio": [1.123456789, 2.5, 3.0] * 10, "rooms": [3, 5, 12] * 10})
    schema = with_number_places(infer_schema(table))
    assert [column.places for column in schema.learned] == [True, True, True, True]
    assert value_texts(table, schema.learned)[1] == ["04.05", "-018.24", "2.5000", "05"]  # at most 4 decimals
    mostly_integers = infer_schema(table[["lat", "rooms"]].assign(beds=[1, 2, 3] * 10))
    assert not any(column.places for column in with_number_places(mostly_integers).learned)  # as BPE writes them
    assert all(column.places for column in with_number_places(mostly_integers, "always").learned)
    assert not any(column.places for column in with_number_places(infer_schema(table), "never").learned)
    names = list(table.columns)
    tokenizer = train_tokenizer([row_text(names, r) for r in value_texts(table, schema.learned)], 300)
    encoder = RowEncoder(tokenizer, names, places=[column.place_count for column in schema.learned])
    assert encoder.place_counts == [5, 7, 6, 2]  # 37.88, -122.23, 1.1235, 12
    assert encoder.vocabulary_size == len(tokenizer) + 12 * (5 + 7 + 6 + 2)
    pieces = token_bytes(tokenizer) + encoder.place_bytes()
    latitude = encoder.value_ids("37.88", 0)
    assert [pieces[i] for i in latitude] == [b" 3", b"7", b".", b"8", b"8"] and min(latitude) >= len(tokenizer)
    assert all(token in dict(encoder.place_tokens(0, place)) for place, token in enumerate(latitude))
    assert set(latitude).isdisjoint(encoder.value_ids("37.88", 2))  # the same text in another column
    assert len(set(latitude) & set(encoder.value_ids("34.05", 0))) == 2  # the 3 (with the space) and the dot
    ids, labels, *_ = encoder.encode(value_texts(table, schema.learned)[0], range(4))
    assert ids[-1] == labels[-1] == encoder.end_of_row_id and max(ids) < encoder.vocabulary_size
    with pytest.raises(ModelError, match="lat.*137.88"):
        encoder.value_ids("137.88", 0)
