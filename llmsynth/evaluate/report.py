"""The evaluation written out: metrics.json for machines, report.html (one self-contained file, figures inlined as
PNG, no scripts) for people, and the console summary."""

from __future__ import annotations

import base64
import html
import io
import json
import math
from pathlib import Path

import numpy as np
import pandas as pd

from llmsynth.data.io import write_text
from llmsynth.data.relational import Database
from llmsynth.data.schema import Schema
from llmsynth.evaluate.coherence import coherence_rows
from llmsynth.evaluate.features import as_numbers, is_continuous, typed
from llmsynth.evaluate.suite import Evaluation

_COLORS = {"real": "#4c72b0", "synthetic": "#dd8452", "holdout": "#55a868"}
_VERDICT_COLORS = {"pass": "#2e7d32", "warn": "#b26a00", "fail": "#c62828"}
_MAX_CATEGORIES = 20
_SHOWN_TRENDS = 15  # parent-child pairs in a child table's section (all of them in metrics.json)
RELATIONAL_SUMMARY = (("referential_integrity", "referential integrity"),
                      ("children_per_parent", "children per parent (KS complement, worst)"),
                      ("parent_child_trend_gap_max", "parent-child trends: largest gap"),
                      ("parent_child_trend_gap_mean", "parent-child trends: mean gap"),
                      ("detection_auc_max", "detection AUC, worst table (0.5: unseen)"))
_DEFINITIONS = """
<h2>Definitions</h2>
<ul>
<li><b>Column shapes</b>: 1 - Kolmogorov-Smirnov statistic (numbers, dates) or 1 - total variation distance (categories),
averaged over columns; SDMetrics' KSComplement / TVComplement.</li>
<li><b>Column pair trends</b>: 1 - |r<sub>real</sub> - r<sub>synthetic</sub>| / 2 for two continuous columns (Pearson),
else 1 - total variation distance of the joint frequencies (continuous columns in 10 bins); averaged over pairs whose real
|r| &gt; 0.5 or Cram&eacute;r's V &gt; 0.3, as SDMetrics' QualityReport does.</li>
<li><b>Detection AUC</b>: 5-fold cross-validated ROC AUC of gradient boosting telling synthetic rows from holdout rows
(C2ST); 0.5 means indistinguishable.</li>
<li><b>Utility</b>: gradient boosting trained on synthetic rows and on training rows, both tested on the holdout (TSTR
vs TRTR); ratio of ROC AUC (categorical target) or R&sup2; (numeric target). For conversations, a TF-IDF + logistic
regression label classifier, ratio of accuracies.</li>
<li><b>Exact matches</b>: synthetic rows equal to a training row, next to holdout rows equal to a training row.</li>
<li><b>DCR share</b>: synthetic rows closer to the training rows than to the holdout (training rows subsampled to the
holdout's size); 0.5 is ideal, a copier of the training rows scores up to 1. Distance: numbers scaled by the training
range, categories one-hot, a mismatch or a missing value counting like a full range.</li>
<li><b>NNDR</b>: distance to the nearest over the second-nearest training row, median; next to the holdout's.</li>
<li><b>Membership AUC</b>: ROC AUC of guessing that a row was in training when a synthetic row lies close to it; 0.5
means no signal.</li>
<li><b>PII replay</b>: raw source PII values (<code>llmsynth scrub --raw-pii</code>) found as whole words in the synthetic
output, against as many holdout records; only counts are shown.</li>
<li><b>Records at risk</b>: for each training row, its distance to the nearest synthetic row over its distance to the
nearest holdout row (conversations: similarity to the nearest synthetic one), ranked among the holdout records' own
(the holdout percentile); under 0.01 the synthetic data single it out. About 1% fall there by chance.</li>
<li><b>Bias audit</b>: the rate of the outcome per group of a sensitive column; parity gap = highest minus lowest rate
over groups with 30+ training rows; amplification = synthetic gap / real gap; 95% bootstrap intervals. Downstream:
accuracy and false-positive-rate gaps between groups of models trained on real and on synthetic rows.</li>
<li><b>Conversations</b>: KS complement of turn lengths and turns per conversation, TV complement of the label,
distinct-2 (Li et al. 2016) on equal numbers of bigrams, Fr&eacute;chet distance and MMD on TF-IDF + SVD embeddings, nearest training conversation
similarity (TF-IDF cosine), verbatim copies of training turns longer than 40 characters, word 8-grams shared with the
training conversations and the longest run of words shared with one of them (holdout figures beside).</li>
<li><b>Canaries</b> (Carlini et al. 2019, "The Secret Sharer"): random secrets put into the training data a chosen number
of times after scrubbing. Exposure = log<sub>2</sub>|R| - log<sub>2</sub> rank of the secret's likelihood among all |R|
secrets of its format; never-inserted references show chance (about 1.4 bits). Extraction: sampling after the canary's
prefix, and the bulk synthetic sample, searched for the secret; 1 - (1 - p)<sup>N</sup> is the chance of emitting it in N
prompted samples. DP audit (Steinke, Nasr and Jagielski 2023): canaries each inserted once or not by a coin flip,
guessed in or out by likelihood; the right guesses give a lower bound on epsilon at 95% confidence.</li>
</ul>
"""


