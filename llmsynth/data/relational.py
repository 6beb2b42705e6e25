"""Relational data: tables that hang off one another by keys (customers -> accounts -> transactions), read from a
folder with a `relations.yaml` or from a database (SQLAlchemy: its catalog gives the keys), checked, and split into
training and holdout parts by root entity.

    tables:
      customers:    {file: customers.csv, primary_key: customer_id}
      accounts:     {file: accounts.csv, primary_key: account_id, parent: customers, foreign_key: customer_id}
      transactions: {file: transactions.csv, parent: accounts, foreign_key: account_id, order_by: booked_at}

A tree of any depth and width: one root table, each other table with one parent. `order_by` makes a parent's
children a sequence. A single table of events with an entity key and no parent table is the same case
(`group_by: customer_id` with `order_by`): the entity is the root.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import yaml
from pydantic import BaseModel, ConfigDict, Field

from llmsynth.data.io import read_config, read_table, write_table, write_text
from llmsynth.errors import DataError

LAYOUT_FILE = "relations.yaml"
HOLDOUT_STREAM = 0x401D  # salts the holdout's random stream (see split_by_root)


class TableLayout(BaseModel):
    model_config = ConfigDict(extra="forbid")

    file: str = Field(description="The table's file in the folder: CSV, Parquet or JSONL.")
    primary_key: str | None = Field(None, description="The column that names each row (needed to be a parent).")
    parent: str | None = Field(None, description="The table each row belongs to; none for the root table.")
    foreign_key: str | None = Field(None, description="The column holding the parent row's primary key.")
    order_by: str | None = Field(None, description="A column (time or number) that orders a parent's children.")
    group_by: str | None = Field(None, description="A root table of events: the column naming the entity.")

    @property
    def keys(self) -> list[str]:
        """The columns that link rows (never learned: written fresh and consistent)."""
        return [c for c in (self.primary_key, self.foreign_key, self.group_by) if c]


class Layout(BaseModel):
    model_config = ConfigDict(extra="forbid")

    tables: dict[str, TableLayout] = Field(min_length=1)


@dataclass
class Database:
    """The tables of a layout, checked: keys unique and present, every foreign key found in its parent."""

    layout: Layout
    tables: dict[str, pd.DataFrame]

    @property
    def root(self) -> str:
        return next(name for name, table in self.layout.tables.items() if table.parent is None)

    def children(self, name: str) -> list[str]:
        return [child for child, table in self.layout.tables.items() if table.parent == name]

    def parents_first(self) -> Iterator[str]:
        """Every table, each after its parent (depth first from the root)."""
        pending = [self.root]
        while pending:
            name = pending.pop(0)
            yield name
            pending[:0] = self.children(name)

    def children_per_parent(self, name: str) -> pd.Series:
        """For each row of table `name`'s parent, in its order: how many rows of `name` hang off it (0 included)."""
        spec = self.layout.tables[name]
        keys = self.tables[spec.parent][self.layout.tables[spec.parent].primary_key].astype(str)
        return keys.map(self.tables[name][spec.foreign_key].astype(str).value_counts()).fillna(0).astype(int)

    def root_keys(self) -> pd.Series:
        """Each root entity's key, one per entity: the root's primary key, or its group_by values."""
        spec = self.layout.tables[self.root]
        return self.tables[self.root][spec.primary_key or spec.group_by].drop_duplicates()


def with_entity_table(database: Database) -> Database:
    """A root table of events (`group_by`) as the same events under a table of their entities, one row per group_by
    value and nothing but that key, so that it is learned and written as any parent and its sequence: how many events
    an entity has, the first one's time, the gaps. Any other database as it is."""
    root = database.layout.tables[database.root]
    if root.group_by is None:
        return database
    key = root.group_by
    name = key if key not in database.layout.tables else f"{key} entities"
    events = root.model_copy(update={"parent": name, "foreign_key": key, "group_by": None})
    entities = database.tables[database.root][[key]].drop_duplicates().reset_index(drop=True)
    layout = Layout(tables={name: TableLayout(file=f"{name}.csv", primary_key=key), database.root: events})
    return Database(layout, {name: entities, **database.tables})


def read_layout(path: str | os.PathLike) -> Layout:
    """A `relations.yaml`, validated; mistakes name the file and the field."""
    layout = read_config(path, Layout, "layout")
    check_layout(layout, str(path))
    return layout


