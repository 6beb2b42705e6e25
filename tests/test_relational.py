"""Relational layouts (relations.yaml + one file per table): reading, checking, splitting by root entity."""

import pandas as pd
import pytest
import yaml

from llmsynth.data.relational import (
    LAYOUT_FILE, read_database, read_sql_database, split_by_root, write_database, write_sql_database,
)
from llmsynth.errors import DataError

LAYOUT = {"tables": {
    "customers": {"file": "customers.csv", "primary_key": "customer_id"},
    "accounts": {"file": "accounts.csv", "primary_key": "account_id", "parent": "customers",
                 "foreign_key": "customer_id"},
    "transactions": {"file": "transactions.parquet", "parent": "accounts", "foreign_key": "account_id",
                     "order_by": "booked_at"},
    "cards": {"file": "cards.jsonl", "primary_key": "card_id", "parent": "customers", "foreign_key": "customer_id"},
}}


def _bank(folder, layout=LAYOUT, **changes):
    customers = pd.DataFrame({"customer_id": [f"C{i}" for i in range(40)], "segment": ["retail", "private"] * 20})
    accounts = pd.DataFrame({"account_id": [f"A{i}" for i in range(80)], "customer_id": [f"C{i // 2}" for i in range(80)],
                             "kind": ["checking", "savings"] * 40})
    transactions = pd.DataFrame({"account_id": [f"A{i // 3}" for i in range(240)],
                                 "booked_at": pd.date_range("2026-01-01", periods=240, freq="h").astype(str),
                                 "amount": [round(5 + i * 1.5, 2) for i in range(240)]})
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
