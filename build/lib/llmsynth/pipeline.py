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
evaluation always has records the model never saw. Training scrubs its part itself (the manifest records it);
the evaluation compares the synthetic output with the source scrubbed the same way (keyed surrogates: the same
value gets the same surrogate in both) and looks for the source's raw PII, kept in `private/raw_pii.jsonl`.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal

import numpy as np
import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from llmsynth.data import TableWriter, read_table, write_table
from llmsynth.data.chats import read_chats, write_chats
from llmsynth.data.io import table_format, write_text
from llmsynth.errors import DataError
from llmsynth.evaluate import Evaluation, evaluate_chats, evaluate_tables, write_report
from llmsynth.evaluate.canary import CanaryTest
from llmsynth.evaluate.checks import CHAT_CHECKS, TABLE_CHECKS, apply_thresholds
from llmsynth.evaluate.coherence import REFERENCE_LM
from llmsynth.scrub import ScrubConfig

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
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as error:
        raise DataError(f"{path}: cannot read the pipeline config ({error.strerror})") from None
    except yaml.YAMLError as error:
        raise DataError(f"{path}: not valid YAML ({error})") from None
    if not isinstance(raw, dict):
        raise DataError(f"{path}: expected a mapping with at least 'input' and 'output'")
    try:
        config = PipelineConfig.model_validate(raw)
    except ValidationError as error:
        problems = "; ".join(f"{'.'.join(map(str, e['loc'])) or 'config'}: {e['msg']}" for e in error.errors())
        raise DataError(f"{path}: {problems}") from None
    base = path.parent
    return config.model_copy(update={"input": base / config.input, "output": base / config.output})


@dataclass
class PipelineRun:
    evaluation: Evaluation
    synthesizer: Any  # the fitted TabularSynthesizer or ChatSynthesizer, as saved to output/model
    seconds: dict[str, float]  # per stage, as in pipeline.json


def _scrub_config(config: PipelineConfig) -> ScrubConfig | None:
    return None if config.scrub is False else (config.scrub if isinstance(config.scrub, ScrubConfig) else ScrubConfig())


def _source(config: PipelineConfig) -> tuple[Any, int]:
    if config.kind == "chat":
        conversations = read_chats(config.input).conversations
        return conversations, len(conversations)
    table = read_table(config.input)
    return table, len(table)


def _take(records, mask: np.ndarray):
    return records[mask].reset_index(drop=True) if hasattr(records, "iloc") else [r for r, m in zip(records, mask) if m]


