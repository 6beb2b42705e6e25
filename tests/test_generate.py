"""Constrained sampling: every row valid, conditions honoured, seeds reproducible, bad requests refused."""

import json
import logging

import numpy as np
import pandas as pd
import pytest
import torch
from conftest import tiny_recipe

from llmsynth import TabularSynthesizer
from llmsynth.data.schema import infer_schema, with_number_places
from llmsynth.errors import GenerateError, ModelError
from llmsynth.evaluate.validity import valid_rows
from llmsynth.serialize.codecs import CategoricalColumn, IdentifierColumn
from llmsynth.train.config import load_recipe


def assert_all_valid(table: pd.DataFrame, synth: TabularSynthesizer) -> None:
    assert list(table.columns) == synth.schema.names
    invalid = table[~valid_rows(table, synth.schema)]
    assert invalid.empty, invalid.head().to_string()
    for column in synth.schema.columns:
        if isinstance(column, IdentifierColumn):
            assert table[column.name].map(lambda v: isinstance(v, str) and len(v) > 0).all(), column.name


def test_validity_check_catches_bad_rows(trained, demo_table):
    rows = demo_table.head(6).copy()
    assert valid_rows(rows, trained.schema).all()
    rows.loc[rows.index[0], "state"] = "XX"                  # unseen category
    rows.loc[rows.index[1], "age"] = 130                     # out of range
    rows.loc[rows.index[2], "interest_rate"] = 12.345        # finer than the column's precision
    rows.loc[rows.index[3], "employment"] = None             # missing where training had no nulls
    rows.loc[rows.index[4], "account_opened"] = "2030-01-01" # date out of range
    assert valid_rows(rows, trained.schema).tolist() == [False] * 5 + [True]


def test_numbers_finer_than_the_precision_cap_are_valid():
    """Ratios such as rooms per household carry full float precision; the schema keeps 6 decimals, and the real
    values, at full precision, are valid rows."""
    ratios = pd.DataFrame({"rooms": [5.663073187, 6.107226107, 4.25, 7.0] * 10})
    schema = infer_schema(ratios)
    assert schema.learned[0].decimals == 6 and valid_rows(ratios, schema).all()
    assert not valid_rows(pd.DataFrame({"rooms": [99.0]}), schema).any()  # still out of range
    by_places = with_number_places(schema)  # at most 4 decimals: the real values are finer still, and valid
    assert by_places.learned[0].decimals == 4 and valid_rows(ratios, by_places).all()


def test_every_sampled_row_is_valid(trained):
    rows = trained.sample(300, seed=3)
    assert len(rows) == 300
    assert_all_valid(rows, trained)


def test_digit_tokens_found_by_bisection_are_those_checked_one_by_one(trained):
    from llmsynth.generate.sampler import ConstrainedSampler

    fast = ConstrainedSampler(trained.ready_model(), trained.encoder, trained.schema.learned)
    assert fast._digit_tokens  # the demo table has integer and decimal columns
    fast.sample_batch([list(range(len(trained.schema.learned)))] * 64, {}, torch.Generator().manual_seed(0))
    slow = ConstrainedSampler(trained.ready_model(), trained.encoder, trained.schema.learned)
    slow._digit_tokens = {}
    integer_keys = [key for key in fast._allowed_cache if key[0] in fast._digit_tokens and len(key[1]) > 1]
    assert integer_keys
    for key in integer_keys:
        mask, complete = fast._allowed_cache[key]
        assert torch.equal(mask, slow.value_tokens(*key)[0]) and complete == slow.value_tokens(*key)[1]


@pytest.fixture(scope="module")
def joined(demo_table) -> TabularSynthesizer:
    recipe = tiny_recipe(epochs=3)
    recipe.tiny = recipe.tiny.model_copy(update={"joined_values": True})
    return TabularSynthesizer(recipe).fit(demo_table, scrub=False, progress=False)


