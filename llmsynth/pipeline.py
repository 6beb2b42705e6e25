"""`llmsynth run PIPELINE.yaml`: split -> scrub -> train -> generate -> evaluate from one validated config.

    kind: tabular                  # or chat
    input: customers.csv           # paths are relative to the YAML file
    output: run/                   # everything lands here (see `run_pipeline`)
    split: {holdout_fraction: 0.2, seed: 0}
    scrub: {score_threshold: 0.4}  # a scrub config (see `llmsynth scrub --config`), true for the default, or false
    train: {recipe: tiny-cpu, max_minutes: 3, canaries: [1, 4, 16, 64]}   # canaries: optional memorization test
    generate: {n: 1000, temperature: 1.0}
    evaluate: {target: is_fraud, fail_on: fail, thresholds: {privacy.dcr_share: {pass: 0.52}}}

The holdout is split off from the raw source before anything is learned and recorded in `split.json`, so the
evaluation always has records the model never saw. The source is scrubbed once, holdout included (keyed
surrogates: the same value gets the same surrogate in both parts), and training takes its part as it is (the
manifest records the scrub); the evaluation looks for the source's raw PII, kept in `private/raw_pii.jsonl`.
"""

from __future__ import annotations

import json
import logging
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from llmsynth.data import read_records, read_table, write_table
from llmsynth.data.chats import read_chats, write_chats
from llmsynth.data.io import read_config, table_format, write_text
from llmsynth.data.relational import (
    Database, is_database_url, new_sqlite_file, read_related, with_entity_table, write_related,
)
from llmsynth.errors import DataError
from llmsynth.data.canaries import canary_path, read_canaries
from llmsynth.data.schema import Schema
from llmsynth.evaluate import Evaluation, evaluate_records, write_report
from llmsynth.evaluate.canary import CanaryTest
from llmsynth.evaluate.checks import CHAT_CHECKS, TABLE_CHECKS, apply_thresholds
from llmsynth.evaluate.coherence import REFERENCE_LM
from llmsynth.evaluate.suite import training_figures
from llmsynth.generate.parallel import write_batches
from llmsynth.processes import process_state
from llmsynth.scrub import ScrubConfig, Scrubbed, scrub_chats, scrub_config, scrub_table, write_raw_pii
from llmsynth.synthesizers import Synthesizer, copy_summary, load, new_synthesizer, read_manifest

log = logging.getLogger(__name__)


class _Stage(BaseModel):
    model_config = ConfigDict(extra="forbid")


class SplitStage(_Stage):
    holdout_fraction: float = Field(0.2, gt=0, lt=1, description="Share of the source held out of training.")
    seed: int = Field(0, description="Seed of the random split.")


class TrainStage(_Stage):
    recipe: str | None = Field(None, description="Recipe name in llmsynth/recipes or a YAML file (default by kind).")
    base_model: str | None = Field(None, description="Pretrained causal LM to fine-tune with LoRA: "
                                   "smollm2-135m-instruct, a local .gguf file or model folder (never downloaded).")
    epochs: int | None = Field(None, ge=1, description="Override the recipe's epoch limit.")
    max_minutes: float | None = Field(None, gt=0, description="Training time budget.")
    column_kinds: dict[str, str] = Field(default_factory=dict, description="Tables: column kind overrides.")
    loss_on: Literal["all", "assistant"] = Field("all", description="Chats: learn both sides or the agent only.")
    dp_epsilon: float | None = Field(None, gt=0, description="Differentially private training to this epsilon.")
    canaries: list[Annotated[int, Field(ge=1)]] = Field(
        default_factory=list, description="Memorization test: insert one canary this many times each, e.g. [1, 4, 16, 64].")
    audit_canaries: int = Field(0, ge=0, description="DP audit: this many canaries, each inserted once or not by a "
                                "coin flip; the evaluation turns them into a lower bound on epsilon.")


