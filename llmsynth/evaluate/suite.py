"""The evaluation suite: every figure for one synthetic table or corpus, against its training data and a holdout,
with pass / warn / fail verdicts. `metrics.json` is `Evaluation.metrics`; its keys are documented in
docs/evaluation.md and only ever added to."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from llmsynth.data.schema import Schema, infer_schema
from llmsynth.errors import DataError
from llmsynth.evaluate.bias import bias_audit
from llmsynth.evaluate.canary import CanaryTest
from llmsynth.evaluate.coherence import REFERENCE_LM, coherence
from llmsynth.evaluate.checks import CHAT_CHECKS, TABLE_CHECKS, VERDICTS, Check, run_checks
from llmsynth.evaluate.features import check_columns, classifier_frames, typed
from llmsynth.evaluate.fidelity import (
    column_pair_trends,
    column_shapes,
    detection_auc,
    ks_complement,
    mean_pair_trend,
    tv_complement,
)
from llmsynth.evaluate.privacy import distance_figures, exact_match_rates, pii_replay, row_texts
from llmsynth.evaluate.risk import chat_record_risk, table_record_risk
from llmsynth.evaluate.text import (
    conversation_text,
    distinct_n_matched,
    embedding_distances,
    label_agreement,
    longest_common_words,
    nearest_similarity,
    ngram_overlap,
    rare_verbatim_share,
    verbatim_share,
)
from llmsynth.evaluate.utility import tstr

log = logging.getLogger(__name__)

METRICS_VERSION = 1
MIN_HOLDOUT = 50  # below this the privacy figures rest on too few rows to mean much


@dataclass
class Evaluation:
    metrics: dict  # what metrics.json holds, checks and warnings included
    plots: dict = field(default_factory=dict)  # the data behind the report's figures (not written to JSON)
    records: pd.DataFrame | None = None  # every training record's risk, most exposed first (record_risk.csv)

    @property
    def checks(self) -> list[dict]:
        return self.metrics["checks"]

    @property
    def worst(self) -> str:
        """The worst verdict of any check ('pass' when there is none)."""
        return max((c["verdict"] for c in self.checks), key=VERDICTS.index, default="pass")


class _Steps:
    """A progress bar over the suite's named steps."""

    def __init__(self, count: int, progress: bool):
        self.bar = tqdm(total=count, desc="evaluating", unit="step", disable=not progress, leave=False)

    def __call__(self, name: str, compute: Callable):
        self.bar.set_postfix_str(name)
        result = compute()
        self.bar.update()
        return result


def _holdout_warnings(holdout_size: int) -> list[str]:
    if holdout_size < MIN_HOLDOUT:
        return [f"the holdout has {holdout_size} records (fewer than {MIN_HOLDOUT}): the privacy figures rest on "
                "too few records to mean much"]
    return []


def _mean(scores: dict) -> float:
    values = [v for v in scores.values() if not np.isnan(v)]
    return float(np.mean(values)) if values else float("nan")


def _finish(metrics: dict, checks: list[Check], warnings: list[str], training: dict | None) -> dict:
    if training is not None:
        metrics["training"] = training
    for warning in warnings:
        log.warning(warning)
    metrics["warnings"] = warnings
    metrics["checks"] = run_checks(metrics, checks)
    return metrics


def _replay(raw_pii, synthetic_texts: list[str], holdout_texts: list[str], seed: int) -> dict:
    replay = pii_replay(raw_pii, synthetic_texts, holdout_texts, seed=seed)
    replay["excess"] = replay["synthetic_share"] - replay["holdout_share"]
    return replay


