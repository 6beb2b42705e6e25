"""Relational layouts (relations.yaml + one file per table): reading, checking, splitting by root entity."""

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import yaml

from llmsynth.data.relational import (
    LAYOUT_FILE, read_database, read_sql_database, split_by_root, write_database, write_sql_database,
)
from llmsynth.errors import DataError, ModelError

LAYOUT = {"tables": {
    "customers": {"file": "customers.csv", "primary_key": "customer_id"},
    "accounts": {"file": "accounts.csv", "primary_key": "account_id", "parent": "customers",
                 "foreign_key": "customer_id"},
    "transactions": {"file": "transactions.parquet", "parent": "accounts", "foreign_key": "account_id",
                     "order_by": "booked_at"},
    "cards": {"file": "cards.jsonl", "primary_key": "card_id", "parent": "customers", "foreign_key": "customer_id"},
}}


def _transactions(**columns):
    """Three hourly bookings per account, with `columns` beside them."""
    return pd.DataFrame({"account_id": [f"A{i // 3}" for i in range(240)],
                         "booked_at": pd.date_range("2026-01-01", periods=240, freq="h").astype(str),
                         "amount": [round(5 + i * 1.5, 2) for i in range(240)], **columns})


def _bank(folder, layout=LAYOUT, **changes):
    customers = pd.DataFrame({"customer_id": [f"C{i}" for i in range(40)], "segment": ["retail", "private"] * 20})
    accounts = pd.DataFrame({"account_id": [f"A{i}" for i in range(80)], "customer_id": [f"C{i // 2}" for i in range(80)],
                             "kind": ["checking", "savings"] * 40})
    transactions = _transactions()
    cards = pd.DataFrame({"card_id": [f"K{i}" for i in range(20)], "customer_id": [f"C{i * 2}" for i in range(20)]})
    tables = {"customers": customers, "accounts": accounts, "transactions": transactions, "cards": cards, **changes}
    folder.mkdir(parents=True, exist_ok=True)
    for name, spec in layout["tables"].items():
        table = tables[name]
        path = folder / spec["file"]
        {".csv": lambda: table.to_csv(path, index=False), ".parquet": lambda: table.to_parquet(path),
         ".jsonl": lambda: table.to_json(path, orient="records", lines=True)}[path.suffix]()
    (folder / LAYOUT_FILE).write_text(yaml.safe_dump(layout))
    return folder


def test_a_tree_of_tables_is_read_parents_first(tmp_path):
    database = read_database(_bank(tmp_path / "bank"))
    assert database.root == "customers" and database.children("customers") == ["accounts", "cards"]
    assert list(database.parents_first()) == ["customers", "accounts", "transactions", "cards"]
    assert [len(database.tables[n]) for n in ("customers", "accounts", "transactions", "cards")] == [40, 80, 240, 20]


def test_a_holdout_takes_whole_families_and_the_parts_write_and_read_back(tmp_path):
    database = read_database(_bank(tmp_path / "bank"))
    train, holdout, keys = split_by_root(database, 0.25, seed=3)
    assert 0 < len(keys) < 40 and set(holdout.tables["customers"].customer_id) == set(keys)
    for part, other in ((train, holdout), (holdout, train)):
        customers = set(part.tables["customers"].customer_id)
        assert not customers & set(other.tables["customers"].customer_id)
        assert set(part.tables["accounts"].customer_id) <= customers and set(part.tables["cards"].customer_id) <= customers
        assert set(part.tables["transactions"].account_id) <= set(part.tables["accounts"].account_id)
    assert sum(len(p.tables["transactions"]) for p in (train, holdout)) == 240
    written = read_database(write_database(holdout, tmp_path / "holdout"))
    pd.testing.assert_frame_equal(written.tables["accounts"], holdout.tables["accounts"])
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []  # no staging folder left


def test_a_table_of_events_grouped_by_entity_is_its_own_root(tmp_path):
    layout = {"tables": {"transactions": {"file": "transactions.parquet", "group_by": "account_id",
                                          "order_by": "booked_at"}}}
    database = read_database(_bank(tmp_path / "events", layout))
    assert database.root == "transactions" and len(database.root_keys()) == 80
    train, holdout, keys = split_by_root(database, 0.5, seed=1)
    assert set(holdout.tables["transactions"].account_id) == set(keys)
    assert not set(keys) & set(train.tables["transactions"].account_id)