class GenerateStage(_Stage):
    n: int | None = Field(None, ge=1, description="Records to generate (default: as many as the training part).")
    seed: int = 0
    temperature: float = Field(1.0, ge=0)
    top_p: float = Field(1.0, gt=0, le=1)
    conditions: dict[str, Any] = Field(default_factory=dict, description="Fixed columns / metadata fields.")
    mix: dict[str, dict[str, float]] = Field(default_factory=dict, description="Chats: shares of metadata values.")
    allow_copies: bool = Field(False, description="Chats: let a turn over 40 characters repeat a training turn word "
                               "for word (by default such a turn is sampled again).")
    guidance: float | None = Field(None, ge=1, description="Chats: classifier-free guidance towards the metadata "
                                   "(default 2; 1 is off).")


class EvaluateStage(_Stage):
    target: str | None = Field(None, description="Tables: the column for the utility (TSTR) figures.")
    label: str = Field("intent", description="Chats: the metadata field for label figures.")
    sensitive: list[str] = Field(default_factory=list, description="Columns (chats: metadata fields) for the bias "
                                 "audit of the target's (chats: the label's) rate per group.")
    reference_model: str | None = Field(REFERENCE_LM, description="Chats: the untuned LM of the coherence "
                                        "perplexity figure (a named base, .gguf file or model folder); null: none.")
    thresholds: dict[str, dict[str, float]] = Field(default_factory=dict, description="Check threshold overrides.")
    fail_on: Literal["fail", "warn", "never"] = Field("never", description="Verdict that makes the run fail.")
    seed: int = 0


class PipelineConfig(_Stage):
    kind: Literal["tabular", "chat"] = "tabular"
    input: Path = Field(description="The source: a table (CSV, Parquet, JSONL) or conversations (JSONL).")
    output: Path = Field(description="Folder for the split, model, synthetic output and report.")
    split: SplitStage = Field(default_factory=SplitStage)
    scrub: ScrubConfig | bool = Field(True, description="A scrub config, true for the default one, false to skip.")
    train: TrainStage = Field(default_factory=TrainStage)
    generate: GenerateStage = Field(default_factory=GenerateStage)
    evaluate: EvaluateStage = Field(default_factory=EvaluateStage)


def load_pipeline(path: str | Path) -> PipelineConfig:
    """Read and validate a pipeline YAML; paths in it are relative to its folder; mistakes name the field."""
    path = Path(path)
    config = read_config(path, PipelineConfig, "pipeline config")
    base = path.parent
    return config.model_copy(update={"input": base / config.input, "output": base / config.output})


@dataclass
class PipelineRun:
    evaluation: Evaluation
    synthesizer: Synthesizer  # fitted, as saved to output/model
    seconds: dict[str, float]  # per stage, as in pipeline.json


def _take(records, mask: np.ndarray):
    return records[mask].reset_index(drop=True) if hasattr(records, "iloc") else [r for r, m in zip(records, mask) if m]


def run_pipeline(config: PipelineConfig, echo: Callable[[str], None] = print) -> PipelineRun:
    """Run every stage; returns the evaluation, the synthesizer and the seconds per stage. Writes to `config.output`:

    split.json (the holdout's record numbers), train.* and holdout.* (scrubbed), private/raw_pii.jsonl (raw PII
    found in the source: keep it private), model/ (the synthesizer), synthetic.*, report/ (metrics.json,
    report.html) and pipeline.json (the resolved config and the seconds per stage)."""
    started = time.perf_counter()
    train, holdout, scrubbed = split_and_scrub(config, echo)
    return run_stages(config, train, holdout, scrubbed, echo, {"split_and_scrub": time.perf_counter() - started})