def evaluate_tables(train: pd.DataFrame, holdout: pd.DataFrame, synthetic: pd.DataFrame, schema: Schema | None = None,
                    target: str | None = None, raw_pii: Sequence[tuple[str, str]] | None = None,
                    checks: list[Check] = TABLE_CHECKS, seed: int = 0, progress: bool = False,
                    canaries: CanaryTest | None = None, sensitive: Sequence[str] = (),
                    training: dict | None = None) -> Evaluation:
    """Fidelity, utility (with a target column) and privacy of a synthetic table, with `canaries` what the model
    memorized, and with `sensitive` columns (and a target) a bias audit; `training`: the model's training figures
    (`training_figures`), checked and recorded beside the rest. `schema` defaults to the one inferred from `train`;
    identifier and free-text columns are left out (they hold surrogates, not learned values), except from
    PII replay, which reads every cell."""
    schema = schema or infer_schema(train)
    for role, table in (("real", train), ("holdout", holdout), ("synthetic", synthetic)):
        check_columns(table, schema, role)
    if target is not None and target not in schema.names:
        raise DataError(f"target column {target!r} is not in the real table; its columns are {schema.names}")
    _check_sensitive(sensitive, target, [c.name for c in schema.learned], "column")
    steps = _Steps(6 + (target is not None) + (raw_pii is not None) + (canaries is not None) + bool(sensitive),
                   progress)
    shapes = steps("column shapes", lambda: column_shapes(train, synthetic, schema))
    pairs = steps("pair trends", lambda: column_pair_trends(train, synthetic, schema))
    metrics: dict = {
        "version": METRICS_VERSION,
        "kind": "tabular",
        "rows": {"train": len(train), "holdout": len(holdout), "synthetic": len(synthetic)},
        "columns": [c.name for c in schema.learned],
        "fidelity": {
            "column_shapes": _mean(shapes),
            "column_pair_trends": mean_pair_trend(pairs),
            "strongly_related_pairs": sum(trend.strong for trend in pairs.values()),
            "detection_auc": steps("detection", lambda: detection_auc(holdout, synthetic, schema, seed=seed)),
            "column_shapes_by_column": shapes,
            "column_pair_trends_by_pair": {f"{a} / {b}": trend._asdict() for (a, b), trend in pairs.items()},
        },
    }
    if target is not None:
        metrics["utility"] = steps("utility", lambda: tstr(train, holdout, synthetic, schema, target, seed=seed))
    if sensitive:
        metrics["bias"] = steps("bias audit", lambda: _table_bias(train, holdout, synthetic, schema, sensitive,
                                                                  target, seed))
    matches = steps("exact matches", lambda: exact_match_rates(train, holdout, synthetic, schema))
    distances, distance_plots = steps("distances", lambda: distance_figures(train, holdout, synthetic, schema, seed))
    risk, records = steps("record risk", lambda: table_record_risk(train, holdout, synthetic, schema))
    metrics["privacy"] = {
        "exact_match_rate": matches["synthetic"],
        "exact_match_rate_holdout": matches["holdout"],
        "exact_match_excess": matches["synthetic"] - matches["holdout"],
        **distances,
        "record_risk": risk,
    }
    if raw_pii is not None:
        metrics["privacy"]["pii_replay"] = steps(
            "PII replay", lambda: _replay(raw_pii, row_texts(synthetic), row_texts(holdout), seed))
    if canaries is not None:
        metrics["canaries"] = steps("canaries", lambda: canaries.figures(row_texts(synthetic), seed))
    steps.bar.close()
    metrics = _finish(metrics, checks, _holdout_warnings(len(holdout)), training)
    plots = {"real": typed(train, schema), "synthetic": typed(synthetic, schema), "schema": schema,
             "distances": distance_plots}
    return Evaluation(metrics, plots, records)


def training_figures(manifest: dict) -> dict:
    """What a synthesizer's manifest says of its training that a release decision needs: the model, and the epsilon
    and delta of differentially private training (None: not private)."""
    training = manifest.get("training") or {}
    privacy = training.get("privacy") or {}
    return {"model": manifest["model"]["type"], "base_model": manifest["model"]["base_model"],
            "epochs": training.get("epochs"), "dp_epsilon": privacy.get("epsilon"), "dp_delta": privacy.get("delta")}


def _check_sensitive(sensitive: Sequence[str], target: str | None, learned: list[str], noun: str) -> None:
    if not sensitive:
        return
    if target is None:
        raise DataError("a bias audit needs a target: the outcome whose rate it compares between groups "
                        "(--target for a table; for conversations the --label field, which every one must have)")
    unknown = [name for name in sensitive if name not in learned]
    if unknown:
        raise DataError(f"sensitive {noun}(s) {unknown} not among the learned {noun}s {learned} (identifiers hold "
                        "surrogates, not learned values)")


def _table_bias(train: pd.DataFrame, holdout: pd.DataFrame, synthetic: pd.DataFrame, schema: Schema,
                sensitive: Sequence[str], target: str, seed: int) -> dict:
    frames = [typed(t, schema) for t in (train, holdout, synthetic)]
    return bias_audit(*frames, sensitive, target, features=classifier_frames(frames, schema, drop=target), seed=seed)


def _metadata_frame(conversations: Sequence[dict]) -> pd.DataFrame:
    return pd.DataFrame([c.get("metadata") or {} for c in conversations])


def _turns(conversations: Sequence[dict]) -> list[str]:
    return [m["content"] for c in conversations for m in c["messages"]]


def _labels(conversations: Sequence[dict], label: str) -> pd.Series:
    return pd.Series([str(c.get("metadata", {}).get(label)) for c in conversations])


