"""Related tables, synthetic against real (the holdout): keys, order, children per parent, parent-child trends and,
for sequences, gaps, lag-1 autocorrelation and category transitions. Every figure beside what it should be."""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy.stats import ks_2samp

from llmsynth.data.relational import Database, order_values
from llmsynth.data.schema import Schema, infer_column


def relational_metrics(real: Database, synthetic: Database, seed: int = 0) -> dict:
    """Per child table: referential integrity, ordered sequences, children per parent (KS complement), parent-child
    trends (each parent column against its children's count and numeric means: correlation real and synthetic),
    and for sequences the gap KS complement, lag-1 autocorrelations and category transitions (TV complement); the
    detection AUC of each table's rows beside their ancestors' and of whole families (`detection_aucs`)."""
    tables = {}
    for name, spec in real.layout.tables.items():
        if spec.parent is None:
            continue
        parent_key = real.layout.tables[spec.parent].primary_key
        child, parents = synthetic.tables[name], synthetic.tables[spec.parent]
        figures = {"referential_integrity": float(child[spec.foreign_key].astype(str).isin(
            set(parents[parent_key].astype(str))).mean()) if len(child) else 1.0,
            "children_per_parent": _ks_complement(real.children_per_parent(name), synthetic.children_per_parent(name)),
            "parent_child_trends": _trends(real, synthetic, name)}
        if spec.order_by is not None:
            figures.update(_sequence_figures(real, synthetic, name))
        tables[name] = figures
    trends = [abs(t["real"] - t["synthetic"]) for f in tables.values() for t in f["parent_child_trends"].values()]
    detection = detection_aucs(real, synthetic, seed)
    judged = [auc for auc in detection.values() if not np.isnan(auc)]  # a table of keys alone has nothing to judge
    return {"tables": tables, "detection_auc": detection, "detection_auc_max": max(judged, default=float("nan")),
            "referential_integrity": min((f["referential_integrity"] for f in tables.values()), default=1.0),
            "children_per_parent": min((f["children_per_parent"] for f in tables.values()), default=1.0),
            "parent_child_trend_gap_max": max(trends, default=0.0),
            "parent_child_trend_gap_mean": float(np.mean(trends)) if trends else 0.0}


def numeric_column(values: pd.Series) -> pd.Series | None:
    """A column as numbers, where nine in ten of its present values are (a mostly empty column of numbers is still
    one); else None (a categorical or free text)."""
    numbers = pd.to_numeric(values, errors="coerce")
    present = values.notna().sum()
    return numbers if present and numbers.notna().sum() > 0.9 * present else None


def is_category(values: pd.Series, category) -> pd.Series:
    """1 where a value is `category`, else 0: a missing value is not it, in a nullable column (Int64, as generated)
    as in a float one (as read from a file), where `==` would give NA and NaN apart."""
    return values.eq(category).fillna(False).astype(float)


def _ks_complement(real: pd.Series, synthetic: pd.Series) -> float:
    if len(real) == 0 or len(synthetic) == 0:
        return 0.0
    return float(1 - ks_2samp(real.astype(float), synthetic.astype(float)).statistic)


def _aggregates(database: Database, name: str) -> pd.DataFrame:
    """Per parent row: its columns (numbers as they are, each category of a categorical as a 0/1 column) and its
    children's count and numeric means."""
    spec = database.layout.tables[name]
    parent_spec = database.layout.tables[spec.parent]
    parents = database.tables[spec.parent].set_index(database.tables[spec.parent][parent_spec.primary_key].astype(str))
    columns = {}
    for column in parents.columns:
        if column in (parent_spec.primary_key, parent_spec.foreign_key):
            continue
        numbers = numeric_column(parents[column])
        if numbers is not None:
            columns[f"{spec.parent}.{column}"] = numbers
        elif parents[column].nunique() <= 10:
            for category in parents[column].dropna().unique():
                columns[f"{spec.parent}.{column}={category}"] = is_category(parents[column], category)
    children = database.tables[name]
    columns[f"{name} per parent"] = database.children_per_parent(name).set_axis(parents.index)
    columns.update(owner_aggregates(children, children[spec.foreign_key].astype(str), name, spec))
    return pd.DataFrame(columns)


def owner_aggregates(table: pd.DataFrame, owner: pd.Series, name: str, spec, reference: pd.DataFrame | None = None
                     ) -> dict[str, pd.Series]:
    """Per owner (a parent row, a root entity) of `table`'s rows: each numeric column's mean and each category's
    share (columns of 10 or fewer), keys and the order column left out; which columns are numbers and which
    categories there are as `reference` (the training data) has them, by default as `table` itself has."""
    reference = table if reference is None else reference
    columns = {}
    for column, real in reference.items():
        if column in (*spec.keys, spec.order_by):
            continue
        if numeric_column(real) is not None:
            columns[f"mean {name}.{column}"] = pd.to_numeric(table[column], errors="coerce").groupby(owner).mean()
        elif real.nunique() <= 10:
            for category in real.dropna().unique():
                share = is_category(table[column], category).groupby(owner).mean()
                columns[f"share {name}.{column}={category}"] = share
    return columns