@pytest.mark.parametrize("kind", ["trained", "joined"])
def test_the_sampler_reads_each_token_at_its_column_slot_as_training_did(kind, request):
    """With column slots a row's tokens take their column's positions whatever the order; the sampler must feed the
    model the positions training gave them, conditioned values and sampled ones alike, joined categories with or
    without their segment ahead of them (a moved column has it)."""
    from llmsynth.generate.sampler import ConstrainedSampler

    trained = request.getfixturevalue(kind)
    encoder, columns = trained.encoder, len(trained.schema.learned)
    assert encoder.slots is not None  # the tiny recipe lays columns out in slots
    model = trained.ready_model()
    fed = []  # (token, position) of each step of a one-row batch

    def read(module, args, kwargs):
        fed.append((kwargs["input_ids"][0, 0].item(), kwargs["position_ids"][0, 0].item()))

    hook = model.register_forward_pre_hook(read, with_kwargs=True)
    names = [c.name for c in trained.schema.learned]
    state = names.index("state")
    order = [state] + [c for c in reversed(range(columns)) if c != state]  # conditioned first, the rest reversed
    try:
        values = ConstrainedSampler(model, encoder, trained.schema.learned).sample_batch(
            [order], {state: "TX"}, torch.Generator().manual_seed(0))[0]
    finally:
        hook.remove()
    tokens, positions = zip(*fed)
    opens = {}  # the tokens a column's tokens start with: its segments, and its joined values (where not after them)
    for column in range(columns):
        for token in [*encoder.segment_ids(column, True)[:1], *encoder.segment_ids(column, False)[:1],
                      *encoder.joined_ids[column].values()]:
            opens[token] = column
    starts = [i for i in range(1, len(tokens)) if tokens[i] in opens and opens.get(tokens[i - 1]) != opens[tokens[i]]]
    groups = [(opens[tokens[i]], list(positions[i:end])) for i, end in zip(starts, starts[1:] + [len(tokens)])]
    assert positions[0] == 0 and starts[0] == 1
    assert [c for c, _ in groups] == order[:len(groups)] and len(groups) >= columns - 1  # the last token is not read
    for place, (column, read) in enumerate(groups):
        skipped = encoder.opening(order, place, values[column].decode()[1:])[1]
        assert read == list(range(encoder.slots[column] + skipped, encoder.slots[column] + skipped + len(read)))
    joined_columns = [c for c, _ in groups if encoder.joined_ids[c]]
    assert bool(joined_columns) == (kind == "joined")
    for column in joined_columns:  # its one token, after its segment where the column moved
        assert encoder.joined_ids[column][values[column].decode()[1:]] in tokens


def test_joined_categories_sample_valid_rows_honour_conditions_and_load_the_same(joined, demo_table, tmp_path):
    """tiny.joined_values: a category and its segment as one token, fewer tokens a row; rows valid, a joined
    column's condition held, its calibrated offsets kept, and a loaded model writing the same rows."""
    learned = joined.schema.learned
    columns = [k for k, found in enumerate(joined.encoder.joined_ids) if found]
    assert columns == [k for k, c in enumerate(learned) if isinstance(c, CategoricalColumn)]
    record = [column.write(demo_table[column.name].iloc[0]) for column in learned]
    table_order = range(len(learned))
    assert len(joined.encoder.encode(record, table_order)[0]) < len(joined.encoder.encode(record, table_order[::-1])[0])
    assert set(joined.first_token_bias) <= set(columns) and joined.first_token_bias
    rows = joined.sample(300, seed=1, conditions={"home_ownership": "rent"})
    assert_all_valid(rows, joined)
    assert (rows["home_ownership"] == "rent").all()
    loaded = TabularSynthesizer.load(joined.save(tmp_path / "model"))
    pd.testing.assert_frame_equal(loaded.sample(50, seed=2), joined.sample(50, seed=2))