def check_layout(layout: Layout, source: str) -> None:
    """One root; every parent known, keyed and reached without a cycle; a child's foreign key named."""
    tables = layout.tables
    roots = [name for name, table in tables.items() if table.parent is None]
    if len(roots) != 1:
        raise DataError(f"{source}: expected one root table (a table without a parent), found {len(roots)}: "
                        f"{', '.join(roots) or 'none (every table has a parent: a cycle)'}")
    for name, table in tables.items():
        if table.parent is None:
            if table.foreign_key:
                raise DataError(f"{source}: table {name!r} has a foreign_key but no parent")
            continue
        if table.parent not in tables:
            raise DataError(f"{source}: table {name!r} has parent {table.parent!r}, which is not a table of the "
                            f"layout ({', '.join(tables)})")
        if not table.foreign_key:
            raise DataError(f"{source}: table {name!r} has parent {table.parent!r} but no foreign_key column")
        if not tables[table.parent].primary_key:
            raise DataError(f"{source}: table {table.parent!r} is the parent of {name!r} but has no primary_key")
        if table.group_by:
            raise DataError(f"{source}: table {name!r}: group_by is for a root table of events; a child table is "
                            "grouped by its foreign_key")
        seen, current = {name}, table.parent
        while current is not None:
            if current in seen:
                raise DataError(f"{source}: the parents of {name!r} go round in a cycle through {current!r}")
            seen.add(current)
            current = tables[current].parent
    root = tables[roots[0]]
    if root.primary_key and root.group_by:
        raise DataError(f"{source}: the root table {roots[0]!r} has both a primary_key and a group_by; a table of "
                        "entities has a primary_key, a table of events a group_by")


def read_database(folder: str | os.PathLike) -> Database:
    """The tables of `folder/relations.yaml`, each read from its file and checked with the others."""
    folder = Path(folder)
    layout = read_layout(folder / LAYOUT_FILE)
    tables = {name: read_table(folder / table.file) for name, table in layout.tables.items()}
    database = Database(layout, tables)
    check_database(database)
    return database


def check_database(database: Database) -> None:
    """Key columns present; primary keys unique and not empty; every foreign key found in its parent; order
    columns readable as times or numbers. Errors name the table, the row (1 = the first data row) and the key."""
    layout = database.layout
    for name, spec in layout.tables.items():
        table = database.tables[name]
        for role in ("primary_key", "foreign_key", "order_by", "group_by"):
            column = getattr(spec, role)
            if column is not None and column not in table.columns:
                raise DataError(f"table {name!r}: its {role} column {column!r} is not in {spec.file} (columns: "
                                f"{', '.join(map(str, table.columns))})")
        for role in ("primary_key", "foreign_key", "group_by"):
            column = getattr(spec, role)
            if column is not None and table[column].isna().any():
                row = int(np.flatnonzero(table[column].isna().to_numpy())[0]) + 1
                raise DataError(f"table {name!r}, row {row}: the {role} {column!r} is empty")
        if spec.primary_key is not None:
            repeated = table[spec.primary_key].duplicated(keep="first")
            if repeated.any():
                row = int(np.flatnonzero(repeated.to_numpy())[0]) + 1
                raise DataError(f"table {name!r}, row {row}: primary key {spec.primary_key}="
                                f"{table[spec.primary_key].iloc[row - 1]!r} is already used by an earlier row")
        if spec.parent is not None:
            parent = database.tables[spec.parent][layout.tables[spec.parent].primary_key]
            orphans = ~table[spec.foreign_key].astype(str).isin(set(parent.astype(str)))
            if orphans.any():
                row = int(np.flatnonzero(orphans.to_numpy())[0]) + 1
                raise DataError(f"table {name!r}, row {row}: foreign key {spec.foreign_key}="
                                f"{table[spec.foreign_key].iloc[row - 1]!r} is not a {spec.parent!r} row "
                                f"({int(orphans.sum())} such rows)")
        if spec.order_by is not None:
            order_values(table[spec.order_by], f"table {name!r}")


def is_time(column: pd.Series) -> bool:
    """Whether an order column holds times (a datetime column, or values not all numbers), not numbers."""
    return pd.api.types.is_datetime64_any_dtype(column) or not pd.to_numeric(column, errors="coerce").notna().all()