def run_stages(config: PipelineConfig, train: Any, holdout: Any, scrubbed: Scrubbed | None,
               echo: Callable[[str], None] = print, seconds: dict[str, float] | None = None) -> PipelineRun:
    """Train, generate and evaluate on a source already split (and scrubbed): model/, synthetic.*, report/ and
    pipeline.json in `config.output`. `seconds`: of the stages before, for pipeline.json."""
    out = config.output
    seconds = dict(seconds or {})
    started = time.perf_counter()
    synth = _train(config, train, scrubbed)
    seconds["train"] = time.perf_counter() - started
    private = synth.summary.privacy
    echo(f"trained in {seconds['train']:.0f}s ({synth.summary.epochs:g} epochs, stopped by "
         f"{synth.summary.stopped_because}"
         + (f"; differentially private, epsilon {private['epsilon']:.2f} spent" if private else "")
         + f") -> {out / 'model'}")

    started = time.perf_counter()
    synthetic_path, n = _generate(config, synth, len(train))
    seconds["generate"] = time.perf_counter() - started
    echo(f"generated {n} records in {seconds['generate']:.1f}s -> {synthetic_path}")
    if config.kind == "chat" and synth.copy_counts:
        echo("  " + copy_summary(synth.copy_counts))

    started = time.perf_counter()
    stage = config.evaluate
    checks = apply_thresholds(stage.thresholds, CHAT_CHECKS if config.kind == "chat" else TABLE_CHECKS,
                              "evaluate.thresholds")
    canaries = CanaryTest(synth, synth.canaries, config.generate.temperature) if synth.canaries is not None else None
    evaluation = evaluate_records(config.kind, train, holdout, read_records(config.kind, synthetic_path),
                                  schema=getattr(synth, "schema", None), target=stage.target, label=stage.label,
                                  reference_model=stage.reference_model, canaries=canaries, checks=checks,
                                  raw_pii=sorted(scrubbed.raw) if scrubbed else None, seed=stage.seed,
                                  sensitive=stage.sensitive, training=training_figures(read_manifest(out / "model")))
    write_report(evaluation, out / "report")
    seconds["evaluate"] = time.perf_counter() - started
    write_text(out / "pipeline.json", json.dumps({"config": config.model_dump(mode="json"), "seconds": seconds},
                                                 indent=2))
    echo(f"evaluated in {seconds['evaluate']:.1f}s -> {out / 'report' / 'report.html'}")
    return PipelineRun(evaluation, synth, seconds)


def split_and_scrub(config: PipelineConfig, echo: Callable[[str], None]) -> tuple[Any, Any, Scrubbed | None]:
    """The training and holdout parts, scrubbed once together, written beside the split and the raw PII found."""
    out, chat = config.output, config.kind == "chat"
    source = read_records(config.kind, config.input)
    count = len(source)
    holdout_mask = np.random.default_rng(config.split.seed).random(count) < config.split.holdout_fraction
    if holdout_mask.all() or not holdout_mask.any():
        raise DataError(f"{config.input}: {count} records are too few to split a holdout of "
                        f"{config.split.holdout_fraction:.0%} off")
    write_text(out / "split.json", json.dumps({"source": str(config.input), **config.split.model_dump(),
                                               "records": count, "holdout": np.flatnonzero(holdout_mask).tolist()}))
    echo(f"split {count} records: {count - holdout_mask.sum()} train, {holdout_mask.sum()} holdout -> "
         f"{out / 'split.json'}")
    scrub, scrubbed = scrub_config(config.scrub), None
    if scrub is not None:
        if chat:
            source, summary, raw_pii = scrub_chats(source, scrub, progress=True)
        else:
            source, summary, raw_pii = scrub_table(source, scrub, config.train.column_kinds, progress=True)
        scrubbed = Scrubbed(scrub, {**summary, "scrubbed": "the whole source, holdout included"}, frozenset(raw_pii))
        write_raw_pii(out / "private" / "raw_pii.jsonl", raw_pii)
        echo(f"scrubbed the source: {len(raw_pii)} distinct PII values found "
             f"(raw values kept in {out / 'private' / 'raw_pii.jsonl'}: keep that file private)")
    train, holdout = _take(source, ~holdout_mask), _take(source, holdout_mask)
    suffix = _suffix(config)
    for name, part in (("train", train), ("holdout", holdout)):
        write_chats(out / f"{name}{suffix}", part) if chat else write_table(part, out / f"{name}{suffix}")
    return train, holdout, scrubbed


