"""Value grammars: every valid value is accepted byte by byte, and nothing invalid is ever complete."""

from hypothesis import given, settings
from hypothesis import strategies as st
import pandas as pd

from llmsynth.data.schema import infer_column
from llmsynth.serialize.codecs import CategoricalColumn, DatetimeColumn, NumericColumn, TextColumn

PRICE = NumericColumn(name="p", kind="float", minimum=-12.5, maximum=3050.75, decimals=2)
COUNT = NumericColumn(name="c", kind="integer", minimum=18, maximum=85)


def accepted_byte_by_byte(column, text: str) -> bool:
    data = text.encode()
    return all(column.viable(data[:i]) for i in range(1, len(data) + 1)) and column.complete(data)


@given(st.integers(-1250, 305075))
def test_every_in_range_number_is_reachable(units):
    assert accepted_byte_by_byte(PRICE, PRICE.write(units / 100))


@given(st.text(alphabet="-0123456789.", max_size=9))
def test_complete_numbers_are_in_range_and_at_precision(text):
    if PRICE.complete(text.encode()):
        assert -12.5 <= float(text) <= 3050.75
        assert len(text.partition(".")[2]) == 2
        assert text == PRICE.write(float(text))


@given(st.text(alphabet="-0123456789", max_size=4))
def test_viable_integer_prefixes_can_be_completed(text):
    if COUNT.viable(text.encode()):
        assert any(str(v).startswith(text) for v in range(18, 86))


def test_integer_grammar_rejects_out_of_range_and_leading_zeros():
    assert COUNT.complete(b"18") and COUNT.complete(b"85")
    assert not COUNT.complete(b"17") and not COUNT.complete(b"86") and not COUNT.complete(b"018")
    assert not COUNT.viable(b"9") and not COUNT.viable(b"-")


CATEGORIES = CategoricalColumn(name="city", kind="categorical", categories=["Washington, DC", "Austin", "Aus"])


@given(st.sampled_from(CATEGORIES.categories))
def test_categories_round_trip_with_escaped_separator(value):
    text = CATEGORIES.write(value)
    assert "," not in text.replace("\\,", "")
    assert accepted_byte_by_byte(CATEGORIES, text) and CATEGORIES.read(text) == value


def test_unseen_category_is_not_viable():
    assert not CATEGORIES.viable(b"Boston") and not CATEGORIES.complete(b"Austi")


DAYS = DatetimeColumn(name="d", minimum="2020-02-27", maximum="2020-03-02")


def test_dates_follow_the_calendar_and_range():
    assert accepted_byte_by_byte(DAYS, "2020-02-29")
    assert not DAYS.viable(b"2020-02-30") and not DAYS.viable(b"2020-03-03") and not DAYS.viable(b"2021")


def test_times_are_well_formed():
    stamps = DatetimeColumn(name="t", minimum="2020-01-01 00:00:00", maximum="2020-01-02 00:00:00", with_time=True)
    assert accepted_byte_by_byte(stamps, "2020-01-01 23:59:59")
    assert not stamps.viable(b"2020-01-01 24") and not stamps.viable(b"2020-01-01 12:60")


@settings(max_examples=50)
@given(st.text(min_size=1, max_size=30))
def test_text_round_trips_and_never_contains_a_bare_separator(value):
    column = TextColumn(name="notes", max_bytes=200)
    text = column.write(value)
    assert column.read(text) == value
    if "\n" not in value:
        assert column.complete(text.encode())


@settings(max_examples=400, deadline=None)
@given(st.integers(-10**6, 10**6), st.integers(0, 10**7), st.text(alphabet="0123456789", min_size=1, max_size=8),
       st.integers(1, 3), st.integers(0, 3), st.none() | st.text(alphabet="0123456789", max_size=3), st.booleans())
def test_digit_continuations_are_the_viable_digits(low, width, leading, length, decimals, fraction, padded):
    """The sampler's bisection over digit tokens gives what checking each token's text gives, before the point and
    after it, for numbers written in as few digits as they take and zero-padded to a width."""
    minimum, maximum = low / 10**decimals, (low + width) / 10**decimals
    padding = len(str(int(max(abs(minimum), abs(maximum))))) if padded else 0
    column = NumericColumn(name="n", kind="float" if decimals else "integer", minimum=minimum, maximum=maximum,
                           decimals=decimals, width=padding)
    body = leading + ("" if fraction is None else "." + fraction)
    if not column.takes_digits(body):  # not how this column writes a number's start: checked token by token
        assert not column.viable(body.encode()) or body == "0" or (fraction is not None and not decimals)
        return
    intervals = column.digit_continuations(body, length)
    for digits in range(10**length):
        expected = column.viable((body + str(digits).zfill(length)).encode())
        assert any(a <= digits <= b for a, b in intervals) == expected


AMOUNT = NumericColumn(name="a", kind="float", minimum=-2.5, maximum=2171.32, decimals=2, width=4)


@given(st.integers(-250, 217132))
def test_zero_padded_numbers_round_trip_and_nothing_else_is_complete(units):
    text = AMOUNT.write(units / 100)
    assert len(text.lstrip("-").partition(".")[0]) == 4
    assert accepted_byte_by_byte(AMOUNT, text) and AMOUNT.read(text) == units / 100
    unpadded = f"{units / 100:.2f}"
    assert unpadded == text or not AMOUNT.complete(unpadded.encode())


def test_the_width_is_inferred_where_numbers_differ_in_digits():
    amounts = infer_column("credit_amount", pd.Series([1478, 409, 15255]))
    assert amounts.width == 5 and amounts.write(409) == "00409" and not amounts.viable(b"2")
    assert infer_column("age", pd.Series([19, 75])).width == 0
    assert infer_column("count", pd.Series([1, 14])).width == 0  # a digit apart at most: as few as it takes
    assert infer_column("balance", pd.Series([-2.5, 0.25, 2171.32])).write(-2.5) == "-0002.50"