def test_a_table_of_events_is_learned_and_written_back_as_events_of_fresh_entities(tmp_path):
    from click.testing import CliRunner

    from llmsynth.cli import main

    layout = {"tables": {"transactions": {"file": "transactions.parquet", "group_by": "account_id",
                                          "order_by": "booked_at"}}}
    events, model, synth = _bank(tmp_path / "events", layout), tmp_path / "model", tmp_path / "synth"
    runner = CliRunner()
    trained = runner.invoke(main, ["train", str(events), "--kind", "relational", "-o", str(model), "--epochs", "2"])
    assert trained.exit_code == 0, trained.output
    assert "trained on 80 families" in trained.output
    written = runner.invoke(main, ["generate", str(model), "-n", "25", "-o", str(synth)])
    assert written.exit_code == 0, written.output
    synthetic = read_database(synth)  # the source's layout: one table of events, grouped, nothing else written
    assert synthetic.layout == read_database(events).layout
    assert sorted(p.name for p in synth.iterdir()) == ["relations.yaml", "transactions.parquet"]
    transactions = synthetic.tables["transactions"]
    assert list(transactions.columns) == ["account_id", "booked_at", "amount"]
    assert transactions.account_id.nunique() == 25 and transactions.account_id.str.fullmatch(r"A\d+").all()
    times = pd.to_datetime(transactions.booked_at)
    assert (times.groupby(transactions.account_id).diff().dropna() >= pd.Timedelta(0)).all()
    judged = runner.invoke(main, ["eval", "--real", str(events), "--holdout", str(events), "--synthetic", str(synth),
                                  "--model", str(model), "-o", str(tmp_path / "report")])
    assert judged.exit_code == 0, (judged.output, judged.exc_info)
    figures = json.loads((tmp_path / "report" / "metrics.json").read_text())
    sequence = figures["synthetic"]["tables"]["transactions"]
    assert sequence["referential_integrity"] == 1.0 and 0 < sequence["children_per_parent"] <= 1
    assert figures["holdout"]["children_per_parent"] == 1.0  # the "holdout" is the data itself: same lengths
    assert figures["synthetic"]["detection_auc"]["account_id"] is None  # the entities: keys alone, nothing to judge
    assert 0 <= figures["synthetic"]["detection_auc_max"] <= 1


@pytest.mark.parametrize("change, message", [
    ({"accounts": {"parent": "clients"}}, "table 'accounts' has parent 'clients', which is not a table"),
    ({"customers": {"parent": "cards", "foreign_key": "customer_id"}, "cards": {"parent": "accounts"}},
     "expected one root table"),
    ({"cards": {"parent": "accounts"}, "accounts": {"parent": "cards"}}, "cycle"),
    ({"accounts": {"foreign_key": None}}, "table 'accounts' has parent 'customers' but no foreign_key"),
    ({"customers": {"primary_key": None}}, "'customers' is the parent of 'accounts' but has no primary_key"),
    ({"accounts": {"color": "red"}}, "tables.accounts.color: Extra inputs are not permitted"),
])
def test_bad_layouts_say_what_is_wrong(tmp_path, change, message):
    layout = {"tables": {name: {**spec, **change.get(name, {})} for name, spec in LAYOUT["tables"].items()}}
    with pytest.raises(DataError, match=message):
        read_database(_bank(tmp_path / "bank", layout))


@pytest.mark.parametrize("tables, message", [
    ({"accounts": pd.DataFrame({"account_id": ["A1", "A2", "A1"], "customer_id": ["C1", "C2", "C3"]})},
     r"table 'accounts', row 3: primary key account_id='A1' is already used"),
    ({"cards": pd.DataFrame({"card_id": ["K1", "K2"], "customer_id": ["C1", "C99"]})},
     r"table 'cards', row 2: foreign key customer_id='C99' is not a 'customers' row"),
    ({"cards": pd.DataFrame({"card_id": ["K1", None], "customer_id": ["C1", "C2"]})},
     r"table 'cards', row 2: the primary_key 'card_id' is empty"),
    ({"cards": pd.DataFrame({"id": ["K1"], "customer_id": ["C1"]})}, r"its primary_key column 'card_id' is not in"),
    ({"transactions": pd.DataFrame({"account_id": ["A1", "A2"], "booked_at": ["2026-01-02", "soon"]})},
     r"table 'transactions', row 2: order column 'booked_at' holds 'soon'"),
])
def test_bad_rows_name_the_table_row_and_key(tmp_path, tables, message):
    with pytest.raises(DataError, match=message):
        read_database(_bank(tmp_path / "bank", **tables))


def test_a_sqlite_database_round_trip_keeps_tables_and_keys(tmp_path):
    database = read_database(_bank(tmp_path / "bank"))
    url = f"sqlite:///{tmp_path / 'bank.db'}"
    write_sql_database(database, url)
    back = read_sql_database(url)
    assert {n: (t.parent, t.foreign_key, t.primary_key) for n, t in back.layout.tables.items()} == \
        {n: (t.parent, t.foreign_key, t.primary_key) for n, t in database.layout.tables.items()}
    for name, table in database.tables.items():
        pd.testing.assert_frame_equal(back.tables[name], table, check_dtype=False)
    with pytest.raises(DataError, match="exists already"):
        write_sql_database(database, url)


def test_a_failed_database_write_leaves_nothing(tmp_path):
    database = read_database(_bank(tmp_path / "bank"))
    database.tables["cards"] = pd.concat([database.tables["cards"]] * 2)  # duplicate keys: the insert fails
    with pytest.raises(DataError, match="cannot write the database"):
        write_sql_database(database, f"sqlite:///{tmp_path / 'out.db'}")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bank"]