def _suffix(config: PipelineConfig) -> str:
    return ".jsonl" if config.kind == "chat" else "." + table_format(config.input)


def _train(config: PipelineConfig, train: Any, scrubbed: Scrubbed | None):
    stage = config.train
    options = {"loss_on": stage.loss_on} if config.kind == "chat" else {"column_kinds": stage.column_kinds}
    synth = new_synthesizer(config.kind, stage.recipe, stage.base_model, options, epochs=stage.epochs,
                            max_minutes=stage.max_minutes, dp_epsilon=stage.dp_epsilon)
    synth.fit(train, workdir=config.output / "model", scrub=scrubbed or False, canaries=stage.canaries,
              audit_canaries=stage.audit_canaries)
    synth.save(config.output / "model")
    return synth


def _generate(config: PipelineConfig, synth: Synthesizer, train_records: int) -> tuple[Path, int]:
    stage = config.generate
    if config.kind != "chat" and (stage.mix or stage.allow_copies or stage.guidance is not None):
        raise DataError("generate.mix, generate.allow_copies and generate.guidance are for conversations; tables "
                        "take generate.conditions")
    options = {} if config.kind != "chat" else {
        "mix": stage.mix, "allow_copies": stage.allow_copies,
        **({} if stage.guidance is None else {"guidance": stage.guidance})}
    path = config.output / f"synthetic{_suffix(config)}"
    generated = generate_file(synth, stage.n or train_records, path, conditions=stage.conditions, seed=stage.seed,
                              temperature=stage.temperature, top_p=stage.top_p, **options)
    return path, generated.n


def saved_model_evaluation(model_dir: Path | None, canary_file: Path | None = None, temperature: float = 1.0
                           ) -> tuple[str | None, Schema | None, CanaryTest | None, dict | None]:
    """What a saved synthesizer brings to `llmsynth eval`: its kind, its schema (tables: the column types), the
    test of the canaries it was trained with (their file beside it, or `canary_file`) and its training figures."""
    if model_dir is None:
        if canary_file is not None:
            raise DataError("--canaries needs --model: the canaries are measured on the model they went into")
        return None, None, None, None
    manifest = read_manifest(model_dir)
    schema = Schema.model_validate(manifest["schema"]) if "schema" in manifest else None
    path = canary_file or canary_path(model_dir)
    test = CanaryTest(load(model_dir), read_canaries(path), temperature) if canary_file or path.is_file() else None
    return manifest["kind"], schema, test, training_figures(manifest)


# -- one stage on files: what `llmsynth scrub`, `train` and `generate` call -----------------------------------------
def scrub_file(input_path: Path, output: Path, kind: str, config: ScrubConfig, column_kinds: dict | None = None,
               skip_bad_lines: bool = False, processes: int = 1) -> tuple[dict, set, list[str]]:
    """Scrub a table or a JSONL corpus into `output`: the summary, the raw values found, and lines for the user."""
    check_output(kind, output)
    if kind == "chat":
        chats = read_chats(input_path, skip_bad_lines=skip_bad_lines)
        scrubbed, summary, raw = scrub_chats(chats.conversations, config, processes=processes)
        write_chats(output, scrubbed)
        summary["skipped_lines"] = chats.skipped
        lines = [f"skipped {input_path}: {problem}" for problem in chats.skipped[:5]]
        lines += [f"  {entity:<20} {count} replaced" for entity, count in summary["entities"].items()]
        lines.append(f"scrubbed {summary['conversations']} conversations ({summary['messages']} messages)"
                     + (f"; skipped {len(chats.skipped)} bad lines" if chats.skipped else ""))
        return summary, raw, lines
    scrubbed, summary, raw = scrub_table(read_table(input_path), config, column_kinds or {})
    write_table(scrubbed, output)
    lines = [f"  {name:<20} {column['policy']}: {column['replaced']} replaced"
             for name, column in summary["columns"].items() if column["policy"] != "kept"]
    quasi = summary["quasi_identifiers"]
    if quasi and quasi["warning"]:
        lines.append(f"warning: quasi-identifiers: {quasi['warning']}")
    return summary, raw, [*lines, f"scrubbed {summary['rows']} rows"]


