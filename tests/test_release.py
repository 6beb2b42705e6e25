"""Evidence for a release decision: the bias audit, fair generation and the release gate."""

from __future__ import annotations

import hashlib
import json

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner
from conftest import eval_files

from llmsynth.cli import main
from llmsynth.data.demo import support_chats
from llmsynth.errors import DataError, GenerateError
from llmsynth.evaluate import evaluate_chats, evaluate_tables, write_report
from llmsynth.evaluate.bias import bias_audit
from llmsynth.evaluate.gate import REQUIRED, load_gate
from llmsynth.evaluate.checks import TABLE_CHECKS
from llmsynth.evaluate.risk import chat_record_risk, copied_turn_runs, holdout_percentiles
from llmsynth.generate.fair import parity_cells
from llmsynth.sweep import parse_epsilons, recommend


def _population(n: int, rates: dict[str, float], seed: int) -> pd.DataFrame:
    """Rows of groups (equally likely) whose outcome is 'yes' at the group's rate."""
    rng = np.random.default_rng(seed)
    groups = rng.choice(list(rates), n)
    yes = rng.random(n) < np.array([rates[g] for g in groups])
    return pd.DataFrame({"group": groups, "age": rng.integers(18, 90, n), "outcome": np.where(yes, "yes", "no")})


def _audit(synthetic_rates: dict[str, float], real_rates=None, n: int = 3000) -> dict:
    real_rates = real_rates or {"a": 0.2, "b": 0.4}
    frames = [_population(n, real_rates, 1), _population(n, real_rates, 2), _population(n, synthetic_rates, 3)]
    return bias_audit(*frames, ["group"], "outcome", seed=0)


def test_a_draw_of_the_real_distribution_keeps_the_gap():
    audit = _audit({"a": 0.2, "b": 0.4})
    assert audit["positive"] == "outcome = yes"  # the rarer value
    column = audit["columns"]["group"]
    assert column["parity_gap"]["real"]["value"] == pytest.approx(0.2, abs=0.04)
    assert column["gap_excess"]["low"] < 0 < column["gap_excess"]["high"]
    assert column["amplification"]["low"] < 1 < column["amplification"]["high"]
    rates = {g["group"]: g["rate"]["synthetic"] for g in column["groups"]}
    assert rates["a"] == pytest.approx(0.2, abs=0.04) and rates["b"] == pytest.approx(0.4, abs=0.04)


def test_a_widened_gap_is_measured_as_amplified():
    audit = _audit({"a": 0.1, "b": 0.5})
    column = audit["columns"]["group"]
    assert column["amplification"]["value"] == pytest.approx(2.0, abs=0.35)
    assert column["gap_excess"]["low"] > 0.1
    assert audit["gap_excess_low_max"] == column["gap_excess"]["low"]


def test_small_groups_are_listed_but_left_out_of_the_gap():
    frames = [_population(2000, {"a": 0.2, "b": 0.4}, seed) for seed in (1, 2, 3)]
    frames[0] = pd.concat([frames[0], pd.DataFrame({"group": ["tiny"] * 10, "age": 30, "outcome": "yes"})])
    column = bias_audit(*frames, ["group"], "outcome")["columns"]["group"]
    tiny = next(g for g in column["groups"] if g["group"] == "tiny")
    assert tiny["rows"]["real"] == 10 and not tiny["in_gap"] and tiny["rate"]["real"] == 1.0
    assert column["parity_gap"]["real"]["value"] < 0.3  # the tiny group's rate of 1.0 is not in it


def test_numbers_are_audited_in_quartiles_and_a_numeric_target_above_its_median():
    frames = [_population(2000, {"a": 0.2, "b": 0.4}, seed) for seed in (1, 2, 3)]
    audit = bias_audit(*frames, ["age"], "outcome")
    assert len(audit["columns"]["age"]["groups"]) == 4
    frames = [f.assign(score=(f["group"] == "b") * 10.0 + np.arange(len(f)) % 7) for f in frames]
    audit = bias_audit(*frames, ["group"], "score")
    assert audit["positive"].startswith("score > ")
    assert audit["columns"]["group"]["parity_gap"]["real"]["value"] > 0.8  # b scores 10-16, a 0-6


def test_booleans_are_two_groups_not_quartiles():
    frames = [_population(600, {"a": 0.2, "b": 0.4}, seed).assign(flag=lambda f: f["group"] == "a")
              for seed in (1, 2, 3)]
    column = bias_audit(*frames, ["flag"], "outcome")["columns"]["flag"]
    assert [g["group"] for g in column["groups"]] == ["False", "True"]
    assert column["parity_gap"]["real"]["value"] == pytest.approx(0.2, abs=0.08)