def _clean(value):
    """JSON has no NaN: a figure that could not be computed is null."""
    if isinstance(value, dict):
        return {str(k): _clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_clean(v) for v in value]
    if isinstance(value, (float, np.floating)):
        return None if math.isnan(value) else float(value)
    if isinstance(value, np.integer):
        return int(value)
    return value


def metrics_json(metrics: dict) -> str:
    return json.dumps(_clean(metrics), indent=2, allow_nan=False)


def summary_lines(evaluation: Evaluation) -> list[tuple[str, str]]:
    """(verdict, line) per check, for the console."""
    lines = []
    for check in evaluation.checks:
        sign = ">=" if check["better"] == "higher" else "<="
        lines.append((check["verdict"], f"{check['verdict'].upper():<5} {check['metric']:<32} {check['value']:.3f}  "
                                        f"(pass {sign} {check['pass']:g}, warn {sign} {check['warn']:g})"))
    return lines


def _figure_html(figure, title: str) -> str:
    import matplotlib.pyplot as plt

    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=80, bbox_inches="tight")
    plt.close(figure)
    data = base64.b64encode(buffer.getvalue()).decode()
    return f'<figure><img alt="{html.escape(title)}" src="data:image/png;base64,{data}"></figure>'


def _axes(count: int, columns: int = 3, size: tuple[float, float] = (4.2, 3.0)):
    import matplotlib.pyplot as plt

    rows = max(1, math.ceil(count / columns))
    figure, axes = plt.subplots(rows, columns, figsize=(size[0] * columns, size[1] * rows), squeeze=False,
                                layout="constrained")
    for axis in axes.ravel()[count:]:
        axis.set_visible(False)
    return figure, axes.ravel()


def _compare_values(axis, real: pd.Series, synthetic: pd.Series, continuous: bool, title: str) -> None:
    """Real vs synthetic: overlaid density histograms for numbers, side-by-side bars for the top categories."""
    axis.set_title(title, fontsize=10)
    if continuous:
        r, s = real.dropna(), synthetic.dropna()
        if len(r) and len(s):
            bins = np.histogram_bin_edges(as_numbers(pd.concat([r, s])), bins=30)
            if pd.api.types.is_datetime64_any_dtype(r):  # dates stay dates on the axis, slanted to fit
                bins = pd.to_datetime(bins)
                axis.tick_params(axis="x", labelrotation=40, labelsize=7)
            for values, role in ((r, "real"), (s, "synthetic")):
                axis.hist(values, bins=bins, density=True, alpha=0.55, color=_COLORS[role], label=role,
                          histtype="stepfilled")
    else:
        p = real.astype(str).value_counts(normalize=True)
        q = synthetic.astype(str).value_counts(normalize=True)
        top = p.add(q, fill_value=0).sort_values(ascending=False).index[:_MAX_CATEGORIES]
        positions = np.arange(len(top))
        axis.bar(positions - 0.2, p.reindex(top, fill_value=0), 0.4, color=_COLORS["real"], label="real")
        axis.bar(positions + 0.2, q.reindex(top, fill_value=0), 0.4, color=_COLORS["synthetic"], label="synthetic")
        axis.set_xticks(positions, [str(t)[:12] for t in top], rotation=60, ha="right", fontsize=7)
    axis.legend(fontsize=7)


