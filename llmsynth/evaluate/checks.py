"""Pass / warn / fail verdicts: each check reads one figure of metrics.json against two thresholds.

The defaults are starting points; a user overrides any of them from a YAML file (`llmsynth eval --thresholds`):

    privacy.dcr_share: {pass: 0.52, warn: 0.6}
    utility.ratio: {pass: 0.95}
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from llmsynth.errors import DataError

VERDICTS = ("pass", "warn", "fail")


class Check(BaseModel):
    model_config = ConfigDict(frozen=True, populate_by_name=True, extra="forbid")

    metric: str = Field(description="Dotted path of the figure in metrics.json.")
    better: Literal["higher", "lower"]
    pass_at: float = Field(alias="pass", description="At or beyond this the check passes.")
    warn_at: float = Field(alias="warn", description="At or beyond this (but short of pass) it warns; else fails.")
    meaning: str = ""

    def verdict(self, value: float | None) -> str | None:
        """None where the figure was not computed (no target column, no raw PII file)."""
        if value is None or (isinstance(value, float) and math.isnan(value)):
            return None
        sign = 1 if self.better == "higher" else -1
        if sign * value >= sign * self.pass_at:
            return "pass"
        return "warn" if sign * value >= sign * self.warn_at else "fail"


def _check(metric: str, better: str, pass_at: float, warn_at: float, meaning: str) -> Check:
    return Check(metric=metric, better=better, pass_at=pass_at, warn_at=warn_at, meaning=meaning)


_SHARED = [
    _check("privacy.pii_replay.excess", "lower", 0.005, 0.02,
           "raw PII values found in synthetic output beyond those found in as many holdout records"),
    _check("privacy.record_risk.at_risk_excess", "lower", 0.01, 0.03,
           "training records a synthetic record is closer to than to 99% of holdout records, beyond the 1% of chance"),
    _check("canaries.exposure_excess", "lower", 4, 8,
           "bits of exposure of the most-inserted canaries over never-inserted ones (Carlini et al.)"),
    _check("canaries.extracted", "lower", 0, 0, "inserted canaries whose secret came out of sampling"),
    _check("canaries.dp_audit.bound_over_accountant", "lower", 0, 0,
           "the audit's lower bound on epsilon minus the accountant's: above 0, DP is broken or misaccounted"),
    _check("bias.gap_excess_low_max", "lower", 0.02, 0.05,
           "growth of a parity gap (synthetic minus real) that the bootstrap is 97.5% sure of, largest over columns"),
    _check("training.dp_epsilon", "lower", 4, 10, "epsilon spent by differentially private training"),
]
TABLE_CHECKS = [
    _check("fidelity.column_shapes", "higher", 0.85, 0.75, "mean KS / TV complement over columns (1 = same)"),
    _check("fidelity.column_pair_trends", "higher", 0.85, 0.75, "mean correlation / contingency similarity"),
    _check("fidelity.detection_auc", "lower", 0.75, 0.9, "a classifier telling synthetic from holdout (0.5 = cannot)"),
    _check("utility.ratio", "higher", 0.9, 0.8, "train-on-synthetic score over train-on-real score, on the holdout"),
    _check("privacy.exact_match_excess", "lower", 0.01, 0.05, "exact copies of training rows beyond the holdout's rate"),
    _check("privacy.dcr_share", "lower", 0.55, 0.65, "synthetic rows closer to train than to holdout (0.5 ideal)"),
    _check("privacy.membership_auc", "lower", 0.55, 0.6, "nearest-neighbour membership attack (0.5 = no signal)"),
    *_SHARED,
]
CHAT_CHECKS = [
    _check("fidelity.turn_length_shape", "higher", 0.85, 0.75, "KS complement of turn lengths in characters"),
    _check("fidelity.turn_count_shape", "higher", 0.85, 0.75, "KS complement of turns per conversation"),
    _check("fidelity.label_shape", "higher", 0.85, 0.75, "TV complement of the label (intent) distribution"),
    _check("fidelity.distinct_2_gap", "lower", 0.2, 0.35, "|distinct-2 synthetic / real - 1|"),
    _check("utility.ratio", "higher", 0.9, 0.8, "label classifier trained on synthetic over trained on real"),
    _check("coherence.name_consistency.customer.synthetic", "higher", 0.95, 0.8,
           "conversations where the agent calls the customer only by the name the customer gave"),
    _check("coherence.name_consistency.agent.synthetic", "higher", 0.95, 0.8,
           "conversations where the agent gives one name and is called only by it"),
    _check("coherence.reference_perplexity.ratio", "lower", 1.15, 1.5,
           "perplexity of synthetic over holdout conversations under an untuned reference LM"),
    _check("coherence.sentence_embeddings.classifier_auc.synthetic", "lower", 0.75, 0.9,
           "a classifier on sentence embeddings telling synthetic from holdout conversations (0.5 ideal)"),
    _check("privacy.verbatim_excess", "lower", 0.01, 0.05,
           "long synthetic turns that repeat a training turn, beyond the holdout's rate"),
    _check("privacy.similarity_excess", "lower", 0.05, 0.1,
           "mean nearest-training-conversation similarity, synthetic minus holdout"),
    *_SHARED,
]


def figure(metrics: dict, path: str) -> float | None:
    value = metrics
    for key in path.split("."):
        if not isinstance(value, dict) or key not in value:
            return None
        value = value[key]
    return value if isinstance(value, (int, float)) else None


def run_checks(metrics: dict, checks: list[Check]) -> list[dict]:
    """One row per check that has its figure: metric, value, verdict, thresholds and meaning."""
    rows = []
    for check in checks:
        value = figure(metrics, check.metric)
        verdict = check.verdict(value)
        if verdict is not None:
            rows.append({"metric": check.metric, "value": value, "verdict": verdict, "better": check.better,
                         "pass": check.pass_at, "warn": check.warn_at, "meaning": check.meaning})
    return rows


def checks_for(kind: str, thresholds: str | Path | None = None) -> list[Check]:
    """The checks of a kind of data, with the thresholds a YAML file overrides (None: the defaults)."""
    checks = CHAT_CHECKS if kind == "chat" else TABLE_CHECKS
    return checks if thresholds is None else load_thresholds(thresholds, checks)


def load_thresholds(path: str | Path, checks: list[Check]) -> list[Check]:
    """The checks with the thresholds a YAML file overrides."""
    path = Path(path)
    try:
        overrides = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except (OSError, yaml.YAMLError) as error:
        raise DataError(f"cannot read thresholds from {path}: {error}") from None
    return apply_thresholds(overrides, checks, str(path))


def apply_thresholds(overrides: dict, checks: list[Check], source: str) -> list[Check]:
    """The checks with `overrides` ({metric: {pass: x, warn: y}}) applied; an unknown metric name is an error, not
    a silent no-op. `source` names where the overrides came from, for messages."""
    if not isinstance(overrides, dict):
        raise DataError(f"{source}: expected a mapping of metric name to {{pass: ..., warn: ...}}")
    known = {check.metric: check for check in checks}
    unknown = sorted(set(overrides) - set(known))
    if unknown:
        raise DataError(f"{source}: unknown metric(s) {unknown}; the checks are {sorted(known)}")
    updated = []
    for check in checks:
        change = overrides.get(check.metric) or {}
        try:
            updated.append(Check.model_validate({**check.model_dump(by_alias=True), **change}))
        except (ValidationError, TypeError):
            raise DataError(f"{source}, {check.metric}: expected {{pass: number, warn: number}}, "
                            f"got {change!r}") from None
    return updated
