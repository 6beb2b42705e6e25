"""The release gate: one limit per figure of metrics.json. `llmsynth eval --gate` exits non-zero when a limit is not
met and always writes release.json beside the report: what was checked, each figure, the hashes of the data and the
model, library versions and the time, so that a reviewer signs a record rather than a screenshot.

A gate file is YAML, one line per figure (a figure the evaluation did not measure fails, unless `required: false`):

    privacy.dcr_share: {max: 0.6}
    privacy.membership_auc: {max: 0.6}
    training.dp_epsilon: {max: 8}
    fidelity.column_shapes: {min: 0.85}
    bias.amplification_max: {max: 1.25, required: false}

`--gate default` is every check's fail line (its warn threshold), with the privacy and fidelity figures every
evaluation measures required and the optional ones (canaries, PII replay, DP, bias, utility) applied where measured.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import math
import platform
from pathlib import Path

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from llmsynth.versions import LIBRARIES, library_versions
from llmsynth.errors import DataError
from llmsynth.evaluate.checks import Check, checks_for, figure

RELEASE_FILE = "release.json"
# Figures every evaluation of its kind measures: the default gate fails where one is missing.
REQUIRED = {
    "tabular": {"fidelity.column_shapes", "fidelity.column_pair_trends", "fidelity.detection_auc",
                "privacy.exact_match_excess", "privacy.dcr_share", "privacy.membership_auc",
                "privacy.record_risk.at_risk_excess"},
    "chat": {"fidelity.turn_length_shape", "fidelity.turn_count_shape", "privacy.verbatim_excess",
             "privacy.similarity_excess", "privacy.record_risk.at_risk_excess"},
}


class Rule(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    metric: str = Field(description="Dotted path of the figure in metrics.json.")
    at_most: float | None = Field(None, alias="max", description="The figure must not exceed this.")
    at_least: float | None = Field(None, alias="min", description="The figure must not fall below this.")
    required: bool = Field(True, description="Fail when the figure was not measured (else: skipped, and said so).")

    @model_validator(mode="after")
    def _one_limit(self) -> "Rule":
        if (self.at_most is None) == (self.at_least is None):
            raise ValueError("give exactly one of max or min")
        return self

    @property
    def limit(self) -> str:
        return f"<= {self.at_most:g}" if self.at_most is not None else f">= {self.at_least:g}"

    def status(self, value: float | None) -> str:
        if value is None:
            return "fail" if self.required else "not measured"
        met = value <= self.at_most if self.at_most is not None else value >= self.at_least
        return "pass" if met else "fail"


def default_rules(kind: str, checks: list[Check]) -> list[Rule]:
    """Every check's fail line: a figure in the 'fail' band fails the gate."""
    return [Rule(metric=check.metric, required=check.metric in REQUIRED.get(kind, set()),
                 **{"max" if check.better == "lower" else "min": check.warn_at}) for check in checks]


def describe_default(checks: list[Check]) -> str:
    """The built-in thresholds, for --help."""
    return "; ".join(f"{c.metric} {'<=' if c.better == 'lower' else '>='} {c.warn_at:g}" for c in checks)


def load_gate(source: str | Path, kind: str, checks: list[Check]) -> list[Rule]:
    """'default' or a YAML file of {metric: {max|min: x, required: bool}}."""
    if str(source) == "default":
        return default_rules(kind, checks)
    path = Path(source)
    try:
        spec = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as error:
        raise DataError(f"cannot read the gate from {path}: {error}") from None
    if not isinstance(spec, dict) or not spec:
        raise DataError(f"{path}: expected a mapping of metric name to {{max: number}} or {{min: number}}, e.g. "
                        "'privacy.dcr_share: {max: 0.6}'")
    rules = []
    for metric, limits in spec.items():
        try:
            rules.append(Rule.model_validate({"metric": metric, **(limits or {})}))
        except (ValidationError, TypeError) as error:
            problems = "; ".join(e["msg"] for e in error.errors()) if isinstance(error, ValidationError) else error
            raise DataError(f"{path}, {metric}: expected {{max: number}} or {{min: number}} (and optionally "
                            f"required: false), got {limits!r} ({problems})") from None
    return rules


def _sha256(path: Path) -> str:
    """Of a file, or of a folder's files (names and contents, in name order)."""
    digest = hashlib.sha256()
    files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
    for file in files:
        if path.is_dir():
            digest.update(str(file.relative_to(path)).encode() + b"\0")
        with file.open("rb") as stream:
            for block in iter(lambda: stream.read(1 << 20), b""):
                digest.update(block)
    return digest.hexdigest()


def release_record(rules: list[Rule], metrics: dict, gate: str, inputs: dict[str, Path], model_dir: Path | None,
                   command: list[str]) -> dict:
    """What was checked and what came out, with the hashes that tie the figures to the files they came from."""
    checked = []
    for rule in rules:
        value = figure(metrics, rule.metric)
        value = None if isinstance(value, float) and math.isnan(value) else value
        checked.append({"metric": rule.metric, "limit": rule.limit, "required": rule.required, "value": value,
                        "status": rule.status(value)})
    record = {
        "passed": all(c["status"] != "fail" for c in checked),
        "failed": [c["metric"] for c in checked if c["status"] == "fail"],
        "gate": gate,
        "checked_at": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "checks": checked,
        "inputs": {role: {"path": str(path), "sha256": _sha256(path)} for role, path in inputs.items()},
        "model": None if model_dir is None else {"path": str(model_dir), "sha256": _sha256(Path(model_dir)),
                                                 **metrics.get("training", {})},
        "command": command,
        "versions": {"python": platform.python_version(),
                     **library_versions(LIBRARIES + ("opacus", "presidio-analyzer", "scikit-learn", "scipy"))},
    }
    record["record_sha256"] = hashlib.sha256(json.dumps(record, sort_keys=True).encode()).hexdigest()
    return record


def write_release(record: dict, out_dir: str | Path) -> Path:
    from llmsynth.data.io import write_text  # pandas: not for --help, which lists the default gate

    return write_text(Path(out_dir) / RELEASE_FILE, json.dumps(record, indent=2, allow_nan=False) + "\n")


def gate_release(gate: str, metrics: dict, thresholds: str | Path | None, inputs: dict[str, Path],
                 model_dir: Path | None, out_dir: str | Path, command: list[str]) -> tuple[dict, list[tuple[str, str]]]:
    """The gate applied to an evaluation's metrics and its record written to `out_dir`; with (status, line) pairs
    for the console: each limit not met, then the verdict."""
    kind = metrics["kind"]
    rules = load_gate(gate, kind, checks_for(kind, thresholds))
    record = release_record(rules, metrics, gate, inputs, model_dir, command)
    path = write_release(record, out_dir)
    lines = [("fail", f"gate: {c['metric']} " + ("not measured" if c["value"] is None else f"{c['value']:.4g}")
              + f" (limit {c['limit']})") for c in record["checks"] if c["status"] == "fail"]
    skipped = [c["metric"] for c in record["checks"] if c["status"] == "not measured"]
    if skipped:
        lines.append(("not measured", f"gate: not measured, optional: {', '.join(skipped)}"))
    verdict = "passed" if record["passed"] else f"FAILED on {', '.join(record['failed'])}"
    lines.append(("pass" if record["passed"] else "fail", f"release gate {verdict} -> {path}"))
    return record, lines