def order_values(column: pd.Series, source: str) -> pd.Series:
    """An order column as numbers (times as nanoseconds): numbers where all are, else times; else an error
    naming the first value that is neither."""
    numbers = pd.to_numeric(column, errors="coerce")
    if not is_time(column):
        return numbers
    times = pd.to_datetime(column, errors="coerce", format="mixed")
    if times.notna().all():
        return times.astype("int64")
    bad = numbers.isna() & times.isna()
    row = int(np.flatnonzero(bad.to_numpy())[0]) + 1 if bad.any() else 1
    raise DataError(f"{source}, row {row}: order column {column.name!r} holds {column.iloc[row - 1]!r}, neither a "
                    "number nor a time")


def split_by_root(database: Database, holdout_fraction: float, seed: int = 0) -> tuple[Database, Database, list]:
    """Training and holdout databases with whole families on one side: a root entity goes to the holdout with
    probability `holdout_fraction` (seeded), and every row below it goes with it. Also the holdout's root keys."""
    keys = database.root_keys()
    # A stream of its own: data made with the same seed (the demo bank draws its segments with default_rng(seed)
    # too) must not decide the split; with the plain seed every holdout customer of the demo was 'retail'.
    chosen = np.random.default_rng([seed, HOLDOUT_STREAM]).random(len(keys)) < holdout_fraction
    if chosen.all() or not chosen.any():
        raise DataError(f"{len(keys)} root entities are too few to split a holdout of {holdout_fraction:.0%} off")
    holdout_keys = set(keys[chosen].astype(str))
    parts = ({}, {})
    for name in database.parents_first():
        spec, table = database.layout.tables[name], database.tables[name]
        if spec.parent is None:
            inside = table[spec.primary_key or spec.group_by].astype(str).isin(holdout_keys)
        else:
            parent_spec = database.layout.tables[spec.parent]
            parent_keys = set(parts[1][spec.parent][parent_spec.primary_key].astype(str))
            inside = table[spec.foreign_key].astype(str).isin(parent_keys)
        parts[0][name] = table[~inside].reset_index(drop=True)
        parts[1][name] = table[inside].reset_index(drop=True)
    return Database(database.layout, parts[0]), Database(database.layout, parts[1]), sorted(holdout_keys)


def write_database(database: Database, folder: str | os.PathLike) -> Path:
    """Every table to its file and the layout beside them, in a temporary folder renamed into place when all is
    written; an existing folder of the same name is replaced only then."""
    folder = Path(folder)
    folder.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{folder.name}.", dir=folder.parent))
    try:
        for name, spec in database.layout.tables.items():
            write_table(database.tables[name], staging / spec.file)
        write_text(staging / LAYOUT_FILE, yaml.safe_dump(database.layout.model_dump(exclude_none=True),
                                                         sort_keys=False))
        if folder.exists():
            shutil.rmtree(folder)
        staging.rename(folder)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return folder


def is_database_url(location: str | os.PathLike) -> bool:
    return "://" in str(location)


def read_related(location: str | os.PathLike, order_by: Mapping[str, str] | None = None) -> Database:
    """Related tables from a folder with relations.yaml or from a database URL; `order_by` (table: column) makes
    those tables' rows sequences (a database's catalog has no such thing; in a folder it overrides the layout)."""
    if is_database_url(location):
        return read_sql_database(str(location), order_by)
    database = read_database(location)
    if order_by:
        database = with_order(database, order_by, str(location))
        check_database(database)
    return database


def with_order(database: Database, order_by: Mapping[str, str], source: str) -> Database:
    """The database with `order_by` (table: column) set in its layout; unknown tables and columns are errors."""
    tables = dict(database.layout.tables)
    for name, column in order_by.items():
        if name not in tables:
            raise DataError(f"{source}: cannot order table {name!r}: there is no such table ({', '.join(tables)})")
        if column not in database.tables[name].columns:
            raise DataError(f"{source}: table {name!r} has no column {column!r} to order by (columns: "
                            f"{', '.join(map(str, database.tables[name].columns))})")
        tables[name] = tables[name].model_copy(update={"order_by": column})
    return Database(Layout(tables=tables), database.tables)


def write_related(database: Database, location: str | os.PathLike) -> str | Path:
    """Related tables into a new folder or a new database (URL), whole or not at all."""
    return write_sql_database(database, str(location)) if is_database_url(location) else write_database(database,
                                                                                                        location)