def training_lines(synth: Synthesizer) -> list[str]:
    """What a fit did, for the user: the scrub, the data, the stopping, the privacy spent."""
    lines = []
    if synth.scrub_summary and not synth.scrub_summary.get("skipped"):
        if synth.KIND == "chat":
            replaced = synth.scrub_summary["entities"]
        elif synth.KIND == "relational":
            replaced = {f"{table}.{name}": column["replaced"] for table, report in synth.scrub_summary["tables"].items()
                        for name, column in report["columns"].items() if column["policy"] != "kept"}
        else:
            replaced = {name: column["replaced"] for name, column in synth.scrub_summary["columns"].items()
                        if column["policy"] != "kept"}
        lines.append(f"scrubbed first: {', '.join(f'{k} {v}' for k, v in replaced.items()) or 'no PII found'} "
                     "values replaced (details in the manifest)")
        if synth.scrub_summary.get("ner") is False:
            lines.append("warning: scrubbed without NER (--allow-no-ner): most names and every place were left in")
    summary, data = synth.summary, synth.data_summary
    trained_on = (f"{data['train_conversations']} conversations" if "train_conversations" in data
                  else f"{data['families']} families ({', '.join(f'{t} {n}' for t, n in data['rows'].items())} rows)"
                  if "families" in data else f"{data['train_rows']} rows")
    lines.append(f"trained on {trained_on} ({summary.epochs:g} epochs, {summary.seconds:.0f}s, stopped by "
                 f"{summary.stopped_because}); validation loss {summary.initial_validation_loss:.3f} -> "
                 f"{summary.best_validation_loss:.3f}")
    if summary.best_validation_loss >= summary.initial_validation_loss:
        lines.append("warning: no validation beat the starting weights, so they are what was saved (the base as it "
                     "was): train longer, or with a lower learning rate")
    if summary.privacy:
        dp = summary.privacy
        lines.append(f"differentially private: epsilon {dp['epsilon']:.2f} spent (target {dp['target_epsilon']:g}), "
                     f"delta {dp['delta']:.2g}, noise multiplier {dp['noise_multiplier']:.3f}, clipping norm "
                     f"{dp['max_grad_norm']:g}, {dp['steps']} steps (in the manifest)")
    return lines


def check_output(kind: str, output: Path) -> None:
    """Fail before any work where the output's format cannot hold this kind's records."""
    if kind == "chat" and output.suffix.lower() != ".jsonl":
        raise DataError(f"{output}: conversations are written as .jsonl")
    if kind != "chat":
        table_format(output)


@dataclass
class Generated:
    n: int
    seconds: float
    rescrubbed: Counter  # chats: PII the re-scrub replaced, by entity
    copies: Counter  # chats: what the novelty filter did (see copy_summary)