def _table_figures(plots: dict) -> list[str]:
    import matplotlib.pyplot as plt

    real, synthetic, schema = plots["real"], plots["synthetic"], plots["schema"]
    columns = schema.learned
    figure, axes = _axes(len(columns))
    for axis, column in zip(axes, columns):
        _compare_values(axis, real[column.name], synthetic[column.name], is_continuous(column), column.name)
    parts = ["<h2>Distributions per column</h2>", _figure_html(figure, "distributions per column")]

    numeric = [c.name for c in columns if is_continuous(c)]
    if len(numeric) >= 2:
        correlations = [t[numeric].apply(as_numbers).corr() for t in (real, synthetic)]
        figure, axes = plt.subplots(1, 3, figsize=(15, 4.6), layout="constrained")
        for axis, matrix, title, limits in zip(
                axes, [*correlations, (correlations[0] - correlations[1]).abs()],
                ["real", "synthetic", "|real - synthetic|"], [(-1, 1), (-1, 1), (0, 1)]):
            image = axis.imshow(matrix, vmin=limits[0], vmax=limits[1], cmap="coolwarm" if limits[0] < 0 else "Reds")
            axis.set_xticks(range(len(numeric)), numeric, rotation=60, ha="right", fontsize=7)
            axis.set_yticks(range(len(numeric)), numeric, fontsize=7)
            axis.set_title(f"Pearson correlation: {title}", fontsize=10)
            figure.colorbar(image, ax=axis, fraction=0.046)
        parts += ["<h2>Correlations (numbers and dates)</h2>", _figure_html(figure, "correlation matrices")]

    distances = plots["distances"]
    figure, axis = plt.subplots(figsize=(7, 3.6))
    top = np.quantile(np.concatenate(list(distances.values())), 0.99) or 1.0
    bins = np.linspace(0, top, 40)
    for label, color in (("synthetic_to_train", _COLORS["synthetic"]), ("synthetic_to_holdout", _COLORS["real"]),
                         ("holdout_to_train", _COLORS["holdout"])):
        axis.hist(np.clip(distances[label], 0, top), bins=bins, density=True, histtype="step", linewidth=2,
                  color=color, label=label.replace("_", " "))
    axis.set_xlabel("distance to closest record")
    axis.legend(fontsize=8)
    parts += ["<h2>Distance to closest record</h2>", _figure_html(figure, "DCR histograms")]
    return parts


def _chat_figures(plots: dict) -> list[str]:
    panels = [("turn length (characters)", *plots["turn_lengths"], True),
              ("turns per conversation", *plots["turn_counts"], False)]
    if "labels" in plots:
        label, real, synthetic = plots["labels"]
        panels.append((label, real, synthetic, False))
    figure, axes = _axes(len(panels))
    for axis, (title, real, synthetic, continuous) in zip(axes, panels):
        _compare_values(axis, pd.Series(real), pd.Series(synthetic), continuous, title)
    parts = ["<h2>Lengths, turns and labels</h2>", _figure_html(figure, "conversation distributions")]

    import matplotlib.pyplot as plt

    figure, axis = plt.subplots(figsize=(7, 3.6))
    bins = np.linspace(0, 1, 41)
    for role, color in (("synthetic", _COLORS["synthetic"]), ("holdout", _COLORS["holdout"])):
        axis.hist(plots["similarity"][role], bins=bins, density=True, histtype="step", linewidth=2, color=color,
                  label=f"{role} to nearest training conversation")
    axis.set_xlabel("TF-IDF cosine similarity (1 = copy)")
    axis.legend(fontsize=8)
    parts += ["<h2>Similarity to the training conversations</h2>", _figure_html(figure, "similarity histograms")]
    return parts