def evaluate_chats(train: Sequence[dict], holdout: Sequence[dict], synthetic: Sequence[dict], label: str = "intent",
                   raw_pii: Sequence[tuple[str, str]] | None = None, checks: list[Check] = CHAT_CHECKS,
                   seed: int = 0, progress: bool = False, canaries: CanaryTest | None = None,
                   reference_model: str | None = REFERENCE_LM, sensitive: Sequence[str] = (),
                   training: dict | None = None) -> Evaluation:
    """Fidelity, coherence, utility and privacy of synthetic conversations, with `canaries` what the model
    memorized, and with `sensitive` metadata fields a bias audit of the label's rates; `label` is the metadata field
    the conditioning and utility figures use (left out where the real conversations lack it); `reference_model` is
    the untuned LM of the perplexity figure (None: left out); `training` as for `evaluate_tables`."""
    for role, corpus in (("real", train), ("holdout", holdout), ("synthetic", synthetic)):
        if not corpus:
            raise DataError(f"the {role} conversations are empty")
    has_label = all(label in c.get("metadata", {}) for corpus in (train, holdout, synthetic) for c in corpus)
    _check_sensitive(sensitive, label if has_label else None, list(_metadata_frame(train).columns), "metadata field")
    steps = _Steps(7 + has_label + (raw_pii is not None) + (canaries is not None) + bool(sensitive), progress)
    real_turns, synthetic_turns = _turns(train), _turns(synthetic)
    real_lengths, synthetic_lengths = [len(t) for t in real_turns], [len(t) for t in synthetic_turns]
    real_counts = [len(c["messages"]) for c in train]
    synthetic_counts = [len(c["messages"]) for c in synthetic]
    fidelity = steps("lengths", lambda: {
        "turn_length_shape": ks_complement(real_lengths, synthetic_lengths),
        "turn_count_shape": ks_complement(real_counts, synthetic_counts),
        "mean_turn_length": {"real": float(np.mean(real_lengths)), "synthetic": float(np.mean(synthetic_lengths))},
        "mean_turns": {"real": float(np.mean(real_counts)), "synthetic": float(np.mean(synthetic_counts))},
    })
    diversity = steps("diversity", lambda: distinct_n_matched(
        [conversation_text(c) for c in train], [conversation_text(c) for c in synthetic], seed=seed))
    fidelity["distinct_2"] = diversity
    fidelity["distinct_2_gap"] = abs(diversity["synthetic"] / diversity["real"] - 1) if diversity["real"] else None
    fidelity["embeddings"] = steps("embeddings", lambda: embedding_distances(
        train, {"synthetic": synthetic, "holdout": holdout}, seed=seed))
    metrics: dict = {"version": METRICS_VERSION, "kind": "chat",
                     "conversations": {"train": len(train), "holdout": len(holdout), "synthetic": len(synthetic)},
                     "fidelity": fidelity}
    metrics["coherence"] = steps("coherence", lambda: coherence(train, holdout, synthetic, seed, reference_model))
    real_labels, synthetic_labels = _labels(train, label), _labels(synthetic, label)
    if has_label:
        fidelity["label"] = label
        fidelity["label_shape"] = tv_complement(real_labels.value_counts(normalize=True),
                                                synthetic_labels.value_counts(normalize=True))
        metrics["utility"] = steps("labels", lambda: _label_utility(train, holdout, synthetic, label))
    if sensitive:
        metrics["bias"] = steps("bias audit", lambda: bias_audit(
            *(_metadata_frame(corpus) for corpus in (train, holdout, synthetic)), sensitive, label, seed=seed))
    texts = {role: [conversation_text(c) for c in corpus]
             for role, corpus in (("train", train), ("synthetic", synthetic), ("holdout", holdout))}
    metrics["privacy"], similarity = _chat_privacy(train, holdout, synthetic, texts, steps)
    metrics["privacy"]["record_risk"], records = steps("record risk", lambda: chat_record_risk(
        train, holdout, synthetic, seed))
    if raw_pii is not None:
        metrics["privacy"]["pii_replay"] = steps("PII replay", lambda: _replay(
            raw_pii, texts["synthetic"], texts["holdout"], seed))
    if canaries is not None:
        metrics["canaries"] = steps("canaries", lambda: canaries.figures(texts["synthetic"], seed))
    steps.bar.close()
    metrics = _finish(metrics, checks, _holdout_warnings(len(holdout)), training)
    plots = {"turn_lengths": (real_lengths, synthetic_lengths), "turn_counts": (real_counts, synthetic_counts),
             "similarity": similarity}
    if has_label:
        plots["labels"] = (label, real_labels, synthetic_labels)
    return Evaluation(metrics, plots, records)


