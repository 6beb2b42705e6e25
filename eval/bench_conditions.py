"""Conditioned rows against the real rows that meet the condition, on the peer benchmark's split.

`sample(conditions=...)` writes the conditioned columns first and the model the rest, which it learned from the
examples that move a random subset of columns to the front or repeat it as a prompt ahead of the whole row
(`schema_order_share` of them keep the table's order; `prompt_share` of the others take a prompt).
For each condition (a value of one column) the figure is one minus the mean distance, over every other column,
between the conditioned rows and the training rows with that value: total variation for categories and small
counts, the KS statistic for numbers. The holdout's rows with that value, measured the same way, are the floor set by
their number. Beside it, the share of conditioned rows that break a rule between two columns which the training rows
keep (value a of one column with value b of another in at least 99.5% of 50 or more rows: Adult's Husband is Male and
married, Bachelors is educational-num 13), on these conditions and on a few more on later columns, whose conditioned
rows ask the model for an earlier column after them. Each recipe trains once per seed, in a fresh process. Writes
docs/benchmarks.md and eval/results/bench_conditions.json.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
from scipy.stats import ks_2samp

from llmsynth.data.schema import infer_schema

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_peers import TABLES, split  # noqa: E402
from report import machine, run_isolated, versions, write_section  # noqa: E402

CONDITIONS = {
    "adult": [("income", ">50K"), ("education", "Masters"), ("relationship", "Wife"), ("native-country", "Mexico"),
              ("occupation", "Exec-managerial"), ("workclass", "Self-emp-inc")],
    "german": [("creditability", "bad"), ("housing", "for free"), ("purpose", "education"),
               ("status_of_existing_checking_account", "no checking account")],
}
# Judged on rules only: conditions on a column that comes after its rule's partner in the table's order
RULE_CONDITIONS = {"adult": [("gender", "Female"), ("educational-num", "13")], "german": []}
RULE_ROWS, RULE_SHARE = 50, 0.995


def rules(train: pd.DataFrame) -> list[tuple[str, str, str, str]]:
    """(x, a, y, b): at least RULE_ROWS training rows have x = a, and RULE_SHARE of them y = b (columns of at most 50
    values, read as text)."""
    few = [column for column in train.columns if train[column].nunique() <= 50]
    text = train[few].astype(str)
    found = []
    for x in few:
        for a, group in text.groupby(x):
            if len(group) < RULE_ROWS:
                continue
            for y in few:
                shares = group[y].value_counts(normalize=True)
                if y != x and shares.iloc[0] >= RULE_SHARE:
                    found.append((x, a, y, shares.index[0]))
    return found


def broken_share(rows: pd.DataFrame, found: list[tuple[str, str, str, str]]) -> float:
    """The share of `rows` that break at least one of the rules `found`."""
    text = rows.astype(str)
    broken = np.zeros(len(rows), dtype=bool)
    for x, a, y, b in found:
        broken |= ((text[x] == a) & (text[y] != b)).to_numpy()
    return float(broken.mean())


def closeness(rows: pd.DataFrame, real: pd.DataFrame, skip: str) -> float:
    """One minus the mean, over the columns but `skip`, of the distance between `rows` and `real`."""
    distances = []
    for column in real.columns.drop(skip):
        if pd.api.types.is_numeric_dtype(real[column]) and real[column].nunique() > 20:
            distances.append(ks_2samp(pd.to_numeric(rows[column]), real[column]).statistic)
        else:
            ours, theirs = (frame[column].astype(str).value_counts(normalize=True) for frame in (rows, real))
            distances.append(0.5 * ours.subtract(theirs, fill_value=0).abs().sum())
    return 1 - float(np.mean(distances))


def _conditioned(table: str, recipe: str, seed: int, rows: int, found: list[tuple[str, str, str, str]]) -> dict:
    """Train `recipe` on the table's training split and judge its conditioned rows, on closeness and on the rules
    `found` in the training rows (run in a fresh process)."""
    from llmsynth import TabularSynthesizer
    from llmsynth.train.config import load_recipe

    train, _ = _split(table)
    loaded = load_recipe(recipe)
    loaded.train = loaded.train.model_copy(update={"seed": seed})
    started = time.perf_counter()
    model = TabularSynthesizer(loaded).fit(train, scrub=False, progress=False)
    fitted = time.perf_counter() - started
    figures, broken = {}, {}
    for column, value in CONDITIONS[table] + RULE_CONDITIONS[table]:
        real = train[train[column].astype(str) == value]
        sampled = model.sample(min(rows, 2 * len(real)), conditions={column: value}, seed=seed)
        broken[f"{column} = {value}"] = broken_share(sampled, found)
        if (column, value) in CONDITIONS[table]:
            figures[f"{column} = {value}"] = closeness(sampled, real, column)
    return {"fit_seconds": fitted, "conditions": figures, "mean": float(np.mean(list(figures.values()))),
            "broken_rules": broken}


def _split(table: str) -> tuple[pd.DataFrame, pd.DataFrame]:
    source = TABLES[table].load()
    source = source[[c.name for c in infer_schema(source).learned]]
    return split(source, 5000, 2000, 0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tables", nargs="+", default=["adult"], choices=sorted(CONDITIONS))
    parser.add_argument("--recipes", nargs="+", default=["tiny-cpu"], help="Recipe names or YAML files.")
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1], help="Training (and sampling) seeds.")
    parser.add_argument("--rows", type=int, default=1000, help="Conditioned rows per condition (at most twice the "
                        "real rows that meet it).")
    args = parser.parse_args()
    started, tables = time.perf_counter(), {}
    for table in args.tables:
        train, holdout = _split(table)
        floor = {f"{column} = {value}": closeness(holdout[holdout[column].astype(str) == value],
                                                  train[train[column].astype(str) == value], column)
                 for column, value in CONDITIONS[table]}
        found, judged = rules(train), CONDITIONS[table] + RULE_CONDITIONS[table]
        real_rows = {f"{column} = {value}": int((train[column].astype(str) == value).sum())
                     for column, value in judged}
        holdout_broken = {f"{column} = {value}": broken_share(holdout[holdout[column].astype(str) == value], found)
                          for column, value in judged}
        runs = {}
        for recipe in args.recipes:
            runs[recipe] = [run_isolated(_conditioned, table, recipe, seed, args.rows, found) for seed in args.seeds]
            print(table, recipe, [f"{run['mean']:.3f}" for run in runs[recipe]], flush=True)
        tables[table] = {"holdout": floor, "holdout_mean": float(np.mean(list(floor.values()))), "runs": runs,
                         "real_rows": real_rows, "rules": len(found), "holdout_broken_rules": holdout_broken}
    figures = {"machine": machine(), "versions": versions("llmsynth", "torch", "transformers"),
               "setting": vars(args), "tables": tables, "minutes": (time.perf_counter() - started) / 60}
    write_section("Conditioned rows (`eval/bench_conditions.py`)", markdown(figures), figures, "bench_conditions")


def markdown(figures: dict) -> str:
    setting = figures["setting"]
    seeds = " / ".join(str(seed) for seed in setting["seeds"])
    default = setting["recipes"] == ["tiny-cpu"]
    named = " ".join(Path(recipe).name for recipe in setting["recipes"])
    command = "python eval/bench_conditions.py" + ("" if default else f" --recipes {named}")
    lines = [f"Machine: {figures['machine']}. Versions: "
             f"{', '.join(f'{k} {v}' for k, v in figures['versions'].items())}.",
             f"Command: `{command}` ({'in `make bench`; ' if default else ''}{figures['minutes']:.0f} minutes). "
             f"{__doc__.split(chr(10), 1)[1].split('Writes')[0].strip()} Closeness (1 is best) at training seeds "
             f"{seeds}, up to {setting['rows']:,} conditioned rows per condition."]
    for table, result in figures["tables"].items():
        recipes = list(result["runs"])
        lines += ["", f"**{TABLES[table].title}**:", "",
                  "| condition | real rows | holdout's own | " + " | ".join(Path(r).stem for r in recipes) + " |",
                  "|---|---:|---:|" + "---:|" * len(recipes)]
        for condition, floor in result["holdout"].items():
            cells = [" / ".join(f"{run['conditions'][condition]:.3f}" for run in result["runs"][r]) for r in recipes]
            lines.append(f"| {condition} | {result['real_rows'][condition]:,} | {floor:.3f} | "
                         + " | ".join(cells) + " |")
        means = [" / ".join(f"{run['mean']:.3f}" for run in result["runs"][r]) for r in recipes]
        fits = [" / ".join(f"{run['fit_seconds']:.0f} s" for run in result["runs"][r]) for r in recipes]
        lines.append(f"| **mean** | | {result['holdout_mean']:.3f} | " + " | ".join(means) + " |")
        lines.append("| fit | | | " + " | ".join(fits) + " |")
        lines += ["", f"Rows that break one of the {result['rules']} rules the training rows keep:", "",
                  "| condition | real rows | holdout's own | " + " | ".join(Path(r).stem for r in recipes) + " |",
                  "|---|---:|---:|" + "---:|" * len(recipes)]
        for condition, floor in result["holdout_broken_rules"].items():
            cells = [" / ".join(f"{run['broken_rules'][condition]:.1%}" for run in result["runs"][r])
                     for r in recipes]
            lines.append(f"| {condition} | {result['real_rows'][condition]:,} | {floor:.1%} | "
                         + " | ".join(cells) + " |")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