def _canary_section(canaries: dict) -> list[str]:
    """Exposure per insertion count beside the never-inserted references, and what sampling gave away."""
    import matplotlib.pyplot as plt

    groups = canaries["by_insertions"]
    audit = canaries.get("dp_audit")
    audit_line = [] if audit is None else [
        f"<p>DP audit (Steinke et al. 2023, one run): {audit['canaries']} canaries, each inserted once or not by a "
        f"coin flip ({audit['inserted']} in); {audit['correct']} of {audit['guesses']} membership guesses right; "
        f"lower bound on epsilon at {audit['confidence']:.0%} confidence: <b>{audit['epsilon_lower_bound']:.2f}</b>"
        + ("" if audit["accountant_epsilon"] is None else f", the accountant's epsilon {audit['accountant_epsilon']:.2f}")
        + f" (delta {audit['delta']:.2g}).</p>"]
    if not groups:
        return ["<h2>Canaries: DP audit</h2>", *audit_line]
    header = ("inserted", "canaries", "exposure (bits)", "highest", "empirical", "p(secret | prefix)",
              "prompted hits", "bulk hits", "P(emitted in 10^6 prompts)")
    keys = ("inserted", "canaries", "exposure", "exposure_max", "exposure_empirical", "p_secret", "prompted_hits",
            "bulk_hits", "emission_probability_1m")
    rows = "".join("<tr>" + "".join(f"<td>{g[k]:.3g}</td>" if isinstance(g[k], float) else f"<td>{g[k]}</td>"
                                    for k in keys) + "</tr>" for g in groups)
    figure, axis = plt.subplots(figsize=(7, 3.6))
    inserted = [g for g in groups if g["inserted"]]
    axis.plot([g["inserted"] for g in inserted], [g["exposure"] for g in inserted], "o-", color=_COLORS["synthetic"],
              label="inserted canaries")
    reference = next((g["exposure"] for g in groups if not g["inserted"]), None)
    if reference is not None:
        axis.axhline(reference, color=_COLORS["holdout"], linestyle="--", label="never inserted (references)")
    axis.axhline(canaries["space_bits"], color="#888", linestyle=":", label="most possible (secret fully exposed)")
    axis.set_xscale("log")
    axis.set_xlabel("copies in the training data")
    axis.set_ylabel("exposure (bits)")
    axis.legend(fontsize=8)
    return ["<h2>Canaries: what the model memorized</h2>", *audit_line,
            f"<p>Secrets of the format {html.escape(canaries['format'])}, ranked among "
            f"{canaries['candidates_scored']:,} random candidates (skew-normal extrapolation to all 2^"
            f"{canaries['space_bits']:.1f}); {canaries['prompted_samples']} samples after each canary's prefix at "
            f"temperature {canaries['temperature']:g}, and {canaries['bulk_records']:,} synthetic records searched."
            "</p>",
            "<table><tr>" + "".join(f"<th>{h}</th>" for h in header) + f"</tr>{rows}</table>",
            _figure_html(figure, "canary exposure")]


def _interval_text(figure: dict) -> str:
    return f"{figure['value']:.3f} [{figure['low']:.3f}, {figure['high']:.3f}]"


def _bias_section(bias: dict) -> list[str]:
    """Per sensitive column: the positive rate per group in each data set, the parity gaps with their intervals, and
    the per-group errors of models trained on real and on synthetic rows; one bar chart of the rates."""
    import matplotlib.pyplot as plt

    parts = ["<h2>Bias audit</h2>", f"<p>Outcome: {html.escape(bias['positive'])}. Parity gap: the highest minus the "
             f"lowest rate over groups with at least {bias['min_group_rows']} training rows; 95% bootstrap intervals "
             f"from {bias['resamples']} resamples.</p>"]
    audited = {name: audit for name, audit in bias["columns"].items() if "skipped" not in audit}
    for name, audit in bias["columns"].items():
        parts.append(f"<h3>{html.escape(name)}</h3>")
        if name not in audited:
            parts.append(f'<p class="warning">{html.escape(audit["skipped"])}</p>')
            continue
        rows = "".join(
            f"<tr><td>{html.escape(g['group'])}{'' if g['in_gap'] else ' (too few rows: not in the gap)'}</td>"
            + "".join(f"<td>{g['rows'][role]:,}</td><td>{g['rate'][role]:.3f}</td>" for role in ("real", "holdout",
                                                                                                   "synthetic"))
            + "</tr>" for g in audit["groups"])
        parts.append("<table><tr><th>group</th><th>real rows</th><th>real rate</th><th>holdout rows</th>"
                     f"<th>holdout rate</th><th>synthetic rows</th><th>synthetic rate</th></tr>{rows}</table>")
        gaps = audit["parity_gap"]
        parts.append(f"<p>Parity gap: real {_interval_text(gaps['real'])}, holdout {_interval_text(gaps['holdout'])}, "
                     f"synthetic {_interval_text(gaps['synthetic'])}; synthetic minus real "
                     f"{_interval_text(audit['gap_excess'])}; amplification (synthetic / real) "
                     f"{_interval_text(audit['amplification'])}.</p>")
        if "downstream" in audit:
            parts.append("<table><tr><th>model trained on</th><th>accuracy gap</th><th>false-positive-rate gap</th>"
                         "</tr>" + "".join(f"<tr><td>{role.split('_')[0]} rows</td><td>{d['accuracy_gap']:.3f}</td>"
                                           f"<td>{d['false_positive_rate_gap']:.3f}</td></tr>"
                                           for role, d in audit["downstream"].items()) + "</table>")
    if audited:
        figure, axes = _axes(len(audited))
        for axis, (name, audit) in zip(axes, audited.items()):
            positions = np.arange(len(audit["groups"]))
            for offset, role in zip((-0.27, 0, 0.27), ("real", "holdout", "synthetic")):
                axis.bar(positions + offset, [g["rate"][role] for g in audit["groups"]], 0.27, color=_COLORS[role],
                         label=role)
            axis.set_xticks(positions, [g["group"][:14] for g in audit["groups"]], rotation=40, ha="right",
                            fontsize=7)
            axis.set_title(f"{name}: rate of {bias['positive']}", fontsize=9)
            axis.legend(fontsize=7)
        parts.append(_figure_html(figure, "positive rate per group"))
    plt.close("all")
    return parts