def _chat_privacy(train: Sequence[dict], holdout: Sequence[dict], synthetic: Sequence[dict], texts: dict,
                  steps: _Steps) -> tuple[dict, dict]:
    """What synthetic conversations repeat of the training ones, each figure beside the holdout's; with the
    nearest-training similarities for the report's histogram."""
    similarity = steps("similarity", lambda: {
        role: nearest_similarity(train, corpus) for role, corpus in (("synthetic", synthetic), ("holdout", holdout))})
    real_turns = _turns(train)
    verbatim = {role: verbatim_share(_turns(corpus), real_turns)
                for role, corpus in (("synthetic", synthetic), ("holdout", holdout))}
    overlap, common = steps("memorized text", lambda: (
        {role: ngram_overlap(texts[role], texts["train"], 8) for role in ("synthetic", "holdout")},
        {role: longest_common_words(texts[role], texts["train"]) for role in ("synthetic", "holdout")}))
    return {
        "verbatim_share": verbatim["synthetic"],
        "verbatim_share_holdout": verbatim["holdout"],
        "verbatim_excess": verbatim["synthetic"] - verbatim["holdout"],
        "verbatim_rare_share": {role: rare_verbatim_share(_turns(corpus), train)
                                for role, corpus in (("synthetic", synthetic), ("holdout", holdout))},
        "similarity_synthetic": float(np.mean(similarity["synthetic"])),
        "similarity_holdout": float(np.mean(similarity["holdout"])),
        "similarity_excess": float(np.mean(similarity["synthetic"]) - np.mean(similarity["holdout"])),
        "ngram8_overlap": overlap["synthetic"],
        "ngram8_overlap_holdout": overlap["holdout"],
        "ngram8_excess": overlap["synthetic"] - overlap["holdout"],
        "longest_common_words": {role: {"median": float(np.median(lengths)), "p95": float(np.quantile(lengths, 0.95)),
                                        "max": int(max(lengths))} for role, lengths in common.items()},
    }, similarity


def _label_utility(train: Sequence[dict], holdout: Sequence[dict], synthetic: Sequence[dict], label: str) -> dict:
    """The label classifier trained on synthetic vs on real conversations, both tested on the holdout; and how
    often the real-trained classifier agrees with the synthetic conversations' own labels (conditioning)."""
    synthetic_labels = {str(c.get("metadata", {}).get(label)) for c in synthetic}
    if len(synthetic_labels) < 2:  # one label only: a classifier can only ever predict it
        only = synthetic_labels.pop()
        synthetic_accuracy = float(np.mean([str(c["metadata"].get(label)) == only for c in holdout]))
    else:
        synthetic_accuracy = label_agreement(synthetic, holdout, label)
    real_accuracy = label_agreement(train, holdout, label)
    return {"label": label, "real_accuracy": real_accuracy, "synthetic_accuracy": synthetic_accuracy,
            "ratio": synthetic_accuracy / real_accuracy if real_accuracy else float("nan"),
            "label_agreement": label_agreement(train, synthetic, label)}


def guess_kind(real: Path) -> str:
    """'chat' for JSONL in the messages format, else 'tabular'."""
    if real.suffix.lower() in (".jsonl", ".json"):
        with real.open(encoding="utf-8", errors="replace") as lines:
            first = next((line for line in lines if line.strip()), "")
        try:
            return "chat" if "messages" in json.loads(first) else "tabular"
        except (ValueError, TypeError):
            return "tabular"
    return "tabular"


def evaluate_records(kind: str, train, holdout, synthetic, schema: Schema | None = None, target: str | None = None,
                     label: str = "intent", reference_model: str | None = REFERENCE_LM, **shared) -> Evaluation:
    """`evaluate_chats` or `evaluate_tables` by kind; `shared`: raw_pii, checks, seed, progress, canaries,
    sensitive, training."""
    if kind == "chat":
        return evaluate_chats(train, holdout, synthetic, label=label, reference_model=reference_model, **shared)
    return evaluate_tables(train, holdout, synthetic, schema=schema, target=target, **shared)


def evaluate_files(real: Path, holdout: Path, synthetic: Path, kind: str | None = None, schema: Schema | None = None,
                   canaries: CanaryTest | None = None, raw_pii: Path | None = None, thresholds: Path | None = None,
                   **options) -> Evaluation:
    """The suite on files: tables as CSV / Parquet / JSONL, conversations as JSONL; `kind` by default from the
    files; `options` as for `evaluate_records` (target, label, reference_model, seed, progress, sensitive,
    training)."""
    from llmsynth.data import read_records
    from llmsynth.evaluate.checks import checks_for
    from llmsynth.evaluate.privacy import read_raw_pii

    kind = kind or guess_kind(real)
    checks = checks_for(kind, thresholds)
    pii = read_raw_pii(raw_pii) if raw_pii is not None else None
    records = [read_records(kind, path) for path in (real, holdout, synthetic)]
    return evaluate_records(kind, *records, schema=schema, raw_pii=pii, checks=checks, canaries=canaries, **options)
