"""The evaluation suite: known answers, SDMetrics' own figures, bad input, the command line and the report."""

from __future__ import annotations

import json
import shutil
import subprocess
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from click.testing import CliRunner
from conftest import eval_files

from llmsynth.cli import main
from llmsynth.data import write_table
from llmsynth.data.chats import write_chats
from llmsynth.data.demo import customers, support_chats
from llmsynth.data.schema import infer_schema
from llmsynth.errors import DataError
from llmsynth.evaluate import evaluate_chats, evaluate_tables, write_report
from llmsynth.evaluate.features import typed
from llmsynth.evaluate.fidelity import column_pair_trends, column_shapes, mean_pair_trend
from llmsynth.evaluate.text import longest_common_words, ngram_overlap
from llmsynth.serialize.codecs import DatetimeColumn, NumericColumn

def _shuffled(table: pd.DataFrame, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return table.apply(lambda column: rng.permutation(column.to_numpy()))


def test_synthetic_equal_to_train_scores_as_a_copy(split):
    train, holdout, _ = split
    metrics = evaluate_tables(train, holdout, train.copy()).metrics
    assert metrics["fidelity"]["column_shapes"] == pytest.approx(1.0)
    assert metrics["fidelity"]["column_pair_trends"] == pytest.approx(1.0)
    assert metrics["privacy"]["exact_match_rate"] == 1.0
    assert metrics["privacy"]["exact_match_rate_holdout"] == 0.0
    assert metrics["privacy"]["dcr_share"] == pytest.approx(1.0)
    assert metrics["privacy"]["membership_auc"] > 0.99
    verdicts = {c["metric"]: c["verdict"] for c in metrics["checks"]}
    assert verdicts["privacy.exact_match_excess"] == verdicts["privacy.dcr_share"] == "fail"


def test_synthetic_from_the_real_distribution_scores_as_unseen_data(split):
    train, holdout, fresh = split
    metrics = evaluate_tables(train, holdout, fresh, target="is_fraud").metrics
    assert 0.4 < metrics["privacy"]["dcr_share"] < 0.6
    assert 0.4 < metrics["fidelity"]["detection_auc"] < 0.6
    assert 0.4 < metrics["privacy"]["membership_auc"] < 0.6
    assert metrics["privacy"]["exact_match_rate"] == 0.0
    assert metrics["fidelity"]["column_shapes"] > 0.9
    assert metrics["utility"]["ratio"] > 0.8
    assert {c["verdict"] for c in metrics["checks"]} <= {"pass", "warn"}


def test_a_copy_of_the_holdout_is_undetectable_and_closer_to_the_holdout(split):
    train, holdout, _ = split
    metrics = evaluate_tables(train, holdout, holdout.copy()).metrics
    assert metrics["fidelity"]["detection_auc"] == pytest.approx(0.5, abs=0.02)
    assert metrics["privacy"]["dcr_share"] < 0.01  # every row is a holdout row: nearer the holdout than train
    assert metrics["privacy"]["membership_auc"] < 0.01


def test_shuffled_columns_keep_shapes_and_lose_pair_trends(split):
    train, holdout, fresh = split
    intact = evaluate_tables(train, holdout, fresh, target="is_fraud").metrics
    shuffled = evaluate_tables(train, holdout, _shuffled(fresh), target="is_fraud").metrics
    assert shuffled["fidelity"]["column_shapes"] == pytest.approx(intact["fidelity"]["column_shapes"])
    assert shuffled["fidelity"]["column_pair_trends"] < intact["fidelity"]["column_pair_trends"] - 0.15
    income_credit = shuffled["fidelity"]["column_pair_trends_by_pair"]["annual_income / credit_score"]
    assert income_credit["strong"] and income_credit["score"] < 0.7
    assert shuffled["fidelity"]["detection_auc"] > 0.75
    assert shuffled["utility"]["ratio"] < intact["utility"]["ratio"]


def test_shapes_and_pair_trends_equal_sdmetrics(split):
    with warnings.catch_warnings():  # the single-table report is deprecated in favour of a multi-table one
        warnings.simplefilter("ignore", FutureWarning)
        from sdmetrics.reports.single_table import QualityReport
    train, _, fresh = split
    train = train.copy()
    train.loc[train.index[::7], "annual_income"] = np.nan  # missing values take part too
    schema = infer_schema(train)
    kinds = {c.name: "numerical" if isinstance(c, NumericColumn) else "datetime" if isinstance(c, DatetimeColumn)
             else "categorical" for c in schema.learned}
    assert set(kinds.values()) == {"numerical", "datetime", "categorical"}
    report = QualityReport()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        report.generate(typed(train, schema), typed(fresh, schema), {"columns": {
            name: {"sdtype": kind} for name, kind in kinds.items()}}, verbose=False)

    shapes = column_shapes(train, fresh, schema)
    for row in report.get_details("Column Shapes").itertuples():
        assert shapes[row.Column] == pytest.approx(row.Score, abs=1e-6), row.Column
    pairs = column_pair_trends(train, fresh, schema)
    details = report.get_details("Column Pair Trends")
    for row in details.itertuples():
        trend = pairs[(row[1], row[2])]
        assert trend.strong == row[-1], (row[1], row[2])
        if not np.isnan(row.Score):
            assert trend.score == pytest.approx(row.Score, abs=1e-6), (row[1], row[2])
    properties = report.get_properties().set_index("Property")["Score"]
    assert np.mean(list(shapes.values())) == pytest.approx(properties["Column Shapes"], abs=1e-6)
    assert mean_pair_trend(pairs) == pytest.approx(properties["Column Pair Trends"], abs=1e-6)


def test_pii_replay_counts_values_beyond_the_holdout_baseline(split):
    train, holdout, fresh = split
    raw = [("PERSON", name) for name in train["name"]] + [("EMAIL_ADDRESS", email) for email in train["email"]]
    leaky = fresh.copy()
    leaky.loc[:99, "email"] = train["email"].iloc[:100].to_numpy()
    clean = evaluate_tables(train, holdout, fresh, raw_pii=raw).metrics["privacy"]["pii_replay"]
    leaked = evaluate_tables(train, holdout, leaky, raw_pii=raw).metrics["privacy"]["pii_replay"]
    assert leaked["synthetic_by_entity"]["EMAIL_ADDRESS"] == 100
    assert leaked["excess"] >= clean["excess"] + 100 / len(set(v for _, v in raw)) - 1e-9
    assert "@" not in json.dumps(leaked)  # counts only: the report never repeats the PII


def test_bad_tables_are_clear_errors(split):
    train, holdout, fresh = split
    with pytest.raises(DataError, match=r"synthetic table lacks column\(s\) \['credit_score'\]"):
        evaluate_tables(train, holdout, fresh.drop(columns="credit_score"))
    with pytest.raises(DataError, match="target column 'churned' is not in the real table"):
        evaluate_tables(train, holdout, fresh, target="churned")
    with pytest.raises(DataError, match="the synthetic table has no rows"):
        evaluate_tables(train, holdout, fresh.iloc[:0])
    small = evaluate_tables(train, holdout.iloc[:30], fresh).metrics
    assert "30 records" in small["warnings"][0]


def test_cli_writes_metrics_and_gates_on_failure(table_files):
    result = eval_files(table_files, "fresh.csv", "--target", "is_fraud", "--fail-on", "fail")
    assert result.exit_code == 0, result.output
    metrics = json.loads((table_files / "report-fresh.csv" / "metrics.json").read_text())
    assert {"fidelity", "utility", "privacy", "checks", "warnings"} <= set(metrics)
    assert "PASS  fidelity.column_shapes" in result.output

    copied = eval_files(table_files, "copy.csv", "--fail-on", "fail")
    assert copied.exit_code == 1
    assert "FAIL  privacy.exact_match_excess" in copied.output
    assert eval_files(table_files, "copy.csv").exit_code == 0  # no gate unless asked


def test_cli_thresholds_override_and_reject_unknown_metrics(table_files):
    (table_files / "strict.yaml").write_text("fidelity.column_shapes: {pass: 1.01, warn: 1.0}\n")
    result = eval_files(table_files, "fresh.csv", "--thresholds", str(table_files / "strict.yaml"), "--fail-on", "fail")
    assert result.exit_code == 1 and "FAIL  fidelity.column_shapes" in result.output
    (table_files / "typo.yaml").write_text("fidelity.colum_shapes: {pass: 0.9}\n")
    result = eval_files(table_files, "fresh.csv", "--thresholds", str(table_files / "typo.yaml"))
    assert result.exit_code == 2 and "unknown metric(s) ['fidelity.colum_shapes']" in result.output


def test_cli_bad_input_messages(table_files):
    (table_files / "empty.csv").write_text(",".join(customers(12).columns) + "\n")
    result = eval_files(table_files, "empty.csv")
    assert result.exit_code == 2 and "empty.csv: the table has a header but no rows" in result.output
    result = eval_files(table_files, "fresh.csv", "--target", "nope")
    assert result.exit_code == 2 and "target column 'nope'" in result.output
    assert not (table_files / "report-fresh.csv-nope").exists()


def _chromium() -> str:
    path = shutil.which("chromium") or shutil.which("chromium-browser")
    assert path, "Chromium is needed for this test: `make test` installs Debian's chromium package"
    return path


def test_report_renders_in_headless_chromium_without_console_errors(split, tmp_path):
    from matplotlib.image import imread

    train, holdout, fresh = split
    evaluation = evaluate_tables(train, holdout, fresh, target="is_fraud", sensitive=["employment"])
    _, report = write_report(evaluation, tmp_path)
    page = report.read_text()
    assert "http://" not in page and "https://" not in page and "<script" not in page  # self-contained
    screenshot = tmp_path / "report.png"
    run = subprocess.run(
        [_chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         f"--user-data-dir={tmp_path / 'profile'}", "--enable-logging=stderr", "--v=0", "--window-size=1300,2400",
         f"--screenshot={screenshot}", report.as_uri()],
        capture_output=True, text=True, timeout=120)
    console = [line for line in run.stderr.splitlines() if ":CONSOLE" in line]
    assert console == [], console
    pixels = imread(screenshot)[..., :3]
    assert pixels.shape[:2] == (2400, 1300)
    assert (pixels.mean(axis=2) < 0.9).mean() > 0.02 and pixels.std() > 0.1  # text and figures, not a blank page


@pytest.fixture(scope="module")
def chats():
    demo = support_chats(240, seed=2)
    return demo.conversations[:80], demo.conversations[80:160], demo.conversations[160:], demo.pii


def test_chat_figures_tell_copies_from_fresh_conversations(chats):
    train, holdout, fresh, _ = chats
    unseen = evaluate_chats(train, holdout, fresh, reference_model=None).metrics  # coherence: tests/test_coherence.py
    copied = evaluate_chats(train, holdout, train, reference_model=None).metrics
    assert copied["privacy"]["verbatim_share"] == 1.0
    rare = {name: m["privacy"]["verbatim_rare_share"] for name, m in (("copied", copied), ("unseen", unseen))}
    assert rare["copied"]["synthetic"] > 0.8  # all but the stock phrases
    # Unseen conversations repeat some templated turns too ("Glad I could help, Ann. Take care."): as the holdout does.
    assert rare["unseen"]["synthetic"] < 0.3 and abs(rare["unseen"]["synthetic"] - rare["unseen"]["holdout"]) < 0.1
    assert copied["privacy"]["similarity_synthetic"] == pytest.approx(1.0)
    assert copied["privacy"]["ngram8_overlap"] == 1.0 and unseen["privacy"]["ngram8_excess"] < 0.05
    longest = {name: m["privacy"]["longest_common_words"] for name, m in (("copied", copied), ("unseen", unseen))}
    assert longest["copied"]["synthetic"]["median"] > 3 * longest["unseen"]["synthetic"]["median"]
    assert longest["unseen"]["synthetic"]["median"] == pytest.approx(longest["unseen"]["holdout"]["median"], rel=0.3)
    assert copied["privacy"]["similarity_excess"] > unseen["privacy"]["similarity_excess"] + 0.1
    assert abs(unseen["privacy"]["similarity_excess"]) < 0.05
    assert unseen["fidelity"]["label_shape"] > 0.7 and unseen["utility"]["ratio"] > 0.8
    assert unseen["fidelity"]["embeddings"]["synthetic"]["mmd"] < 0.05
    verdicts = {c["metric"]: c["verdict"] for c in copied["checks"]}
    assert verdicts["privacy.verbatim_excess"] == "fail"
    assert {c["metric"]: c["verdict"] for c in unseen["checks"]}["privacy.verbatim_excess"] == "pass"


def test_chat_eval_from_the_command_line(chats, tmp_path):
    train, holdout, fresh, pii = chats
    for name, corpus in (("train", train), ("holdout", holdout), ("synthetic", fresh)):
        write_chats(tmp_path / f"{name}.jsonl", corpus)
    (tmp_path / "raw.jsonl").write_text("".join(json.dumps({"entity": s.entity, "value": s.value}) + "\n"
                                                for s in pii))
    result = CliRunner().invoke(main, ["eval", "--real", str(tmp_path / "train.jsonl"), "--holdout",
                                       str(tmp_path / "holdout.jsonl"), "--synthetic", str(tmp_path / "synthetic.jsonl"),
                                       "--raw-pii", str(tmp_path / "raw.jsonl"), "-o", str(tmp_path / "report"),
                                       "--reference-model", "none"])
    assert result.exit_code == 0, result.output
    metrics = json.loads((tmp_path / "report" / "metrics.json").read_text())
    assert metrics["kind"] == "chat" and metrics["privacy"]["pii_replay"]["raw_values"] > 0
    assert metrics["coherence"]["reference_perplexity"] == {"skipped": "no reference model asked for"}
    assert (tmp_path / "report" / "report.html").stat().st_size > 10_000


def _pipeline(folder, recipe_file, **overrides) -> Path:
    config = {"input": "customers.csv", "output": "run", "train": {"recipe": str(recipe_file), "canaries": [1, 8]},
              "generate": {"n": 120}, "evaluate": {"target": "is_fraud"}, **overrides}
    (folder / "pipeline.yaml").write_text(yaml.safe_dump(config))
    return folder / "pipeline.yaml"


def test_run_splits_scrubs_trains_generates_and_evaluates(tmp_path, recipe_file):
    write_table(customers(400, seed=5), tmp_path / "customers.csv")
    strict = {"evaluate": {"target": "is_fraud", "fail_on": "fail", "sensitive": ["home_ownership"],
                           "thresholds": {"fidelity.column_shapes": {"pass": 1.01, "warn": 1.0}}}}
    result = CliRunner().invoke(main, ["run", str(_pipeline(tmp_path, recipe_file, **strict))])
    assert result.exit_code == 1, result.output  # the gate: column shapes cannot reach 1.01
    assert "FAIL  fidelity.column_shapes" in result.output
    run = tmp_path / "run"
    split = json.loads((run / "split.json").read_text())
    holdout, train = pd.read_csv(run / "holdout.csv"), pd.read_csv(run / "train.csv")
    assert len(holdout) == len(split["holdout"]) and len(train) + len(holdout) == split["records"] == 400
    source = customers(400, seed=5)
    assert not set(holdout["name"]) & set(source["name"])  # scrubbed: surrogates, not the source's names
    raw = [json.loads(line) for line in (run / "private" / "raw_pii.jsonl").read_text().splitlines()]
    assert {r["value"] for r in raw} >= set(source["email"])
    assert len(pd.read_csv(run / "synthetic.csv")) == 120
    manifest = json.loads((run / "model" / "manifest.json").read_text())
    assert manifest["scrub"] and not manifest["scrub"].get("skipped")
    metrics = json.loads((run / "report" / "metrics.json").read_text())
    assert metrics["rows"] == {"train": len(train), "holdout": len(holdout), "synthetic": 120}
    assert metrics["privacy"]["pii_replay"]["raw_values"] == len(raw)
    assert [g["inserted"] for g in metrics["canaries"]["by_insertions"]] == [8, 1, 0]  # train.canaries measured
    assert "home_ownership" in metrics["bias"]["columns"] and metrics["training"]["model"] == "tiny"
    assert (run / "model.canaries.json").is_file()
    assert (run / "report" / "report.html").is_file() and (run / "pipeline.json").is_file()


def test_run_rejects_a_bad_config_by_field(tmp_path, recipe_file):
    path = _pipeline(tmp_path, recipe_file, split={"holdout_fraction": 1.5}, generate={"rows": 10})
    result = CliRunner().invoke(main, ["run", str(path)])
    assert result.exit_code == 2
    assert "split.holdout_fraction" in result.output and "generate.rows: Extra inputs" in result.output
    path = _pipeline(tmp_path, recipe_file)  # customers.csv does not exist
    result = CliRunner().invoke(main, ["run", str(path)])
    assert result.exit_code == 2 and "customers.csv: no such file" in result.output


def test_longest_common_words_and_ngram_overlap_have_known_answers():
    train = ["the quick brown fox jumps over the lazy dog", "hello there my friend"]
    queries = ["a quick brown fox jumps high", "hello there friend", "nothing here", "over the lazy dog hello there my"]
    assert longest_common_words(queries, train) == [4, 2, 0, 4]  # no match runs across two training texts
    assert ngram_overlap(["the quick brown fox jumps over the lazy dog", "x y z a b c d e f"], train, 8) == 0.5
    assert ngram_overlap(["too short"], train, 8) == 0.0