def _risk_section(risk: dict) -> list[str]:
    """The training records the synthetic data exposes most (record_risk.csv has them all)."""
    unit = next(unit for unit in ("conversations", "families", "records") if unit in risk)
    shown = risk["most_exposed"]
    header = "".join(f"<th>{html.escape(key.replace('_', ' '))}</th>" for key in shown[0]) if shown else ""
    rows = "".join("<tr>" + "".join(f"<td>{v:.4g}</td>" if isinstance(v, float) else f"<td>{v}</td>"
                                    for v in record.values()) + "</tr>" for record in shown)
    return [f"<h2>{unit.capitalize()} most at risk</h2>",
            f"<p>{risk['at_risk']:,} of {risk[unit]:,} training {unit} ({risk['at_risk_share']:.2%}) have a synthetic "
            f"record closer to them than 99% of the holdout's records have; {risk['expected_share']:.1%} would by "
            "chance. The "
            "most exposed (record: its number among the training records; all of them in record_risk.csv, to drop "
            f"or fix before release):</p><table><tr>{header}</tr>{rows}</table>"]


def _coherence_section(figures: dict) -> list[str]:
    def shown(value) -> str:
        return "n/a" if value is None else f"{value:.4g}"

    rows = "".join(f"<tr><td>{html.escape(name)}</td><td>{shown(s)}</td><td>{shown(h)}</td></tr>"
                   for name, s, h in coherence_rows(figures))
    skipped = [f'<p class="warning">{html.escape(part)}: {html.escape(value["skipped"])}</p>'
               for part, value in figures.items() if "skipped" in value]
    return ["<h2>Coherence</h2>", "<table><tr><th>figure</th><th>synthetic</th><th>real holdout</th></tr>"
            f"{rows}</table>", *skipped]


def _figures_table(section: dict) -> str:
    rows = []
    for key, value in section.items():
        if isinstance(value, dict) and (len(value) > 12 or any(isinstance(v, (dict, list)) for v in value.values())):
            continue  # per-column, per-pair and per-record detail: in metrics.json and its own section
        if isinstance(value, float):
            value = "n/a" if math.isnan(value) else f"{value:.4f}"
        elif isinstance(value, dict):
            value = ", ".join(f"{k}: {v:.4g}" if isinstance(v, float) else f"{k}: {v}" for k, v in value.items())
        rows.append(f"<tr><td>{html.escape(key)}</td><td>{html.escape(str(value))}</td></tr>")
    return f"<table>{''.join(rows)}</table>"


_STYLE = """
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 1300px; color: #222; padding: 0 1em; }
table { border-collapse: collapse; margin: 0.5em 0 1.5em; }
td, th { border: 1px solid #ccc; padding: 4px 10px; text-align: left; font-size: 14px; }
.verdict { color: white; font-weight: bold; }
figure { margin: 0.5em 0; } img { max-width: 100%; }
.warning { background: #fff3cd; padding: 0.5em 1em; border-left: 4px solid #b26a00; }
"""