def test_bad_audits_are_clear_errors():
    frames = [_population(300, {"a": 0.2, "b": 0.4}, seed) for seed in (1, 2, 3)]
    with pytest.raises(DataError, match="'outcome' is both the target and a sensitive column"):
        bias_audit(*frames, ["outcome"], "outcome")
    with pytest.raises(DataError, match="column 'sex' is not in the real data"):
        bias_audit(*frames, ["sex"], "outcome")
    with pytest.raises(DataError, match="holds one value only"):
        bias_audit(*[f.assign(outcome="no") for f in frames], ["group"], "outcome")


def test_the_table_suite_audits_bias_with_a_downstream_model(split):
    metrics = evaluate_tables(*split, target="is_fraud", sensitive=["employment"]).metrics
    column = metrics["bias"]["columns"]["employment"]
    assert set(column["downstream"]) == {"real_trained", "synthetic_trained"}
    assert {"accuracy_gap", "false_positive_rate_gap", "by_group"} <= set(column["downstream"]["real_trained"])
    assert any(check["metric"] == "bias.gap_excess_low_max" for check in metrics["checks"])
    with pytest.raises(DataError, match="needs a target"):
        evaluate_tables(*split, sensitive=["employment"])
    with pytest.raises(DataError, match=r"sensitive column\(s\) \['ssn'\] not among the learned"):
        evaluate_tables(*split, target="is_fraud", sensitive=["ssn"])


def test_parity_cells_keep_group_sizes_and_the_overall_rate():
    pilot = pd.DataFrame({"sex": ["f"] * 40 + ["m"] * 60, "income": ["hi"] * 5 + ["lo"] * 35 + ["hi"] * 30 + ["lo"] * 30})
    cells = dict((tuple(sorted(c.items())), count) for c, count in parity_cells(pilot, ["sex"], "income", 1000))
    assert sum(cells.values()) == 1000
    assert cells[(("income", "hi"), ("sex", "f"))] == 140 and cells[(("income", "lo"), ("sex", "f"))] == 260
    assert cells[(("income", "hi"), ("sex", "m"))] == 210 and cells[(("income", "lo"), ("sex", "m"))] == 390


def test_fair_sampling_removes_the_dependence_and_keeps_group_shares(trained):
    rows = trained.sample(1200, seed=3, fair=["employment"], target="home_ownership")
    assert len(rows) == 1200
    rates = pd.crosstab(rows["employment"], rows["home_ownership"], normalize="index")
    assert (rates.max() - rates.min()).max() < 0.02
    plain = trained.sample(1200, seed=3)
    shares = [t["employment"].value_counts(normalize=True) for t in (rows, plain)]
    assert (shares[0] - shares[1]).abs().max() < 0.06
    with pytest.raises(GenerateError, match="fixed by --condition as well"):
        trained.sample(10, conditions={"employment": "retired"}, fair=["employment"], target="home_ownership")
    with pytest.raises(GenerateError, match="'age' is not a categorical column"):
        trained.sample(10, fair=["age"], target="home_ownership")


def test_the_default_gate_fails_a_copy_of_the_training_data_and_records_why(table_files):
    result = eval_files(table_files, "copy.csv", "--gate", "default")
    assert result.exit_code == 1, result.output
    assert "release gate FAILED on privacy.exact_match_excess" in result.output
    record = json.loads((table_files / "report-copy.csv" / "release.json").read_text())
    assert not record["passed"] and "privacy.membership_auc" in record["failed"]
    assert {c["metric"] for c in record["checks"]} == {c.metric for c in TABLE_CHECKS}
    measured = [c for c in record["checks"] if c["value"] is not None]
    assert {c["metric"] for c in measured} == REQUIRED["tabular"]  # what every table's evaluation measures
    assert all(c["status"] in ("pass", "fail") for c in measured)
    copy_hash = hashlib.sha256((table_files / "copy.csv").read_bytes()).hexdigest()
    assert record["inputs"]["synthetic"]["sha256"] == copy_hash
    assert record["versions"]["llmsynth"] and record["checked_at"] and record["command"][:2] == ["llmsynth", "eval"]


def test_the_default_gate_passes_a_fresh_draw_with_its_bias_audit(table_files):
    result = eval_files(table_files, "fresh.csv", "--gate", "default", "--target", "is_fraud", "--sensitive",
                   "employment, home_ownership")
    assert result.exit_code == 0, result.output
    assert "release gate passed" in result.output
    record = json.loads((table_files / "report-fresh.csv" / "release.json").read_text())
    assert record["passed"] and {"utility.ratio", "bias.gap_excess_low_max"} <= {
        c["metric"] for c in record["checks"] if c["status"] == "pass"}
    report = (table_files / "report-fresh.csv" / "report.html").read_text()
    assert "<h2>Bias audit</h2>" in report and "<h3>home_ownership</h3>" in report