def read_sql_database(url: str, order_by: Mapping[str, str] | None = None) -> Database:
    """Every table of a database (`sqlite:///bank.db`, `postgresql://user@host/bank`) with its primary key and its
    foreign key (one per table: each child has one parent) from the catalog, and the order columns `order_by` names
    (table: column), checked like a folder's."""
    from sqlalchemy import create_engine, inspect
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import SQLAlchemyError

    target = make_url(url)
    if target.get_backend_name() == "sqlite" and target.database and not Path(target.database).is_file():
        raise DataError(f"{url}: no such database file")  # connecting would create an empty one
    try:
        engine = create_engine(url)
        catalog = inspect(engine)
        layout, tables = {}, {}
        with engine.connect() as connection:
            for name in catalog.get_table_names():
                keys = catalog.get_pk_constraint(name)["constrained_columns"]
                parents = catalog.get_foreign_keys(name)
                if len(keys) > 1 or len(parents) > 1 or any(len(p["constrained_columns"]) > 1 for p in parents):
                    raise DataError(f"{url}: table {name!r} has a key of several columns or several foreign keys; "
                                    "each table needs a one-column key and at most one parent")
                layout[name] = TableLayout(file=f"{name}.parquet", primary_key=keys[0] if keys else None,
                                           parent=parents[0]["referred_table"] if parents else None,
                                           foreign_key=parents[0]["constrained_columns"][0] if parents else None)
                tables[name] = pd.read_sql_table(name, connection)
    except SQLAlchemyError as error:
        raise DataError(f"{url}: cannot read the database ({error.__class__.__name__}: {error})") from None
    if not layout:
        raise DataError(f"{url}: the database has no tables")
    database = with_order(Database(Layout(tables=layout), tables), order_by or {}, url)
    check_layout(database.layout, url)
    check_database(database)
    return database


def write_sql_database(database: Database, url: str) -> str:
    """The tables into a new database, with their primary and foreign keys, in one transaction; a SQLite file is
    written under a temporary name and renamed when complete. Tables already there are an error, not replaced."""
    from sqlalchemy import create_engine, inspect
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import SQLAlchemyError

    target = make_url(url)
    sqlite_file = new_sqlite_file(url)
    if sqlite_file is not None:
        staging = sqlite_file.parent / f".{sqlite_file.name}.partial"
        staging.unlink(missing_ok=True)
        engine = create_engine(target.set(database=str(staging)))
    else:
        engine = create_engine(target)
    try:
        with engine.begin() as connection:
            metadata = _sql_tables(database)
            existing = set(inspect(connection).get_table_names()) & set(metadata.tables)
            if existing:
                raise DataError(f"{url}: tables {sorted(existing)} exist already; write to a new database")
            metadata.create_all(connection)
            for name in database.parents_first():
                rows = database.tables[name].astype(object).where(database.tables[name].notna(), None)
                if len(rows):
                    connection.execute(metadata.tables[name].insert(), rows.to_dict("records"))
        engine.dispose()  # the file is closed before it is renamed
        if sqlite_file is not None:
            staging.rename(sqlite_file)
    except SQLAlchemyError as error:
        raise DataError(f"{url}: cannot write the database ({error.__class__.__name__}: {error})") from None
    finally:
        engine.dispose()
        if sqlite_file is not None:
            staging.unlink(missing_ok=True)
    return url


def new_sqlite_file(url: str) -> Path | None:
    """The SQLite file a database URL names, checked not to exist yet; None for a server's database."""
    from sqlalchemy.engine import make_url

    target = make_url(url)
    if target.get_backend_name() != "sqlite" or not target.database:
        return None
    if Path(target.database).exists():
        raise DataError(f"{url}: the file exists already; write to a new database file")
    return Path(target.database)


def _sql_tables(database: Database):
    """SQLAlchemy tables for the database's tables: column types from the frames, keys from the layout."""
    from sqlalchemy import BigInteger, Boolean, Column, DateTime, Float, ForeignKey, MetaData, Table, Text

    metadata = MetaData()
    for name in database.parents_first():
        spec, frame = database.layout.tables[name], database.tables[name]
        columns = []
        for column in frame.columns:
            kind = frame[column].dtype.kind
            sql_type = {"i": BigInteger, "u": BigInteger, "f": Float, "b": Boolean, "M": DateTime}.get(kind, Text)
            parent = database.layout.tables[spec.parent] if spec.parent and column == spec.foreign_key else None
            keys = [ForeignKey(f"{spec.parent}.{parent.primary_key}")] if parent else []
            columns.append(Column(str(column), sql_type(), *keys, primary_key=column == spec.primary_key))
        Table(name, metadata, *columns)
    return metadata