def report_html(evaluation: Evaluation, title: str = "llmsynth evaluation") -> str:
    import matplotlib

    matplotlib.use("Agg")
    metrics = evaluation.metrics
    counts = metrics.get("rows") or metrics.get("conversations")
    parts = [f"<h1>{html.escape(title)}</h1>",
             "<p>" + ", ".join(f"{k}: {v:,}" for k, v in counts.items()) + f" ({metrics['kind']})</p>"]
    parts += [f'<p class="warning">{html.escape(w)}</p>' for w in metrics["warnings"]]
    rows = "".join(
        f'<tr><td class="verdict" style="background:{_VERDICT_COLORS[c["verdict"]]}">{c["verdict"]}</td>'
        f'<td>{html.escape(c["metric"])}</td><td>{c["value"]:.4f}</td>'
        f'<td>{"&ge;" if c["better"] == "higher" else "&le;"} {c["pass"]:g} / {c["warn"]:g}</td>'
        f'<td>{html.escape(c["meaning"])}</td></tr>' for c in evaluation.checks)
    parts.append("<h2>Checks</h2><table><tr><th>verdict</th><th>metric</th><th>value</th>"
                 f"<th>pass / warn at</th><th>meaning</th></tr>{rows}</table>")
    for section in ("fidelity", "utility", "privacy"):
        if section in metrics:
            parts += [f"<h2>{section.capitalize()}</h2>", _figures_table(metrics[section])]
    if "record_risk" in metrics.get("privacy", {}):
        parts += _risk_section(metrics["privacy"]["record_risk"])
    if "coherence" in metrics:
        parts += _coherence_section(metrics["coherence"])
    parts += _table_figures(evaluation.plots) if metrics["kind"] == "tabular" else _chat_figures(evaluation.plots)
    if "bias" in metrics:
        parts += _bias_section(metrics["bias"])
    if "canaries" in metrics:
        parts += _canary_section(metrics["canaries"])
    parts.append(_DEFINITIONS)
    return (f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>'
            f"<style>{_STYLE}</style></head><body>{''.join(parts)}</body></html>\n")


def write_report(evaluation: Evaluation, out_dir: str | Path) -> tuple[Path, Path]:
    """metrics.json, report.html and record_risk.csv (every training record's risk, most exposed first) in
    `out_dir`, each written whole or not at all."""
    out_dir = Path(out_dir)
    if evaluation.records is not None:
        write_text(out_dir / "record_risk.csv", evaluation.records.to_csv(index=False, float_format="%.6g"))
    metrics_path = write_text(out_dir / "metrics.json", metrics_json(evaluation.metrics) + "\n")
    report_path = write_text(out_dir / "report.html", report_html(evaluation))
    return metrics_path, report_path


_RELATIONAL_DEFINITIONS = """
<h2>Definitions</h2>
<ul>
<li><b>Referential integrity</b>: child rows whose foreign key names a row of their parent table.</li>
<li><b>Children per parent</b>: 1 - Kolmogorov-Smirnov statistic between the real and synthetic numbers of child rows
per parent row (the worst child table in the summary).</li>
<li><b>Parent-child trends</b>: for each parent column (numbers; each category of a categorical as 0/1) and each
aggregate of its children (their count, the mean of each numeric column, the share of each category), the Pearson
correlation over parent rows, real and synthetic; the gap is their absolute difference.</li>
<li><b>Sequences</b>: gaps (1 - KS statistic of the steps of the order column within a parent), lag-1 autocorrelation
of numeric columns within a parent, and 1 - total variation distance of the (before, now) pairs of each categorical
column.</li>
<li><b>Detection AUC</b>: 5-fold cross-validated ROC AUC of gradient boosting telling synthetic rows from real ones
(0.5 means indistinguishable), per table with each row beside its ancestors' columns, folds keeping a root entity's
rows together; families: one summary row per root entity (row counts, means, category shares).</li>
<li><b>DCR share of families</b>: synthetic families (summary rows as above) nearer a training family than any holdout
family, training families subsampled to the holdout's number; 0.5 is ideal, a copier scores more.</li>
<li><b>Exact family matches</b>: synthetic families equal to a training family row for row in every learned column
(keys and identifiers are written fresh), next to holdout families equal to one.</li>
<li><b>Families at risk</b>: per training root entity, its summary's distance to the nearest synthetic family over its
distance to the nearest holdout family, ranked among the holdout families' own; under 0.01 the synthetic data single
it out (about 1% by chance).</li>
</ul>
"""