def _trends(real: Database, synthetic: Database, name: str) -> dict[str, dict[str, float]]:
    found = {}
    real_frame, synthetic_frame = _aggregates(real, name), _aggregates(synthetic, name)
    parents = [c for c in real_frame.columns if c.startswith(f"{real.layout.tables[name].parent}.")]
    children = [c for c in real_frame.columns if c not in parents]
    for parent in parents:
        for child in children:
            pair = [real_frame[[parent, child]].dropna(), synthetic_frame.reindex(columns=[parent, child]).dropna()]
            if min(len(p) for p in pair) < 3 or any(p[parent].std() == 0 or p[child].std() == 0 for p in pair):
                continue
            real_value, synthetic_value = (float(np.corrcoef(p[parent], p[child])[0, 1]) for p in pair)
            found[f"{parent} ~ {child}"] = {"real": real_value, "synthetic": synthetic_value}
    return found


def _sequence_figures(real: Database, synthetic: Database, name: str) -> dict:
    spec = real.layout.tables[name]
    figures = {}
    for label, database in (("real", real), ("synthetic", synthetic)):
        table = database.tables[name]
        keys = table[spec.foreign_key].astype(str)
        gaps = sequence_gaps(database, name)
        figures[label] = {"ordered": float((gaps >= 0).mean()) if len(gaps) else 1.0, "gaps": gaps,
                          "lag1": _lag1(table, keys, spec), "transitions": _transitions(table, keys, spec)}
    real_figures, synthetic_figures = figures["real"], figures["synthetic"]
    transitions = {column: 1 - 0.5 * float((real_figures["transitions"][column]
                                            - synthetic_figures["transitions"].get(column, 0)).abs().sum())
                   for column in real_figures["transitions"]}
    return {"ordered": synthetic_figures["ordered"],
            "gaps": _ks_complement(real_figures["gaps"], synthetic_figures["gaps"]),
            "lag1_autocorrelation": {c: {"real": v, "synthetic": synthetic_figures["lag1"].get(c, float("nan"))}
                                     for c, v in real_figures["lag1"].items()},
            "transitions": transitions}


def sequence_gaps(database: Database, name: str) -> pd.Series:
    """The steps of a sequence table's order column from one child to the next of the same parent (times in
    nanoseconds)."""
    spec, table = database.layout.tables[name], database.tables[name]
    times = order_values(table[spec.order_by], f"table {name!r}")
    return times.groupby(table[spec.foreign_key].astype(str)).diff().dropna()


def _lag1(table: pd.DataFrame, keys: pd.Series, spec) -> dict[str, float]:
    """Each numeric column's correlation with its value one row before, within a sequence."""
    found = {}
    for column in table.columns:
        numbers = numeric_column(table[column])
        if column in (*spec.keys, spec.order_by) or numbers is None:  # keys are written fresh: nothing learned
            continue
        pairs = pd.DataFrame({"now": numbers, "before": numbers.groupby(keys).shift()}).dropna()
        if len(pairs) > 2 and pairs.std().min() > 0:
            found[column] = float(np.corrcoef(pairs.now, pairs.before)[0, 1])
    return found


def _transitions(table: pd.DataFrame, keys: pd.Series, spec) -> dict[str, pd.Series]:
    """Each categorical column's share of (before, now) pairs within sequences."""
    found = {}
    for column in table.columns:
        values = table[column].astype(str)
        if column in (*spec.keys, spec.order_by) or values.nunique() > 10 or numeric_column(table[column]) is not None:
            continue
        pairs = pd.DataFrame({"before": values.groupby(keys).shift(), "now": values}).dropna()
        found[column] = (pairs.before + " -> " + pairs.now).value_counts(normalize=True)
    return found


def family_frame(database: Database, reference: Database) -> pd.DataFrame:
    """One row per root entity of `database`, with the columns `reference` (the training data) gives: per table, the
    entity's row count, the mean of each numeric column and the share of each category (columns of 10 or fewer)."""
    entity = entities(database)
    keys = database.root_keys().astype(str)
    columns = {}
    for name in reference.parents_first():
        spec, table, owner = reference.layout.tables[name], database.tables[name], entity[name]
        columns[f"{name} rows"] = owner.value_counts().reindex(keys, fill_value=0)
        aggregates = owner_aggregates(table, owner, name, spec, reference.tables[name])
        columns.update({label: values.reindex(keys) for label, values in aggregates.items()})
    return pd.DataFrame(columns, index=keys)