def test_a_family_is_learned_as_rows_after_their_family_text(tmp_path):
    from llmsynth.data.families import family_records, learned_frames, ordered, table_plans

    database = ordered(read_database(_bank(tmp_path / "bank")))
    frames = learned_frames(database)
    plans = table_plans(database, frames, {})
    assert [p.name for p in plans] == ["customers", "accounts", "transactions", "cards"]
    assert frames["customers"]["number of accounts"].tolist() == [2] * 40
    assert frames["customers"]["number of cards"].tolist() == [1, 0] * 20
    # hourly bookings: the gap after the row before in whole hours, the largest unit every booking time is a multiple of
    assert frames["transactions"]["booked_at gap in hours"].tolist() == [0, 1, 1] * 80
    assert plans[2].gap_unit == "hours"
    assert plans[3].table_schema.learned == []  # cards: keys only, their number per customer is what is learned
    records = family_records(database, frames, plans)
    third = [r for r in records if r.table == 2][2]  # the row says how many follow it
    assert third.context.splitlines() == [
        "customers: segment is retail, number of accounts is 2, number of cards is 1",
        "accounts: kind is checking, number of transactions is 3, first booked_at of transactions is 2026-01-01 00:00:00",
        "transactions: amount is 005.0, booked_at gap in hours is 0",  # amounts up to 3 digits: zero-padded
        "transactions: amount is 006.5, booked_at gap in hours is 1", "transactions (0 more):"]
    assert third.values == ("008.0", "1") and third.family == 0


def test_a_sequences_rare_events_are_planned_by_its_parent_and_counted_down_in_its_rows(tmp_path):
    from llmsynth.data.families import family_records, learned_frames, ordered, table_plans

    flag = [int(i in (4, 5)) for i in range(240)]  # account A1's second and third bookings; rare: 2 of 240 rows
    channel = ["card", "transfer"] * 120  # two common values: no rare event
    database = ordered(read_database(_bank(tmp_path / "bank", transactions=_transactions(flag=flag, channel=channel))))
    frames = learned_frames(database)
    plans = table_plans(database, frames, {})
    assert plans[2].events == [("flag", "1")]
    assert frames["accounts"]["number of transactions with flag 1"].tolist() == [0, 2] + [0] * 78
    headers = [r.context.splitlines()[-1] for r in family_records(database, frames, plans) if r.table == 2][:6]
    assert headers == ["transactions (2 more):", "transactions (1 more):", "transactions (0 more):",
                       "transactions (2 more, 2 with flag 1 from here):",
                       "transactions (1 more, 2 with flag 1 from here):",
                       "transactions (0 more, 1 with flag 1 from here):"]


def test_generation_keeps_the_plan_of_rare_events(tmp_path):
    from llmsynth.data.families import learned_frames, ordered, table_plans
    from llmsynth.generate.families import _Events, _Written

    def plans_for(flagged_rows):
        flag = [int(i in flagged_rows) for i in range(240)]
        database = ordered(read_database(_bank(tmp_path / "bank", transactions=_transactions(flag=flag))))
        return table_plans(database, learned_frames(database), {})

    assert plans_for((3, 5))[2].event_runs == [False]  # account A1's first and third rows: a broken run
    accounts, transactions = plans_for((4, 5))[1:3]  # its second and third: one run, as in every sequence
    assert transactions.event_runs == [True]
    planned = accounts.learned_names.index("number of transactions with flag 1")
    events = _Events(transactions, accounts, [_Written({planned: f" {n}".encode()}, 0, "") for n in (2, 0, 2)])
    flag = transactions.learned_names.index("flag")
    flag_1 = ((flag, "1"),)
    # groups are keyed by (values given, values ruled out, runs ended). Three rows each; the second account plans no
    # flag: ruled out at every row. The first plans two: free while three rows are left, given once as many are left
    # as flags to come, its last ending the run. The third starts its run at once (the model's choice): the run goes
    # on while flags are left (its second row ends it), then the flag is ruled out.
    assert events.groups([0, 1, 2], [3, 3, 3], 0) == {((), (), ()): [0, 2], ((), flag_1, ()): [1]}
    for parent, value in ((0, b" 0"), (1, b" 0"), (2, b" 1")):
        events.written(parent, _Written({flag: value}, 0, ""))
    assert events.groups([0, 1, 2], [3, 3, 3], 1) == {(flag_1, (), ()): [0], ((), flag_1, ()): [1],
                                                      (flag_1, (), (0,)): [2]}
    for parent, value in ((0, b" 1"), (1, b" 0"), (2, b" 1")):
        events.written(parent, _Written({flag: value}, 0, ""))
    assert events.groups([0, 1, 2], [3, 3, 3], 2) == {(flag_1, (), (0,)): [0], ((), flag_1, ()): [1, 2]}