def test_a_gate_file_fails_on_a_figure_it_requires_but_was_not_measured(table_files):
    (table_files / "gate.yaml").write_text("privacy.dcr_share: {max: 0.6}\ncanaries.exposure_excess: {max: 4}\n"
                                           "training.dp_epsilon: {max: 8, required: false}\n")
    result = eval_files(table_files, "fresh.csv", "--gate", str(table_files / "gate.yaml"))
    assert result.exit_code == 1
    assert "gate: canaries.exposure_excess not measured (limit <= 4)" in result.output
    record = json.loads((table_files / "report-fresh.csv" / "release.json").read_text())
    assert [c["status"] for c in record["checks"]] == ["pass", "fail", "not measured"]


def test_bad_gate_files_name_the_file_and_the_metric(tmp_path):
    gate = tmp_path / "gate.yaml"
    gate.write_text("privacy.dcr_share: {maximum: 0.6}\n")
    with pytest.raises(DataError, match=r"gate.yaml, privacy.dcr_share: expected \{max: number\}"):
        load_gate(gate, "tabular", TABLE_CHECKS)
    gate.write_text("privacy.dcr_share: {max: 0.6, min: 0.4}\n")
    with pytest.raises(DataError, match="give exactly one of max or min"):
        load_gate(gate, "tabular", TABLE_CHECKS)
    with pytest.raises(DataError, match="cannot read the gate"):
        load_gate(tmp_path / "missing.yaml", "tabular", TABLE_CHECKS)


def test_holdout_percentiles_rank_each_record_among_the_unseen():
    holdout = np.array([0.1, 0.2, 0.3, 0.4])  # closeness: higher is closer
    assert holdout_percentiles(np.array([0.5, 0.3, 0.0]), holdout).tolist() == [0.0, 0.375, 1.0]


def test_record_risk_singles_out_copied_rows_and_not_a_fresh_draw(split, tmp_path):
    train, holdout, fresh = split
    copied = pd.concat([train.iloc[:30], fresh.iloc[30:]], ignore_index=True)
    evaluation = evaluate_tables(train, holdout, copied)
    risk = evaluation.metrics["privacy"]["record_risk"]
    assert risk["exact_copies"] == 30 and risk["at_risk"] >= 30 and risk["at_risk_excess"] > 0.03
    assert sorted(r["record"] for r in risk["most_exposed"]) == list(range(1, 11))  # the first rows were copied
    write_report(evaluation, tmp_path)
    records = pd.read_csv(tmp_path / "record_risk.csv")
    assert len(records) == len(train) and set(records["record"].head(30)) == set(range(1, 31))
    assert records["holdout_percentile"].is_monotonic_increasing
    assert "<h2>Records most at risk</h2>" in (tmp_path / "report.html").read_text()
    fresh_risk = evaluate_tables(train, holdout, fresh).metrics["privacy"]["record_risk"]
    assert fresh_risk["exact_copies"] == 0 and fresh_risk["at_risk_excess"] < 0.02


def test_copied_turn_runs_count_consecutive_long_turns_of_one_conversation():
    def chat(*turns):
        return {"messages": [{"role": "user" if i % 2 == 0 else "assistant", "content": t}
                             for i, t in enumerate(turns)]}

    long = [f"this is a long enough turn number {i} to count as a copy when repeated" for i in range(5)]
    train = [chat(*long), chat("short", "turns only")]
    synthetic = [chat("something new entirely, and long enough to be counted", long[1], long[2], long[3]),
                 chat(long[0], "a fresh long turn that nobody in training ever wrote down", long[4])]
    assert copied_turn_runs(train, synthetic).tolist() == [3, 0]


def test_chat_record_risk_finds_copied_conversations():
    demo = support_chats(300, seed=2).conversations
    train, holdout, fresh = demo[:100], demo[100:200], demo[200:]
    risk, records = chat_record_risk(train, holdout, train[:50] + fresh[50:])
    assert risk["at_risk_excess"] > 0.3 and risk["membership_auc"] > 0.65
    assert risk["longest_copied_turns"]["train"] > risk["longest_copied_turns"]["holdout"]
    assert set(records["record"].head(40)) <= set(range(1, 51))
    fresh_risk, _ = chat_record_risk(train, holdout, fresh)
    assert fresh_risk["at_risk_excess"] < 0.03 and 0.35 < fresh_risk["membership_auc"] < 0.65