def family_keys(database: Database, reference: Database) -> pd.Series:
    """One hash per root entity of `database` over every row of its family: each table's learned columns (as
    `reference`, the training data, has them: keys, names and other identifiers are written fresh, never copied),
    rows in a fixed order. Two families with the same key are the same family, row for row."""
    from llmsynth.evaluate.features import row_keys, typed

    entity = entities(database)
    parts = []
    for name in reference.parents_first():
        table = database.tables[name]
        schema = learned_schema(reference.tables[name].drop(columns=reference.layout.tables[name].keys))
        rows = pd.Series("", index=table.index)  # a table of keys alone: its rows count
        if schema.columns:
            texts = {c.name: table[c.name].astype(str) for c in schema.columns if c.kind == "text"}  # as written
            rows = row_keys(typed(table, schema).assign(**texts), schema).astype(str)
        parts.append(rows.groupby(entity[name].to_numpy()).agg(lambda keys: ",".join(sorted(keys))))
    keys = database.root_keys().astype(str)
    text = pd.concat([part.reindex(keys).fillna("") for part in parts], axis=1).agg("|".join, axis=1)
    return pd.util.hash_pandas_object(text, index=False).set_axis(keys)


def learned_schema(table: pd.DataFrame) -> Schema:
    """The columns a model learns of a table (keys dropped), as inferred from it: none for a table of keys alone."""
    return Schema(columns=[c for c in (infer_column(str(name), table[name]) for name in table.columns) if c.learned])


def entities(database: Database) -> dict[str, pd.Series]:
    """Per table, each row's root entity key (rows follow their parent's)."""
    root = database.layout.tables[database.root]
    entity = {database.root: database.tables[database.root][root.primary_key or root.group_by].astype(str)}
    for name in database.parents_first():
        spec = database.layout.tables[name]
        if spec.parent is None:
            continue
        parent_key = database.tables[spec.parent][database.layout.tables[spec.parent].primary_key].astype(str)
        of_parent = pd.Series(entity[spec.parent].to_numpy(), index=parent_key.to_numpy())
        entity[name] = database.tables[name][spec.foreign_key].astype(str).map(of_parent)
    return entity


def detection_aucs(real: Database, synthetic: Database, seed: int = 0) -> dict[str, float]:
    """C2ST (as for one table) per table, each row with its ancestors' columns beside it, so that a child is judged
    with the parent it hangs off (a plausible flight on an implausible plane is caught); and per root entity over its
    family's summary (`family_frame`: counts, means, category shares), which catches families wrong as a whole."""
    found = {}
    owners = [entities(database) for database in (real, synthetic)]
    for name in real.parents_first():
        frames = [with_ancestors(database, name) for database in (real, synthetic)]
        found[name] = _detection(*frames, seed, [owner[name].reset_index(drop=True) for owner in owners])
    found["families"] = _detection(family_frame(real, real), family_frame(synthetic, real), seed)
    return found


def with_ancestors(database: Database, name: str) -> pd.DataFrame:
    """Table `name`'s rows without keys, each beside its parent's columns ("planes.seats"), and theirs, up to the root."""
    spec = database.layout.tables[name]
    rows = database.tables[name].drop(columns=spec.keys).add_prefix(f"{name}.")
    if spec.parent is None:
        return rows.reset_index(drop=True)
    parent_key = database.tables[spec.parent][database.layout.tables[spec.parent].primary_key].astype(str)
    above = with_ancestors(database, spec.parent).set_axis(parent_key.to_numpy())
    parents = above.reindex(database.tables[name][spec.foreign_key].astype(str).to_numpy())
    return pd.concat([rows.reset_index(drop=True), parents.reset_index(drop=True)], axis=1)


def _detection(real: pd.DataFrame, synthetic: pd.DataFrame, seed: int, families: list | None = None) -> float:
    """Folds by root entity where `families` gives each row's: a family's rows share their ancestors' columns."""
    from llmsynth.evaluate.fidelity import detection_auc

    if len(real) < 2 or len(synthetic) < 2:
        return float("nan")
    schema = Schema(columns=[c for c in learned_schema(real.reset_index(drop=True)).columns
                             if c.kind != "text"])  # free text out
    judged = [c.name for c in schema.columns]
    if not judged:
        return float("nan")
    return detection_auc(real[judged].reset_index(drop=True), synthetic.reset_index(drop=True)[judged], schema,
                         seed, groups=tuple(families) if families else None)