def test_rows_with_a_rare_event_are_learned_again_for_what_follows_the_event(tmp_path):
    from llmsynth.data.families import family_records, learned_frames, ordered, table_plans
    from llmsynth.model import train_tokenizer
    from llmsynth.serialize.relational import RelationalEncoder
    from llmsynth.synthesizers.relational import EVENT_REPEATS, _event_rows

    flag = [int(i in (4, 5)) for i in range(240)]
    database = ordered(read_database(_bank(tmp_path / "bank", transactions=_transactions(flag=flag))))
    frames = learned_frames(database)
    plans = table_plans(database, frames, {})
    records = family_records(database, frames, plans)
    again = _event_rows(records, plans)
    assert len(again) == 2 * EVENT_REPEATS and {r.values for r in again} == {("1", "011.0", "1"), ("1", "012.5", "1")}
    texts = [r.context + " " + " ".join(r.values) for r in records]
    tokenizer = train_tokenizer(texts, 400)
    encoder = RelationalEncoder(tokenizer, [plan.learned_names for plan in plans])
    learned = [tokenizer.decode([i for i, label in zip(*encoder.encode(r, range(encoder.column_count))) if label >= 0])
               for r in (next(r for r in records if r.values == again[0].values), again[0])]
    # the row as it is learns its event (flag 1), then its amount and gap; again: all but the event
    assert learned == [" 1, 011.0, 1<eor>", ", 011.0, 1<eor>"]


def test_sampled_families_keep_every_key_order_and_value_valid(tmp_path):
    from llmsynth.generate.families import _Samplers
    from llmsynth.synthesizers import RelationalSynthesizer, load

    synth = RelationalSynthesizer()
    synth.recipe.train = synth.recipe.train.model_copy(update={"epochs": 3})
    flagged = _transactions(flag=[int(i % 30 == 29) for i in range(240)])  # a rare event the accounts plan
    synth.fit(_bank(tmp_path / "bank", transactions=flagged), scrub=False, progress=False)
    database = synth.sample(30, seed=1)
    customers, accounts = database.tables["customers"], database.tables["accounts"]
    transactions, cards = database.tables["transactions"], database.tables["cards"]
    assert len(customers) == 30 and customers.customer_id.is_unique and accounts.account_id.is_unique
    assert set(accounts.customer_id) <= set(customers.customer_id) and set(cards.customer_id) <= set(customers.customer_id)
    assert set(transactions.account_id) <= set(accounts.account_id)
    assert list(transactions.columns) == ["account_id", "booked_at", "amount", "flag"]  # the source's, in its order
    assert set(transactions.flag) <= {0, 1}
    assert customers.customer_id.str.fullmatch(r"C\d+").all()  # keys shaped like the source's
    assert set(customers.segment) <= {"retail", "private"} and set(accounts.kind) <= {"checking", "savings"}
    assert transactions.amount.between(5, 5 + 239 * 1.5).all()
    times = pd.to_datetime(transactions.booked_at)
    assert (times.groupby(transactions.account_id).diff().dropna() >= pd.Timedelta(0)).all()
    gaps = times.groupby(transactions.account_id).diff().dropna()
    assert (gaps == gaps.dt.floor("h")).all()  # whole hours after the row before, as the source's bookings are
    source = read_database(tmp_path / "bank").tables["transactions"]
    assert times.max() <= pd.to_datetime(source.booked_at).max()  # sequences end at the source's last booking
    assert accounts.groupby("customer_id").size().max() <= 2 and cards.groupby("customer_id").size().max() <= 1
    private = synth.sample(8, conditions={"segment": "private"}, seed=2).tables["customers"]
    assert (private.segment == "private").all()
    samplers = _Samplers(synth.ready_model(), synth.encoder, synth.plans)  # a flag the plan has none left of
    flag, columns = synth.plans[2].learned_names.index("flag"), len(synth.plans[2].learned_names)
    no_flag = samplers.get(2, ((flag, "1"),))
    assert samplers.get(2, ((flag, "1"),)) is no_flag and not no_flag.columns[flag].viable(b"1")
    told_one = synth.encoder.context_ids("transactions (0 more, 1 with flag 1 from here):")
    written = no_flag.sample_batch([list(range(columns))] * 16, {}, torch.Generator().manual_seed(0),
                                   prefixes=[told_one] * 16)
    assert {row[flag] for row in written} == {b" 0"}
    synth.save(tmp_path / "model")
    again = load(tmp_path / "model").sample(30, seed=1)
    for name, table in database.tables.items():
        pd.testing.assert_frame_equal(again.tables[name], table)
    manifest = json.loads((tmp_path / "model" / "manifest.json").read_text())
    (tmp_path / "model" / "manifest.json").write_text(json.dumps({**manifest, "format_version": 2}))
    with pytest.raises(ModelError, match="older llmsynth .* train it again"):  # its rows did not count rare events
        load(tmp_path / "model")