def test_numbers_are_learned_and_sampled_by_places(tmp_path):
    """A table of mostly floats has its numbers written a character a token with ids of their own column and place
    (past the tokenizer's, in embeddings the model is built with): a city's latitude must bring its longitude, sampled
    or conditioned on, and a loaded model must write the same rows."""
    rng = np.random.default_rng(0)
    cities = rng.integers(0, 2, 400)
    table = pd.DataFrame({"latitude": np.where(cities, 37.77, 34.05) + rng.normal(0, 0.05, 400).round(2),
                          "longitude": np.where(cities, -122.42, -118.24) + rng.normal(0, 0.05, 400).round(2),
                          "rooms": rng.integers(1, 9, 400)})
    recipe = load_recipe("tiny-cpu")
    recipe.train.epochs = 20
    synth = TabularSynthesizer(recipe).fit(table, scrub=False, progress=False)
    assert [column.places for column in synth.schema.learned] == [True, True, True]
    assert synth.model.get_input_embeddings().weight.shape[0] == synth.encoder.vocabulary_size > len(synth.tokenizer)
    rows = synth.sample(300, seed=0)
    assert_all_valid(rows, synth)
    north = rows["latitude"] > 36
    assert ((rows["longitude"] < -120) == north).mean() > 0.9, rows.head(10).to_string()
    conditioned = synth.sample(100, conditions={"latitude": 37.8}, seed=1)
    assert (conditioned["latitude"] == 37.8).all() and (conditioned["longitude"] < -120).mean() > 0.9
    assert_all_valid(conditioned, synth)
    loaded = TabularSynthesizer.load(synth.save(tmp_path / "model"))
    assert loaded.schema == synth.schema
    pd.testing.assert_frame_equal(loaded.sample(50, seed=2), synth.sample(50, seed=2))


def test_missing_values_appear_where_the_column_had_them(trained):
    rows = trained.sample(400, seed=5, temperature=1.5)
    nullable = {c.name for c in trained.schema.learned if c.nullable}
    assert nullable == {"credit_score"}
    assert rows.drop(columns=list(nullable)).notna().all().all()


def test_same_seed_same_rows_other_seed_other_rows(trained):
    first = trained.sample(50, seed=11)
    pd.testing.assert_frame_equal(first, trained.sample(50, seed=11))
    assert not first.equals(trained.sample(50, seed=12))


def test_conditions_fix_columns_and_rows_stay_valid(trained):
    rows = trained.sample(100, conditions={"is_fraud": 1, "state": "TX", "age": 40}, seed=2)
    assert (rows["is_fraud"] == 1).all() and (rows["state"] == "TX").all() and (rows["age"] == 40).all()
    assert_all_valid(rows, trained)


def test_conditions_accept_cli_strings(trained):
    rows = trained.sample(20, conditions={"interest_rate": "12.5", "account_opened": "2015-06-01"})
    assert (rows["interest_rate"] == 12.5).all()
    assert (rows["account_opened"] == pd.Timestamp("2015-06-01")).all()


def test_a_model_learned_in_table_order_warns_of_conditions_past_its_leading_columns(demo_table, caplog):
    synth = TabularSynthesizer(tiny_recipe(epochs=1, column_order="schema")).fit(demo_table.head(100), scrub=False)
    first, later = synth.schema.learned[0].name, synth.schema.learned[-1].name
    with caplog.at_level(logging.WARNING, logger="llmsynth.generate.rows"):
        synth.sample(3, conditions={first: demo_table[first].iloc[0]})
        assert "column_order: schema" not in caplog.text
        synth.sample(3, conditions={later: demo_table[later].iloc[0]})
    assert f"conditions hold well only on its leading columns ({first})" in caplog.text
    assert f"conditioned on {later}" in caplog.text


def test_a_model_learned_with_prompts_writes_the_whole_row_after_its_conditions(demo_table):
    synth = TabularSynthesizer(tiny_recipe(epochs=1, schema_order_share=0.3, prompt_share=0.5)).fit(
        demo_table.head(200), scrub=False)
    later = synth.schema.learned[-1].name
    rows = synth.sample(40, conditions={later: demo_table[later].iloc[0], "state": "TX"}, seed=3)
    assert (rows[later] == demo_table[later].iloc[0]).all() and (rows["state"] == "TX").all()
    assert_all_valid(rows, synth)
    assert_all_valid(synth.sample(40, seed=3), synth)