def run_pipeline(config: PipelineConfig, echo: Callable[[str], None] = print) -> PipelineRun:
    """Run every stage; returns the evaluation, the synthesizer and the seconds per stage. Writes to `config.output`:

    split.json (the holdout's record numbers), train.* and holdout.* (scrubbed), private/raw_pii.jsonl (raw PII
    found in the source: keep it private), model/ (the synthesizer), synthetic.*, report/ (metrics.json,
    report.html) and pipeline.json (the resolved config and the seconds per stage)."""
    from llmsynth.synthesizer import new_synthesizer

    out = config.output
    chat = config.kind == "chat"
    suffix = ".jsonl" if chat else "." + table_format(config.input)
    seconds: dict[str, float] = {}
    started = time.perf_counter()

    source, count = _source(config)
    holdout_mask = np.random.default_rng(config.split.seed).random(count) < config.split.holdout_fraction
    if holdout_mask.all() or not holdout_mask.any():
        raise DataError(f"{config.input}: {count} records are too few to split a holdout of "
                        f"{config.split.holdout_fraction:.0%} off")
    write_text(out / "split.json", json.dumps({"source": str(config.input), **config.split.model_dump(),
                                               "records": count, "holdout": np.flatnonzero(holdout_mask).tolist()}))
    train_raw, holdout_raw = _take(source, ~holdout_mask), _take(source, holdout_mask)
    echo(f"split {count} records: {len(train_raw)} train, {len(holdout_raw)} holdout -> {out / 'split.json'}")

    scrub = _scrub_config(config)
    raw_pii: set[tuple[str, str]] = set()
    scrubbed = source
    if scrub is not None:
        from llmsynth.scrub import scrub_chats, scrub_table, write_raw_pii

        if chat:
            scrubbed, _, raw_pii = scrub_chats(source, scrub, progress=True)
        else:
            scrubbed, _, raw_pii = scrub_table(source, scrub, config.train.column_kinds, progress=True)
        write_raw_pii(out / "private" / "raw_pii.jsonl", raw_pii)
        echo(f"scrubbed the source: {len(raw_pii)} distinct PII values found "
             f"(raw values kept in {out / 'private' / 'raw_pii.jsonl'}: keep that file private)")
    train, holdout = _take(scrubbed, ~holdout_mask), _take(scrubbed, holdout_mask)
    for name, part in (("train", train), ("holdout", holdout)):
        write_chats(out / f"{name}{suffix}", part) if chat else write_table(part, out / f"{name}{suffix}")
    seconds["split_and_scrub"] = time.perf_counter() - started

    stage = config.train
    synth = new_synthesizer(config.kind, stage.recipe, stage.base_model, stage.column_kinds, stage.loss_on,
                            epochs=stage.epochs, max_minutes=stage.max_minutes, dp_epsilon=stage.dp_epsilon)
    started = time.perf_counter()
    synth.fit(train_raw, workdir=out / "model", scrub=scrub if scrub is not None else False, canaries=stage.canaries)
    synth.save(out / "model")
    seconds["train"] = time.perf_counter() - started
    private = synth.summary.privacy
    echo(f"trained in {seconds['train']:.0f}s ({synth.summary.epochs:g} epochs, stopped by "
         f"{synth.summary.stopped_because}"
         + (f"; differentially private, epsilon {private['epsilon']:.2f} spent" if private else "")
         + f") -> {out / 'model'}")

    generation = config.generate
    n = generation.n or len(train)
    sampling = {"n": n, "conditions": generation.conditions, "seed": generation.seed,
                "temperature": generation.temperature, "top_p": generation.top_p}
    if chat:
        sampling.update(mix=generation.mix, allow_copies=generation.allow_copies,
                        **({} if generation.guidance is None else {"guidance": generation.guidance}))
    elif generation.mix or generation.allow_copies or generation.guidance is not None:
        raise DataError("generate.mix, generate.allow_copies and generate.guidance are for conversations; tables "
                        "take generate.conditions")
    started = time.perf_counter()
    synthetic_path = out / f"synthetic{suffix}"
    with TableWriter(synthetic_path) as output:
        for chunk in synth.iter_sample(**sampling):
            output.write(chunk)
    seconds["generate"] = time.perf_counter() - started
    echo(f"generated {n} records in {seconds['generate']:.1f}s -> {synthetic_path}")
    if chat and synth.copy_counts:
        from llmsynth.chat_synthesizer import copy_summary

        echo("  " + copy_summary(synth.copy_counts))

    evaluation_config = config.evaluate
    checks = apply_thresholds(evaluation_config.thresholds, CHAT_CHECKS if chat else TABLE_CHECKS, "evaluate.thresholds")
    started = time.perf_counter()
    pii = sorted(raw_pii) if scrub is not None else None
    canaries = CanaryTest(synth, synth.canaries, generation.temperature) if synth.canaries is not None else None
    shared = {"raw_pii": pii, "checks": checks, "seed": evaluation_config.seed, "progress": True,
              "canaries": canaries}
    if chat:
        evaluation = evaluate_chats(train, holdout, read_chats(synthetic_path).conversations,
                                    label=evaluation_config.label, reference_model=evaluation_config.reference_model,
                                    **shared)
    else:
        evaluation = evaluate_tables(train, holdout, read_table(synthetic_path), schema=synth.schema,
                                     target=evaluation_config.target, **shared)
    write_report(evaluation, out / "report")
    seconds["evaluate"] = time.perf_counter() - started
    write_text(out / "pipeline.json", json.dumps({"config": config.model_dump(mode="json"), "seconds": seconds},
                                                 indent=2))
    echo(f"evaluated in {seconds['evaluate']:.1f}s -> {out / 'report' / 'report.html'}")
    return PipelineRun(evaluation, synth, seconds)
