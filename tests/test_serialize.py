"""GReaT-style rows: exact round trip through text and tokens, shuffled order, masked prefixes."""

import pandas as pd
from hypothesis import given, settings
from hypothesis import strategies as st

from llmsynth.data.schema import infer_schema
from llmsynth.model import train_tokenizer
from llmsynth.serialize.tabular import IGNORE, RowEncoder, parse_row_text, row_text, value_texts

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
            length = len(encoder.segment_ids(column, first=place == 0)) + len(encoder.value_ids(row[column]))
            assert positions[start:start + length] == list(range(slots[column], slots[column] + length))
            assert slots[column] + length < slots[column + 1]  # the widest value still leaves a margin
            start += length
        assert RowEncoder(tokenizer, names).encode(row, order) == (ids, labels)  # no slots: ids and labels only


def test_categories_are_one_token_each_and_sampled_as_their_text():
    """Byte-level BPE splits ` Never-married` at its hyphen into three or four tokens; a whole value is one, which
    the sampler reads as value bytes, while column segments stay the sampler's own and numbers keep their BPE."""
    from llmsynth.model import token_bytes
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
        (token,) = encoder.value_ids(value.strip())
        assert pieces[token] == value.encode()
    assert len(encoder.value_ids("15")) == 1 and pieces[encoder.value_ids("15")[0]] == b" 15"  # not " 1" + "5"
    assert pieces[encoder.segment_ids(1, first=False)[0]] == b""
    ids, _ = encoder.encode(rows[0], [0, 1, 2])
    assert tokenizer.decode(ids[1:-1]) == row_text(["status", "code", "age"], rows[0])
