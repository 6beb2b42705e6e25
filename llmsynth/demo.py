"""`llmsynth demo`: the whole pipeline on bundled data (a customers table, or support chats), offline on a CPU.

The demo writes its data and a pipeline config to the output folder and runs `llmsynth run` on them, so what it
shows is what a user's own run does; `llmsynth run demo-output/pipeline.yaml` repeats it."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from llmsynth.data import read_table, write_table
from llmsynth.data.chats import read_chats, write_chats
from llmsynth.data.io import write_text
from llmsynth.data.demo import CHAT_INTENTS, customers, support_chats
from llmsynth.evaluate.fidelity import correlation
from llmsynth.evaluate.text import replayed_values
from llmsynth.evaluate.validity import valid_rows
from llmsynth.pipeline import PipelineRun, load_pipeline, run_pipeline

HOLDOUT_FRACTION = 0.2
# The chat demo samples below temperature 1: a model trained for three CPU minutes puts some mass on garbled text.
# With the novelty filter (which adds diversity: copies are sampled again), 0.7 keeps the requested intent
# recognizable and distinct-2 near the real chats' (one model, two seeds: 97.1/96.2% and 1.11x at 0.7, 94.8/92.9%
# and 1.16/1.18x at 0.8).
CHAT_TEMPERATURE = 0.7


def _run_demo(out_dir: Path, config: dict, echo: Callable[[str], None]) -> PipelineRun:
    """Write `config` as out_dir/pipeline.yaml and run it (paths in it are relative to out_dir)."""
    path = out_dir / "pipeline.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False), encoding="utf-8")
    echo(f"pipeline config -> {path} (`llmsynth run {path}` runs it again)")
    return run_pipeline(load_pipeline(path), echo=echo)


def _echo_canaries(run: PipelineRun, echo: Callable[[str], None]) -> None:
    canaries = run.evaluation.metrics.get("canaries")
    if canaries:
        exposures = ", ".join(f"{g['inserted']}x {g['exposure']:.1f}" if g["inserted"] else
                              f"never inserted {g['exposure']:.1f}" for g in canaries["by_insertions"])
        echo(f"canary exposure in bits (of {canaries['space_bits']:.1f}): {exposures}; secrets extracted by "
             f"sampling: {canaries['extracted']}")


def run_tabular_demo(out_dir: Path, rows: int = 4000, samples: int = 1000, max_minutes: float = 3.0,
                     seed: int = 0, train_options: Mapping[str, Any] | None = None,
                     echo: Callable[[str], None] = print) -> tuple[dict[str, float], PipelineRun]:
    """Demo customers -> `run` (holdout split, scrub, train, generate 'samples' rows, evaluate with is_fraud as the
    utility target); returns the headline figures and the run. `train_options` adds to the pipeline's train stage
    (canaries, dp_epsilon, epochs...)."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    write_table(customers(rows, seed=seed), out_dir / "customers.csv")
    echo(f"demo table: {rows} customers with PII -> {out_dir / 'customers.csv'}")
    run = _run_demo(out_dir, {
        "kind": "tabular", "input": "customers.csv", "output": ".",
        "split": {"holdout_fraction": HOLDOUT_FRACTION, "seed": seed},
        "train": {"max_minutes": max_minutes, **(train_options or {})}, "generate": {"n": samples, "seed": seed},
        "evaluate": {"target": "is_fraud", "seed": seed}}, echo)

    train, synthetic = read_table(out_dir / "train.csv"), read_table(out_dir / "synthetic.csv")
    fidelity = run.evaluation.metrics["fidelity"]
    shapes = fidelity["column_shapes_by_column"]
    figures = {
        "valid_share": float(valid_rows(synthetic, run.synthesizer.schema).mean()),
        "train_seconds": run.seconds["train"],
        "generate_seconds": run.seconds["generate"],
        "rows_per_second": samples / run.seconds["generate"],
        "mean_column_shape": fidelity["column_shapes"],
        "income_credit_corr_real": correlation(train, "annual_income", "credit_score"),
        "income_credit_corr_synthetic": correlation(synthetic, "annual_income", "credit_score"),
        "fraud_share_real": float(train["is_fraud"].astype(int).mean()),
        "fraud_share_synthetic": float(synthetic["is_fraud"].astype(int).mean()),
    }
    summary = run.synthesizer.summary
    echo(f"the tiny model trained at {summary.tokens_per_second:.0f} tokens/s; generation ran at "
         f"{figures['rows_per_second']:.0f} rows/s, {figures['valid_share']:.1%} of rows valid")
    echo("column shapes (1 = identical distribution; KS complement for numbers/dates, TV complement for categories):")
    for name, score in shapes.items():
        echo(f"  {name:<18} {score:.3f}")
    echo(f"  {'mean':<18} {figures['mean_column_shape']:.3f}")
    echo(f"income-credit score correlation: real {figures['income_credit_corr_real']:.3f}, "
         f"synthetic {figures['income_credit_corr_synthetic']:.3f}")
    echo(f"is_fraud share: real {figures['fraud_share_real']:.2%}, synthetic {figures['fraud_share_synthetic']:.2%}")
    echo("identifier columns (name, email, phone, ssn, address, id) were not learned: they hold Faker surrogates")
    _echo_canaries(run, echo)
    return figures, run