def test_epsilons_parse_sorted_with_no_dp_last():
    assert parse_epsilons("8, 1,inf,2,1") == [1.0, 2.0, 8.0, None]
    for bad, message in (("1,x", "positive numbers or 'inf'"), ("0,1", "above 0"), ("4", "at least two")):
        with pytest.raises(DataError, match=message):
            parse_epsilons(bad)


def test_the_recommendation_is_the_smallest_epsilon_meeting_the_floor():
    runs = [{"run": f"eps-{e}", "epsilon": e, "utility_ratio": u}
            for e, u in ((1.0, 0.7), (2.0, 0.92), (4.0, 0.95), (None, 0.99))]
    assert recommend(runs, "utility_ratio", 0.9)["epsilon"] == 2.0
    none = recommend(runs, "utility_ratio", 0.98)
    assert none["epsilon"] is None and "best: 0.950 at epsilon 4" in none["reason"]  # no DP does not count


def test_a_sweep_trains_each_epsilon_on_one_split_and_plots_the_frontier(demo_table, recipe_file, tmp_path):
    demo_table.head(300).to_csv(tmp_path / "customers.csv", index=False)
    result = CliRunner().invoke(main, ["sweep", str(tmp_path / "customers.csv"), "-o", str(tmp_path / "sweep"),
                                       "--dp-epsilon", "inf,2", "--recipe", str(recipe_file), "--target", "is_fraud",
                                       "--utility-floor", "0.1"])
    assert result.exit_code == 0, result.output
    sweep = json.loads((tmp_path / "sweep" / "sweep.json").read_text())
    assert [r["run"] for r in sweep["runs"]] == ["eps-2", "eps-inf"] and sweep["utility"] == "utility_ratio"
    private, plain = sweep["runs"]
    assert 1.5 < private["epsilon_spent"] <= 2 + 1e-6 and plain["epsilon_spent"] is None
    assert sweep["recommendation"]["epsilon"] == 2.0 and "recommended: epsilon 2" in result.output
    for run in ("eps-2", "eps-inf"):  # one holdout for all: split once, each run evaluated against it
        assert (tmp_path / "sweep" / run / "report" / "metrics.json").is_file()
        assert not (tmp_path / "sweep" / run / "split.json").exists()
    holdout = [json.loads((tmp_path / "sweep" / r / "report" / "metrics.json").read_text())["rows"]["holdout"]
               for r in ("eps-2", "eps-inf")]
    assert holdout[0] == holdout[1] == len(pd.read_csv(tmp_path / "sweep" / "holdout.csv"))
    assert '<img alt="privacy-utility frontier"' in (tmp_path / "sweep" / "report.html").read_text()


def test_fair_generation_from_the_command_line(cli_model, tmp_path):
    out = tmp_path / "fair.csv"
    result = CliRunner().invoke(main, ["generate", str(cli_model), "-n", "400", "-o", str(out), "--fair",
                                       "home_ownership", "--target", "employment"])
    assert result.exit_code == 0, result.output
    rows = pd.read_csv(out)
    assert len(rows) == 400 and rows["name"].notna().all()  # identifiers filled as in plain generation
    rates = pd.crosstab(rows["home_ownership"], rows["employment"], normalize="index")
    assert (rates.max() - rates.min()).max() < 0.03
    alone = CliRunner().invoke(main, ["generate", str(cli_model), "-n", "5", "-o", str(tmp_path / "x.csv"),
                                      "--target", "employment"])
    assert alone.exit_code == 2 and "--target goes with --fair" in alone.output
    bad = CliRunner().invoke(main, ["generate", str(cli_model), "-n", "5", "-o", str(tmp_path / "y.csv"), "--fair",
                                    "age", "--target", "employment"])
    assert bad.exit_code == 2 and "'age' is not a categorical column" in bad.output
    assert not (tmp_path / "y.csv").exists()


def test_the_chat_suite_audits_the_label_rate_per_metadata_group():
    demo = support_chats(360, seed=2).conversations
    train, holdout, synthetic = demo[:120], demo[120:240], demo[240:]
    metrics = evaluate_chats(train, holdout, synthetic, sensitive=["channel"], reference_model=None).metrics
    audit = metrics["bias"]
    assert audit["target"] == "intent" and audit["positive"].startswith("intent = ")
    column = audit["columns"]["channel"]
    assert "downstream" not in column and {g["group"] for g in column["groups"]} == {"chat", "email"}
    assert column["gap_excess"]["low"] < 0 < column["gap_excess"]["high"]  # a fresh draw keeps the gap
    with pytest.raises(DataError, match=r"metadata field\(s\) \['tier'\] not among"):
        evaluate_chats(train, holdout, synthetic, sensitive=["tier"], reference_model=None)