def test_counts_and_the_ends_of_planned_runs_are_calibrated_to_the_training_rows(tmp_path):
    from llmsynth.data.families import family_records, learned_frames, ordered
    from llmsynth.generate.families import _Samplers
    from llmsynth.generate.sampler import ConstrainedSampler
    from llmsynth.synthesizers import RelationalSynthesizer

    # accounts with 1, 2 or 9 transactions (a tenth of them 9: a rare tail), and in each of the nine a flagged run of
    # two, a small amount then 400 (the run's end, seen 8 times), learned for two epochs only
    counts = [1, 2] * 36 + [9] * 8
    owners = [f"A{account}" for account, count in enumerate(counts) for _ in range(count)]
    position = pd.Series(owners).groupby(owners).cumcount().to_numpy()
    nine = pd.Series(owners).map(dict(zip([f"A{a}" for a in range(len(counts))], counts))).to_numpy() == 9
    amounts = np.where(nine & (position == 6), 400.0, np.arange(len(owners)) % 23 + 1.5)
    flags = (nine & np.isin(position, [5, 6])).astype(int)
    transactions = pd.DataFrame({"account_id": owners, "amount": amounts, "flag": flags,
                                 "booked_at": pd.date_range("2026-01-01", periods=len(owners), freq="h").astype(str)})
    folder = _bank(tmp_path / "bank", transactions=transactions)
    synth = RelationalSynthesizer()
    synth.recipe.train = synth.recipe.train.model_copy(update={"epochs": 2})
    synth.fit(folder, scrub=False, progress=False)
    customers, accounts, transactions_plan, cards = synth.plans
    assert set(accounts.count_bias) == {"number of transactions", "number of transactions with flag 1"}
    assert customers.count_bias == transactions_plan.count_bias == cards.count_bias == {}  # the root, childless tables
    assert transactions_plan.events == [("flag", "1")] and set(transactions_plan.end_bias[0]) == {
        "amount", "booked_at gap in hours"}  # the run's other columns

    database = ordered(read_database(folder))
    records = family_records(database, learned_frames(database), synth.plans)
    assert [r.values for r in records if r.ends] == [r.values for r in records if r.table == 2 and "400.0" in r.values]
    model, samplers = synth.ready_model(), _Samplers(synth.ready_model(), synth.encoder, synth.plans)

    def shares(sampler, table, column, fixed=None):
        rows = [r for r in records if r.table == table and (fixed is None or r.ends)]
        prefixes = [synth.encoder.context_ids(r.context) for r in rows] * (160 // len(rows) + 1)
        order = [list(range(len(synth.plans[table].learned_names)))] * len(prefixes)
        written = sampler.sample_batch(order, fixed or {}, torch.Generator().manual_seed(0), prefixes=prefixes)
        return pd.Series([float(row[column]) for row in written]).value_counts(normalize=True)

    # after the training rows' own customers the model writes the rare 9 too seldom; the offsets bring it back
    column = accounts.learned_names.index("number of transactions")
    calibrated = shares(samplers.get(1), 1, column)
    plain = shares(ConstrainedSampler(model, synth.encoder.rows[1], accounts.table_schema.learned), 1, column)
    assert abs(calibrated[9] - 0.1) < abs(plain[9] - 0.1) / 2, (plain.to_dict(), calibrated.to_dict())
    nine = synth.encoder.rows[1].value_ids("9", column)[0]  # an offset large enough decides the first token alone
    forced = ConstrainedSampler(model, synth.encoder.rows[1], accounts.table_schema.learned, {column: {nine: 50.0}})
    assert shares(forced, 1, column).to_dict() == {9: 1.0}
    # the row that ends the run: the model, told it is the last flagged one, writes 400 too seldom
    amount, flag = (transactions_plan.learned_names.index(name) for name in ("amount", "flag"))
    ended = shares(samplers.get(2, (), (0,)), 2, amount, {flag: "1"}).get(400.0, 0)
    not_ended = shares(samplers.get(2), 2, amount, {flag: "1"}).get(400.0, 0)
    assert abs(ended - 1) < abs(not_ended - 1) / 2, (not_ended, ended)


def test_the_command_line_trains_on_a_folder_and_writes_a_folder_and_a_database(tmp_path):
    from click.testing import CliRunner

    from llmsynth.cli import main

    names = ["Maria Gonzalez", "Kwame Mensah", "Daniel Fischer", "Sarah Johnson"] * 10
    customers = pd.DataFrame({"customer_id": [f"C{i}" for i in range(40)], "segment": ["retail", "private"] * 20,
                              "note": [f"Spoke with {name} about card {i} on Monday" for i, name in enumerate(names)]})
    bank, model = _bank(tmp_path / "bank", customers=customers), tmp_path / "model"
    runner = CliRunner()
    bad = runner.invoke(main, ["train", str(bank), "--kind", "relational", "-o", str(model), "--column-kind",
                               "segment=categorical"])
    assert bad.exit_code == 2 and "TABLE.COL=KIND" in bad.output
    trained = runner.invoke(main, ["train", str(bank), "--kind", "relational", "-o", str(model), "--epochs", "1",
                                   "--column-kind", "customers.segment=categorical"])
    assert trained.exit_code == 0, trained.output
    assert "customers.note" in trained.output and "trained on 40 families (customers 40, accounts 80" in trained.output
    manifest = json.loads((model / "manifest.json").read_text())
    assert manifest["scrub"]["tables"]["customers"]["columns"]["note"]["entities"]["PERSON"] == 40
    written = runner.invoke(main, ["generate", str(model), "-n", "12", "-o", str(tmp_path / "synth")])
    assert written.exit_code == 0, written.output
    synthetic = read_database(tmp_path / "synth")  # checked as any input is: keys unique, no orphans
    assert len(synthetic.tables["customers"]) == 12 and not any(n in " ".join(synthetic.tables["customers"].note)
                                                                  for n in names)
    judged = runner.invoke(main, ["eval", "--real", str(bank), "--holdout", str(bank), "--synthetic",
                                  str(tmp_path / "synth"), "--model", str(model), "-o", str(tmp_path / "report")])
    assert judged.exit_code == 0, (judged.output, judged.exc_info)
    figures = json.loads((tmp_path / "report" / "metrics.json").read_text())
    assert figures["synthetic"]["referential_integrity"] == 1.0 and figures["holdout"]["children_per_parent"] == 1.0
    assert figures["record_risk"]["exact_family_matches"]["holdout"] == 1.0  # the "holdout" is the training data
    assert "children per parent" in judged.output and "families equal to a training family" in judged.output
    report = (tmp_path / "report" / "report.html").read_text()
    for part in ("Privacy per root entity", "Table accounts", "Parent-child trends", "Distributions: transactions",
                 "booked_at gap", "Families most at risk"):
        assert part in report, part
    assert report.count("<img") == 4  # a panel of plots per table (cards: keys alone, its count per customer)
    url = f"sqlite:///{tmp_path / 'synth.db'}"
    for attempt in (0, 1):
        stored = runner.invoke(main, ["generate", str(model), "-n", "5", "-o", url, "--condition", "segment=private"])
        assert (stored.exit_code, "exists already" in stored.output) == ((0, False) if attempt == 0 else (2, True))
    assert read_sql_database(url).tables["customers"].segment.tolist() == ["private"] * 5
    missing = tmp_path / "missing.db"
    with pytest.raises(DataError, match="no such database file"):
        read_sql_database(f"sqlite:///{missing}")
    assert not missing.exists()  # connecting would have made an empty one


def test_relational_figures_tell_a_faithful_copy_from_a_broken_one():
    from llmsynth.data.demo import bank, fraud_burst_share
    from llmsynth.data.relational import Database, Layout
    from llmsynth.evaluate.relational import relational_metrics

    layout, tables = bank(120, seed=1)
    real = Database(Layout.model_validate(layout), tables)
    same = relational_metrics(real, real)
    assert same["referential_integrity"] == 1.0 and same["children_per_parent"] == 1.0
    assert same["parent_child_trend_gap_max"] == 0.0
    sequences = same["tables"]["transactions"]
    assert sequences["ordered"] == 1.0 and sequences["gaps"] == 1.0 and sequences["transitions"]["channel"] == 1.0
    assert 0.03 < fraud_burst_share(tables["accounts"], tables["transactions"]) < 0.2
    transactions = tables["transactions"].copy()
    transactions.loc[::10, "account_id"] = "A999"  # orphans
    transactions["booked_at"] = transactions["booked_at"].iloc[::-1].to_numpy()  # time runs backwards
    accounts = tables["accounts"].assign(kind="checking")  # no savings: the kind-amount trend is gone
    broken = relational_metrics(real, Database(real.layout, {**tables, "transactions": transactions,
                                                             "accounts": accounts}))
    assert abs(broken["referential_integrity"] - 0.9) < 0.01
    assert broken["tables"]["transactions"]["ordered"] < 0.3
    assert broken["tables"]["transactions"]["children_per_parent"] < 0.95
    assert fraud_burst_share(accounts, transactions) < fraud_burst_share(tables["accounts"], tables["transactions"])


def test_detection_judges_each_child_row_beside_its_parent():
    from llmsynth.data.demo import bank
    from llmsynth.data.relational import Database, Layout
    from llmsynth.evaluate.relational import detection_aucs, relational_metrics

    real, other = (Database(Layout.model_validate(layout), tables)
                   for layout, tables in (bank(200, seed=1), bank(200, seed=2)))
    fair = detection_aucs(real, other)
    assert set(fair) == {"customers", "accounts", "transactions", "families"}
    assert max(fair.values()) < 0.7  # two draws of the same bank
    # savings and checking accounts swapped: every transaction plausible alone, not beside its account's kind
    swapped = other.tables["accounts"].assign(kind=other.tables["accounts"].kind.map(
        {"savings": "checking", "checking": "savings"}).fillna(other.tables["accounts"].kind))
    wrong = relational_metrics(real, Database(other.layout, {**other.tables, "accounts": swapped}))
    assert wrong["detection_auc"]["transactions"] > fair["transactions"] + 0.1
    assert wrong["detection_auc"]["customers"] == fair["customers"]  # a table above the change is judged the same
    assert wrong["detection_auc_max"] == max(wrong["detection_auc"].values())


def test_sequence_figures_leave_a_sequence_tables_own_key_out():
    from llmsynth.data.relational import Database, Layout
    from llmsynth.evaluate.relational import relational_metrics

    layout = Layout.model_validate({"tables": {
        "customers": {"file": "customers.csv", "primary_key": "customer_id"},
        "payments": {"file": "payments.csv", "primary_key": "payment_id", "parent": "customers",
                     "foreign_key": "customer_id", "order_by": "booked_at"}}})
    rng = np.random.default_rng(0)
    payments = pd.DataFrame({"payment_id": range(300), "customer_id": np.repeat(range(30), 10),
                             "booked_at": np.tile(range(10), 30), "amount": rng.gamma(2, 20, 300).round(2),
                             "channel": rng.choice(["card", "wire"], 300)})
    database = Database(layout, {"customers": pd.DataFrame({"customer_id": range(30)}), "payments": payments})
    sequence = relational_metrics(database, database)["tables"]["payments"]
    assert set(sequence["lag1_autocorrelation"]) == {"amount"}  # payment_id counts up: a key, not a learned value
    assert set(sequence["transitions"]) == {"channel"}


def test_whole_families_copied_into_the_synthetic_data_are_the_ones_at_risk():
    from llmsynth.data.demo import bank
    from llmsynth.data.relational import Database, Layout
    from llmsynth.evaluate.risk import family_frame, family_record_risk

    layout, tables = bank(300, seed=1)
    train, holdout, _ = split_by_root(Database(Layout.model_validate(layout), tables), 0.3, seed=0)
    fresh = Database(train.layout, bank(200, seed=7)[1])
    frame = family_frame(train, train)
    assert len(frame) == len(train.tables["customers"]) and "accounts rows" in frame.columns
    assert any(column.startswith("mean transactions.") for column in frame.columns)
    risk, families = family_record_risk(train, holdout, fresh)
    assert risk["families"] == len(frame) and risk["at_risk_excess"] < 0.05
    assert risk["exact_family_matches"] == {"synthetic": 0.0, "holdout": 0.0} and 0.35 < risk["dcr_share"] < 0.65
    copied = Database(train.layout, train.tables)  # every family of the training data, as it is
    risk, families = family_record_risk(train, holdout, copied)
    assert risk["at_risk_share"] > 0.9 and risk["near_copies"] == len(frame) and families["exact_copy"].all()
    assert set(families["record"]) == set(frame.index) and (families["nearest_synthetic_distance"] < 1e-4).all()
    # training families subsampled to the holdout's 90: a copy of one of those 90 (3 in 7) is nearer by 0
    assert risk["exact_family_matches"]["synthetic"] == 1.0 and risk["dcr_share"] > 0.65
    # one transaction's amount changed in each family: near, but no longer the same family row for row
    moved = train.tables["transactions"].copy()
    first = ~moved.account_id.duplicated()
    moved.loc[first, "amount"] += 0.01
    risk, families = family_record_risk(train, holdout, Database(train.layout, {**train.tables, "transactions": moved}))
    changed = train.tables["accounts"].customer_id[train.tables["accounts"].account_id.isin(moved.account_id)].nunique()
    assert risk["exact_family_matches"]["synthetic"] == pytest.approx(1 - changed / len(frame))


@pytest.fixture(scope="module")
def postgres():
    """A PostgreSQL server of our own on a free loopback port (Debian's postgresql; `make test` installs it), stopped
    after the module; yields a function giving the URL of a new empty database on it."""
    import glob
    import os
    import shutil
    import socket
    import subprocess
    import tempfile

    binaries = sorted(glob.glob("/usr/lib/postgresql/*/bin"))
    initdb = shutil.which("initdb") or (binaries and f"{binaries[-1]}/initdb")
    if not initdb:
        pytest.fail("PostgreSQL is not installed: `make test` installs Debian's postgresql package")
    folder = Path(tempfile.mkdtemp(prefix="llmsynth-postgres-"))  # not under pytest's folder, which only root enters
    as_owner = []
    if os.geteuid() == 0:  # the server refuses to run as root: it runs as Debian's postgres user
        shutil.chown(folder, "postgres")
        as_owner = ["runuser", "-u", "postgres", "--"]
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    pg_ctl = str(Path(initdb).resolve().parent / "pg_ctl")
    subprocess.run([*as_owner, initdb, "-D", f"{folder}/data", "-U", "postgres", "--auth=trust"], check=True,
                   capture_output=True)
    subprocess.run([*as_owner, pg_ctl, "-D", f"{folder}/data", "-l", f"{folder}/log", "-w", "-o",
                    f"-p {port} -k {folder} -c listen_addresses=127.0.0.1", "start"], check=True, capture_output=True)
    from sqlalchemy import create_engine, text

    server = create_engine(f"postgresql://postgres@127.0.0.1:{port}/postgres", isolation_level="AUTOCOMMIT")
    names = iter(range(1000))

    def new_database() -> str:
        name = f"db{next(names)}"
        with server.connect() as connection:
            connection.execute(text(f"CREATE DATABASE {name}"))
        return f"postgresql://postgres@127.0.0.1:{port}/{name}"

    yield new_database
    server.dispose()
    subprocess.run([*as_owner, pg_ctl, "-D", f"{folder}/data", "-m", "fast", "-w", "stop"], check=False,
                   capture_output=True)
    shutil.rmtree(folder, ignore_errors=True)


def test_a_postgresql_database_round_trip_keeps_tables_keys_and_order(tmp_path, postgres):
    database = read_database(_bank(tmp_path / "bank"))
    url = postgres()
    write_sql_database(database, url)
    back = read_sql_database(url, order_by={"transactions": "booked_at"})
    assert {n: (t.parent, t.foreign_key, t.primary_key, t.order_by) for n, t in back.layout.tables.items()} == \
        {n: (t.parent, t.foreign_key, t.primary_key, t.order_by) for n, t in database.layout.tables.items()}
    for name, table in database.tables.items():
        pd.testing.assert_frame_equal(back.tables[name], table, check_dtype=False)
    with pytest.raises(DataError, match="exist already; write to a new database"):
        write_sql_database(database, url)
    with pytest.raises(DataError, match="no column 'when'"):
        read_sql_database(url, order_by={"transactions": "when"})


def test_a_failed_postgresql_write_leaves_the_database_empty(tmp_path, postgres):
    from sqlalchemy import create_engine, inspect

    database = read_database(_bank(tmp_path / "bank"))
    database.tables["cards"] = pd.concat([database.tables["cards"]] * 2)  # the last table's insert fails
    url = postgres()
    with pytest.raises(DataError, match="cannot write the database"):
        write_sql_database(database, url)
    engine = create_engine(url)
    assert inspect(engine).get_table_names() == []  # the tables made before the failure went with it
    engine.dispose()


def test_the_command_line_trains_from_postgresql_and_writes_into_postgresql(tmp_path, postgres, recipe_file):
    from click.testing import CliRunner

    from llmsynth.cli import main

    source, target, model = postgres(), postgres(), tmp_path / "model"
    write_sql_database(read_database(_bank(tmp_path / "bank")), source)
    runner = CliRunner()
    for wrong, message in ((["--order-by", "booked_at"], "expected TABLE.COLUMN"),
                           (["--order-by", "trades.booked_at"], "cannot order table 'trades'"),
                           (["--order-by", "transactions.booked_at", "--kind", "tabular"], "for related tables")):
        refused = runner.invoke(main, ["train", source, "--kind", "relational", "-o", str(model), *wrong])
        assert refused.exit_code == 2 and message in refused.output, refused.output
    trained = runner.invoke(main, ["train", source, "--kind", "relational", "-o", str(model), "--epochs", "1",
                                   "--recipe", str(recipe_file), "--order-by", "transactions.booked_at"])
    assert trained.exit_code == 0, trained.output
    assert "trained on 40 families (customers 40, accounts 80, transactions 240, cards 20" in trained.output
    written = runner.invoke(main, ["generate", str(model), "-n", "6", "-o", target])
    assert written.exit_code == 0, written.output
    synthetic = read_sql_database(target, order_by={"transactions": "booked_at"})  # checked: keys, no orphans, order
    assert len(synthetic.tables["customers"]) == 6
    times = pd.to_datetime(synthetic.tables["transactions"].booked_at)
    assert (times.groupby(synthetic.tables["transactions"].account_id).diff().dropna() >= pd.Timedelta(0)).all()


def test_the_relational_demo_trains_generates_and_writes_a_report(tmp_path):
    from click.testing import CliRunner

    from llmsynth.cli import main

    result = CliRunner().invoke(main, ["demo", "--kind", "relational", "-o", str(tmp_path), "--rows", "100",
                                       "--samples", "6", "--max-minutes", "0.05"])
    assert result.exit_code == 0, (result.output, result.exc_info)
    synthetic = read_database(tmp_path / "synthetic")
    assert len(synthetic.tables["customers"]) == 6
    assert not set(synthetic.tables["customers"].name) & set(read_database(tmp_path / "train").tables["customers"].name)
    demo = json.loads((tmp_path / "demo.json").read_text())
    assert 0 <= demo["fraud_pattern_synthetic"] <= 1 and demo["seconds"]["train"] > 0
    assert 0 < demo["fraud_pattern_training"] < 0.3  # the demo's own rows hold the pattern
    low, high = demo["fraud_pattern_synthetic_interval"] or (0, 1)  # none where no card account came out
    assert low <= demo["fraud_pattern_synthetic"] <= high
    figures = json.loads((tmp_path / "report" / "metrics.json").read_text())
    assert figures["synthetic"]["referential_integrity"] == 1.0
    assert "Privacy per root entity" in (tmp_path / "report" / "report.html").read_text()
    assert "fraud pattern" in result.output and "families equal to a training family" in result.output