def run_chat_demo(out_dir: Path, conversations: int = 600, samples: int = 210, max_minutes: float = 3.0,
                  temperature: float = CHAT_TEMPERATURE, seed: int = 0, train_options: Mapping[str, Any] | None = None,
                  echo: Callable[[str], None] = print) -> tuple[dict[str, float], PipelineRun]:
    """Demo chats with PII -> `run` (holdout split, scrub, train, generate conversations with an even mix of
    intents, evaluate) -> structure, conditioning, diversity, copying and ground-truth PII replay figures."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    demo = support_chats(conversations, seed=seed)
    write_chats(out_dir / "chats.jsonl", demo.conversations)
    echo(f"demo chats: {conversations} support conversations with PII -> {out_dir / 'chats.jsonl'}")
    even_mix = {"intent": {intent: 1 / len(CHAT_INTENTS) for intent in CHAT_INTENTS}}
    run = _run_demo(out_dir, {
        "kind": "chat", "input": "chats.jsonl", "output": ".",
        "split": {"holdout_fraction": HOLDOUT_FRACTION, "seed": seed},
        "train": {"max_minutes": max_minutes, **(train_options or {})},
        "generate": {"n": samples, "seed": seed, "temperature": temperature, "mix": even_mix},
        "evaluate": {"label": "intent", "seed": seed}}, echo)

    from llmsynth.synthesizers.chat import GUIDANCE

    metrics = run.evaluation.metrics
    synthetic = read_chats(out_dir / "synthetic.jsonl").conversations
    synthetic_turns = [m["content"] for c in synthetic for m in c["messages"]]
    synth = run.synthesizer
    figures = {
        "train_seconds": run.seconds["train"],
        "generate_seconds": run.seconds["generate"],
        "conversations_per_second": samples / run.seconds["generate"],
        "structure_valid_share": float(np.mean([synth.rules.valid(c) for c in synthetic])),
        "intent_agreement": metrics["utility"]["label_agreement"],
        "distinct_2_real": metrics["fidelity"]["distinct_2"]["real"],
        "distinct_2_synthetic": metrics["fidelity"]["distinct_2"]["synthetic"],
        "verbatim_turn_share": metrics["privacy"]["verbatim_share"],
        "verbatim_turn_share_holdout": metrics["privacy"]["verbatim_share_holdout"],
        "pii_values_replayed": len(replayed_values(synthetic_turns, {span.value for span in demo.pii})),
        "rescrubbed": sum(synth.rescrub_counts.values()),
        "copies_resampled": synth.copy_counts["resampled"],
    }
    summary = synth.summary
    echo(f"validation loss {summary.initial_validation_loss:.2f} -> {summary.best_validation_loss:.2f}; "
         f"{figures['conversations_per_second']:.1f} conversations/s at temperature {temperature:g} with guidance "
         f"{GUIDANCE:g}, an even mix of "
         f"{len(CHAT_INTENTS)} intents")
    echo(f"  structurally valid (roles alternate, no empty turn, {synth.rules.min_turns}-{synth.rules.max_turns} "
         f"turns, closed): {figures['structure_valid_share']:.1%}")
    echo(f"  requested intent recognized by a classifier trained on the real chats: {figures['intent_agreement']:.1%}")
    echo(f"  distinct-2: real {figures['distinct_2_real']:.3f}, synthetic {figures['distinct_2_synthetic']:.3f}")
    echo(f"  turns over 40 characters copied verbatim from training: {figures['verbatim_turn_share']:.1%} "
         f"(real holdout conversations: {figures['verbatim_turn_share_holdout']:.1%}; the demo's turns are templates; "
         f"{figures['copies_resampled']} turns that closed as copies were sampled again)")
    echo(f"  ground-truth PII values of the source found in the output: {figures['pii_values_replayed']}; PII "
         f"re-scrubbed in the output (not training surrogates): {figures['rescrubbed']}")
    _echo_canaries(run, echo)
    return figures, run


def run_relational_demo(out_dir: Path, families: int = 600, samples: int = 300, max_minutes: float = 4.0,
                        seed: int = 0, echo: Callable[[str], None] = print) -> tuple[dict[str, Any], Any]:
    """Demo bank (customers with PII -> accounts -> transactions over time, fraud in the sequences): holdout by
    customer, scrub every table, train the tiny model, generate `samples` customers with their accounts and
    transactions, and evaluate them as `llmsynth eval` does (metrics.json, report.html), with the fraud pattern
    beside the holdout's. Returns the figures and the synthesizer."""
    from scipy.stats import binomtest

    from llmsynth.data.demo import bank, fraud_burst_counts, fraud_burst_share
    from llmsynth.data.relational import Database, Layout, split_by_root, write_database
    from llmsynth.pipeline import evaluate_databases
    from llmsynth.synthesizers import RelationalSynthesizer

    out_dir = Path(out_dir)
    layout, tables = bank(families, seed=seed)
    database = Database(Layout.model_validate(layout), tables)
    source = write_database(database, out_dir / "bank")
    echo(f"demo bank: {', '.join(f'{len(t)} {name}' for name, t in tables.items())} with PII -> {source}")
    train, holdout, _ = split_by_root(database, HOLDOUT_FRACTION, seed)
    parts = {role: write_database(data, out_dir / role) for role, data in (("train", train), ("holdout", holdout))}
    synth = RelationalSynthesizer()
    synth.recipe.train = synth.recipe.train.model_copy(update={"max_minutes": max_minutes, "seed": seed})
    started = time.perf_counter()
    synth.fit(train).save(out_dir / "model")
    seconds = {"train": time.perf_counter() - started}
    started = time.perf_counter()
    synthetic = synth.sample(samples, seed=seed, progress=True)
    seconds["generate"] = time.perf_counter() - started
    parts["synthetic"] = write_database(synthetic, out_dir / "synthetic")
    summary = synth.summary
    echo(f"trained {summary.epochs:g} epochs in {seconds['train']:.0f}s ({summary.tokens_per_second:.0f} tokens/s); "
         f"generated {samples} customers with {len(synthetic.tables['accounts'])} accounts and "
         f"{len(synthetic.tables['transactions'])} transactions in {seconds['generate']:.0f}s -> {parts['synthetic']}")
    metrics, lines = evaluate_databases(*map(str, parts.values()), out_dir / "report", out_dir / "model")
    for line in lines:
        echo(line)
    found, cards = fraud_burst_counts(synthetic.tables["accounts"], synthetic.tables["transactions"])
    interval = binomtest(found, cards).proportion_ci() if cards else None  # a few hundred accounts: about +-3 points
    demo = {"seconds": seconds, "families_per_second": samples / seconds["generate"],
            "fraud_pattern_real": fraud_burst_share(holdout.tables["accounts"], holdout.tables["transactions"]),
            "fraud_pattern_training": fraud_burst_share(train.tables["accounts"], train.tables["transactions"]),
            "fraud_pattern_synthetic": found / max(1, cards),
            "fraud_pattern_synthetic_interval": [interval.low, interval.high] if interval else None}
    write_text(out_dir / "demo.json", json.dumps(demo, indent=2))
    metrics = {**metrics, **demo}
    synthetic_share = f"{demo['fraud_pattern_synthetic']:.1%} of {cards}"
    if interval:
        synthetic_share += f" (95% interval {interval.low:.1%}-{interval.high:.1%})"
    echo(f"fraud pattern (burst of tiny card-not-present payments, then a large one), share of card accounts: "
         f"training {demo['fraud_pattern_training']:.1%}, holdout {demo['fraud_pattern_real']:.1%}, "
         f"synthetic {synthetic_share}")
    echo("customer names and e-mails were never learned (fresh surrogates)")
    return metrics, synth