@pytest.mark.parametrize("conditions, message", [
    ({"nope": 1}, "unknown column 'nope'"),
    ({"state": "XX"}, "value not seen in training; expected one of: CA, FL"),
    ({"age": 200}, r"expected a number in \[18, 85\]"),
    ({"email": "a@b.com"}, "identifier column"),
    ({"age": None}, "no missing values"),
])
def test_bad_conditions_are_refused(trained, conditions, message):
    with pytest.raises(GenerateError, match=message):
        trained.sample(5, conditions=conditions)


def test_greedy_sampling_is_deterministic(trained):
    pd.testing.assert_frame_equal(trained.sample(10, temperature=0, seed=1).drop(columns=["customer_id"]),
                                  trained.sample(10, temperature=0, seed=1).drop(columns=["customer_id"]))


def test_save_load_gives_the_same_rows_and_no_pickles(trained, tmp_path):
    trained.save(tmp_path / "model")
    files = {p.relative_to(tmp_path / "model").as_posix() for p in (tmp_path / "model").rglob("*") if p.is_file()}
    assert "manifest.json" in files and "model/model.safetensors" in files
    assert not [f for f in files if f.endswith((".bin", ".pt", ".pkl", ".pickle"))]
    manifest = json.loads((tmp_path / "model" / "manifest.json").read_text())
    assert manifest["kind"] == "tabular" and manifest["model"]["type"] == "tiny"
    assert {c["name"] for c in manifest["schema"]["columns"]} >= {"is_fraud", "ssn"}
    assert "torch" in manifest["versions"]
    loaded = TabularSynthesizer.load(tmp_path / "model")
    pd.testing.assert_frame_equal(loaded.sample(30, seed=4), trained.sample(30, seed=4))


def test_categories_are_drawn_as_often_as_the_training_rows_have_them(trained, demo_table, tmp_path):
    learned = trained.schema.learned
    assert trained.first_token_bias and all(isinstance(learned[c], CategoricalColumn) for c in trained.first_token_bias)
    loaded = TabularSynthesizer.load(trained.save(tmp_path / "model"))
    assert loaded.first_token_bias == trained.first_token_bias
    plain = TabularSynthesizer.load(tmp_path / "model")
    plain.first_token_bias = {}  # the model as trained: three epochs on 600 rows leave its shares off

    def distance(synth):  # total variation from the rows' shares, summed over the columns with few values
        rows = synth.sample(2000, seed=3)
        return sum(rows[name].value_counts(normalize=True).sub(demo_table[name].value_counts(normalize=True),
                                                              fill_value=0).abs().sum() / 2
                   for name in ("employment", "home_ownership", "loan_purpose", "is_fraud"))

    calibrated, uncalibrated = distance(loaded), distance(plain)
    assert calibrated < 0.7 * uncalibrated, (calibrated, uncalibrated)


def test_load_refuses_other_kinds_newer_versions_and_plain_folders(trained, tmp_path):
    path = trained.save(tmp_path / "model")
    manifest = json.loads((path / "manifest.json").read_text())
    (path / "manifest.json").write_text(json.dumps({**manifest, "kind": "chat"}))
    with pytest.raises(ModelError, match="holds a 'chat' synthesizer"):
        TabularSynthesizer.load(path)
    (path / "manifest.json").write_text(json.dumps({**manifest, "format_version": 99}))
    with pytest.raises(ModelError, match="newer llmsynth"):
        TabularSynthesizer.load(path)
    with pytest.raises(ModelError, match="not a synthesizer directory"):
        TabularSynthesizer.load(tmp_path)


def test_identifier_surrogates_do_not_replay_data_made_with_the_same_faker_seed():
    from faker import Faker

    from llmsynth.generate.identifiers import fill_identifiers

    fake = Faker("en_US")
    fake.seed_instance(0)
    source = [fake.name() for _ in range(200)]  # how demo and test data are often made (data.demo does this)
    column = IdentifierColumn(name="name", identifier_type="name", shape="", null_fraction=0.0)
    written = fill_identifiers(pd.DataFrame(index=range(200)), [column], seed=0)
    assert len(set(written["name"]) & set(source)) < 5  # chance meetings of common names, not the same sequence