def relational_html(metrics: dict, real: Database, synthetic: Database, title: str = "llmsynth evaluation") -> str:
    """Related tables: the figures beside the real holdout's, privacy per root entity, each child table's trends and
    sequences, and plots of every table's columns, children per parent and sequence gaps, real against synthetic."""
    import matplotlib

    matplotlib.use("Agg")
    ours, chance, risk = metrics["synthetic"], metrics["holdout"], metrics["record_risk"]
    parts = [f"<h1>{html.escape(title)}</h1>", "<p>" + ", ".join(
        f"{name}: {len(real.tables[name]):,} real, {len(synthetic.tables[name]):,} synthetic rows"
        for name in real.parents_first()) + " (relational)</p>"]
    rows = [(label, ours[key], chance[key]) for key, label in RELATIONAL_SUMMARY]
    rows += [(f"detection AUC: {name}", ours["detection_auc"][name], chance["detection_auc"][name])
             for name in ours["detection_auc"]]
    parts += ["<h2>Summary</h2><p>Each figure for the synthetic data and, beside it, for the real holdout (what real "
              "data the model never saw scores against the same training data).</p>",
              _rows_table(("figure", "synthetic", "real holdout"), rows),
              "<h2>Privacy per root entity</h2>",
              _rows_table(("figure", "synthetic", "real holdout"), [
                  ("DCR share of families (0.5 ideal)", risk["dcr_share"], None),
                  ("families equal to a training family", risk["exact_family_matches"]["synthetic"],
                   risk["exact_family_matches"]["holdout"]),
                  ("training families with a synthetic summary at distance 0", risk["near_copies"], None)]),
              *_risk_section(risk)]
    for name, figures in ours["tables"].items():
        parts += _child_table_section(name, figures, chance["tables"][name])
    parts += _relational_figures(real, synthetic)
    parts.append(_RELATIONAL_DEFINITIONS)
    return (f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>'
            f"<style>{_STYLE}</style></head><body>{''.join(parts)}</body></html>\n")


def _rows_table(header: tuple[str, ...], rows: list[tuple]) -> str:
    def cell(value) -> str:
        if value is None or (isinstance(value, float) and math.isnan(value)):
            return "n/a"
        return f"{value:.3f}" if isinstance(value, float) else html.escape(str(value))

    return ("<table><tr>" + "".join(f"<th>{html.escape(h)}</th>" for h in header) + "</tr>"
            + "".join("<tr>" + "".join(f"<td>{cell(v)}</td>" for v in row) + "</tr>" for row in rows) + "</table>")


def _child_table_section(name: str, ours: dict, chance: dict) -> list[str]:
    """A child table's figures: the parent-child trends furthest from the real ones first, and its sequences."""
    parts = [f"<h2>Table {html.escape(name)}</h2>", _rows_table(("figure", "synthetic", "real holdout"), [
        (label, ours[key], chance[key]) for key, label in (
            ("referential_integrity", "referential integrity"), ("children_per_parent", "children per parent"),
            ("ordered", "sequences in order"), ("gaps", "gaps between events (KS complement)")) if key in ours])]
    trends = sorted(ours["parent_child_trends"].items(), key=lambda item: -abs(item[1]["real"] - item[1]["synthetic"]))
    if trends:
        parts += [f"<h3>Parent-child trends, largest gap first ({min(len(trends), _SHOWN_TRENDS)} of {len(trends)})</h3>",
                  _rows_table(("parent column ~ children's aggregate", "real", "synthetic", "real holdout", "gap"), [
                      (pair, t["real"], t["synthetic"], chance["parent_child_trends"].get(pair, {}).get("synthetic"),
                       abs(t["real"] - t["synthetic"])) for pair, t in trends[:_SHOWN_TRENDS]])]
    if "transitions" in ours:
        parts += ["<h3>Sequences</h3>", _rows_table(("column", "figure", "synthetic", "real holdout"), [
            *((column, "category transitions (TV complement)", value, chance["transitions"].get(column))
              for column, value in ours["transitions"].items()),
            *((column, f"lag-1 autocorrelation (real {value['real']:.3f})", value["synthetic"],
               chance["lag1_autocorrelation"].get(column, {}).get("synthetic"))
              for column, value in ours["lag1_autocorrelation"].items())])]
    return parts