def generate_database(synth: Synthesizer, n: int, output: str, **options: Any) -> tuple[Database | None, float]:
    """Related tables: `n` root rows with their families, into a new folder (a file per table + relations.yaml) or
    a new database; nothing carries the final name until everything is written. Under `accelerate launch` each
    process samples its share of the batches and the main process joins and writes them (the same tables as one
    process writes for the same seed); other processes return no database."""
    processes = process_state()
    if is_database_url(output) and processes.is_main_process:
        new_sqlite_file(output)  # checked before the work, not after it
    started = time.perf_counter()
    parts = list(synth.sample_parts(n, progress=processes.is_local_main_process,
                                    shard=(processes.process_index, processes.num_processes), **options))
    if processes.num_processes > 1:
        from accelerate.utils import gather_object

        parts = [part for shard in gather_object([parts]) for part in shard]
    database = None
    if processes.is_main_process:
        database = synth.join_parts(parts)
        write_related(database, output)
    processes.wait_for_everyone()
    return database, time.perf_counter() - started


def evaluate_databases(real: str, holdout: str, synthetic: str, out_dir: Path, model_dir: Path | None = None
                       ) -> tuple[dict, list[str]]:
    """Related tables (folders or database URLs): the synthetic tables' figures against the real ones, with the
    holdout's own against the real ones beside them (what chance gives), to out_dir/metrics.json and report.html;
    returns the figures and lines to show.
    A model's layout says which tables are sequences where a database cannot."""
    from llmsynth.evaluate.relational import relational_metrics
    from llmsynth.evaluate.report import RELATIONAL_SUMMARY, metrics_json, relational_html
    from llmsynth.evaluate.risk import family_record_risk

    tables = read_manifest(model_dir)["layout"]["tables"] if model_dir else {}
    order_by = {name: table["order_by"] for name, table in tables.items() if table.get("order_by")}
    databases = [with_entity_table(read_related(location, order_by)) for location in (real, holdout, synthetic)]
    risk, families = family_record_risk(*databases)
    metrics = {"kind": "relational", "synthetic": relational_metrics(databases[0], databases[2]),
               "holdout": relational_metrics(databases[0], databases[1]), "record_risk": risk}
    write_text(Path(out_dir) / "record_risk.csv", families.to_csv(index=False, float_format="%.6g"))
    path = write_text(Path(out_dir) / "metrics.json", metrics_json(metrics) + "\n")
    report = write_text(Path(out_dir) / "report.html", relational_html(metrics, databases[0], databases[2]))
    lines = [f"{'figure':<42} {'synthetic':>10} {'holdout':>10}"]
    for key, label in RELATIONAL_SUMMARY:
        lines.append(f"{label:<42} {metrics['synthetic'][key]:>10.3f} {metrics['holdout'][key]:>10.3f}")
    matches = risk["exact_family_matches"]
    lines += [f"{'families equal to a training family':<42} {matches['synthetic']:>10.3f} {matches['holdout']:>10.3f}",
              f"{'DCR share of families (0.5 ideal)':<42} {risk['dcr_share']:>10.3f}",
              f"root entities at risk: {risk['at_risk']} of {risk['families']} ({risk['at_risk_share']:.1%}; "
              f"{risk['expected_share']:.1%} by chance), each in {Path(out_dir) / 'record_risk.csv'}"]
    return metrics, [*lines, f"figures per table in {path}, plots in {report}"]


def generate_file(synth: Synthesizer, n: int, output: Path, **options: Any) -> Generated:
    """Stream `n` records to `output`. Under `accelerate launch` each process samples its share of the batches and
    the main process writes them in order: the same file as one process writes for the same seed."""
    check_output(synth.KIND, output)
    processes = process_state()
    started = time.perf_counter()
    write_batches(synth.iter_sample(n, progress=processes.is_local_main_process,
                                    shard=(processes.process_index, processes.num_processes), **options),
                  output, processes)
    seconds = time.perf_counter() - started
    counts = [Counter(getattr(synth, name, {})) for name in ("rescrub_counts", "copy_counts")]
    if processes.num_processes > 1:
        from accelerate.utils import gather_object

        counts = [sum(gather_object([c]), Counter()) for c in counts]
    return Generated(n, seconds, *counts)