def _relational_figures(real: Database, synthetic: Database) -> list[str]:
    """Per table its columns real against synthetic; per child table beside them its children per parent and, for
    a sequence, the gaps in the order column's unit."""
    from llmsynth.data.families import NANOSECONDS, TIME_UNITS, gap_unit
    from llmsynth.evaluate.relational import learned_schema, sequence_gaps

    parts = []
    for name in real.parents_first():
        spec = real.layout.tables[name]
        schema = learned_schema(real.tables[name].drop(columns=spec.keys))
        schema = Schema(columns=[c for c in schema.columns if c.kind != "text"])  # free text has no plot here
        frames = [typed(database.tables[name], schema) for database in (real, synthetic)]
        panels = [(column.name, frames[0][column.name], frames[1][column.name], is_continuous(column))
                  for column in schema.columns]
        if spec.parent:
            panels.append((f"{name} per {spec.parent} row", real.children_per_parent(name),
                           synthetic.children_per_parent(name), True))
        if spec.order_by and spec.parent:
            unit = gap_unit(real.tables[name][spec.order_by])
            scale = NANOSECONDS * TIME_UNITS[unit] if unit else 1
            panels.append((f"{spec.order_by} gap" + (f" ({unit})" if unit else ""),
                           sequence_gaps(real, name) / scale, sequence_gaps(synthetic, name) / scale, True))
        if not panels:
            continue
        figure, axes = _axes(len(panels))
        for axis, (title, real_values, synthetic_values, continuous) in zip(axes, panels):
            _compare_values(axis, real_values, synthetic_values, continuous, title)
        parts += [f"<h2>Distributions: {html.escape(name)}</h2>", _figure_html(
            figure, f"{name}, real against synthetic: " + ", ".join(title for title, *_ in panels))]
    return parts


def _frontier_figure(sweep: dict):
    """Utility, privacy and epsilon against the target epsilon (log scale; no DP at the right)."""
    import matplotlib.pyplot as plt

    runs = sweep["runs"]
    finite = [r["epsilon"] for r in runs if r["epsilon"] is not None]
    no_dp = max(finite, default=1.0) * 4
    x = [no_dp if r["epsilon"] is None else r["epsilon"] for r in runs]
    panels = (("utility and fidelity (higher is better)", ("utility_ratio", "column_shapes", "column_pair_trends")),
              ("privacy attacks (0.5 = no signal)", ("detection_auc", "membership_auc", "dcr_share")),
              ("epsilon: spent vs shown by the audit", ("epsilon_spent", "epsilon_lower_bound")))
    figure, axes = plt.subplots(1, 3, figsize=(15, 4.2), layout="constrained")
    for axis, (title, keys) in zip(axes, panels):
        for key in keys:
            points = [(xi, r[key]) for xi, r in zip(x, runs) if r[key] is not None]
            if points:
                axis.plot(*zip(*points), "o-", label=key.replace("_", " "))
        if sweep["utility"] in keys:
            axis.axhline(sweep["utility_floor"], color="#888", linestyle=":", label="utility floor")
        axis.set_xscale("log")
        axis.set_xticks(x, ["no DP" if r["epsilon"] is None else f"{r['epsilon']:g}" for r in runs])
        axis.minorticks_off()
        axis.set_xlabel("target epsilon")
        axis.set_title(title, fontsize=10)
        axis.legend(fontsize=8)
    return figure


def sweep_html(sweep: dict) -> str:
    """The sweep's report: the recommendation, a row per epsilon and the frontier plot."""
    import matplotlib

    matplotlib.use("Agg")
    keys = ("run", "epsilon_spent", "utility_ratio", "column_shapes", "column_pair_trends", "detection_auc",
            "dcr_share", "membership_auc", "at_risk_share", "epsilon_lower_bound", "seconds", "worst_check")
    rows = "".join("<tr>" + "".join(
        f"<td>{'n/a' if r[k] is None else f'{r[k]:.3g}' if isinstance(r[k], float) else html.escape(str(r[k]))}</td>"
        for k in keys) + "</tr>" for r in sweep["runs"])
    advice = sweep["recommendation"]
    chosen = (f"<b>epsilon {advice['epsilon']:g}</b> ({html.escape(advice['run'])}): " if advice["epsilon"] else
              "<b>no recommendation</b>: ")
    return (f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8"><title>llmsynth privacy-utility sweep'
            f"</title><style>{_STYLE}</style></head><body><h1>Privacy-utility sweep</h1>"
            f"<p>{html.escape(sweep['source'])} ({sweep['kind']}); each run's folder holds its model, synthetic data "
            f"and full report. {sweep['seconds']:.0f} s in all.</p>"
            f"<p>Recommended: {chosen}{html.escape(advice['reason'])}.</p>"
            "<table><tr>" + "".join(f"<th>{k.replace('_', ' ')}</th>" for k in keys) + f"</tr>{rows}</table>"
            + _figure_html(_frontier_figure(sweep), "privacy-utility frontier") + "</body></html>\n")
