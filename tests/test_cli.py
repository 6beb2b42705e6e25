"""The command line as a user drives it: real files, real exit codes, nothing half-written."""

import json
import os
import signal
import subprocess
import sys
import time

import pandas as pd
import pytest
import yaml
from click.testing import CliRunner
from safetensors.torch import load_file

from llmsynth.cli import main
from llmsynth.data import read_table

LLMSYNTH = [sys.executable, "-m", "llmsynth.cli"]


def run(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


@pytest.mark.parametrize("suffix", [".csv", ".parquet", ".jsonl"])
def test_generate_writes_the_requested_rows(cli_model, tmp_path, suffix):
    out = tmp_path / f"synth{suffix}"
    result = run("generate", cli_model, "-n", 70, "-o", out, "--seed", 7, "--batch-size", 32)
    assert result.exit_code == 0, result.output
    table = read_table(out)
    assert len(table) == 70 and "is_fraud" in table.columns


def test_generate_with_condition(cli_model, tmp_path):
    out = tmp_path / "frauds.csv"
    result = run("generate", cli_model, "-n", 40, "-o", out, "--condition", "is_fraud=1")
    assert result.exit_code == 0, result.output
    assert set(pd.read_csv(out)["is_fraud"]) == {1}


@pytest.mark.parametrize("condition, message", [
    ("color=red", "unknown column 'color'"),
    ("state=Atlantis", "value not seen in training"),
    ("is_fraud", "expected COL=VALUE"),
])
def test_bad_condition_fails_cleanly_with_no_output(cli_model, tmp_path, condition, message):
    out = tmp_path / "out.csv"
    result = run("generate", cli_model, "-n", 5, "-o", out, "--condition", condition)
    assert result.exit_code == 2 and message in result.output
    assert "Traceback" not in result.output
    assert list(tmp_path.iterdir()) == []


def test_generate_from_a_folder_that_is_not_a_synthesizer(tmp_path):
    result = run("generate", tmp_path, "-n", 5, "-o", tmp_path / "x.csv")
    assert result.exit_code == 2 and "not a synthesizer directory" in result.output


@pytest.mark.parametrize("content, message", [
    ("", "is empty"),
    ("a,b\n", "header but no rows"),
    ("a,b\n1,2\n1,2,3\n", "line 3: expected 2 fields"),
    ("a,a\n" + "1,2\n" * 20, "duplicate column names"),
    ("a,b\n1,2\n", "at least 10 are needed"),
    ("a,b\n" + "1,\n" * 20, "column 'b' is empty"),
])
def test_train_rejects_bad_tables_without_leaving_a_model(tmp_path, content, message):
    source = tmp_path / "bad.csv"
    source.write_text(content)
    result = run("train", source, "-o", tmp_path / "model")
    assert result.exit_code == 2, result.output
    assert message in result.output and "Traceback" not in result.output
    assert not (tmp_path / "model" / "manifest.json").exists()


def test_train_refuses_to_overwrite_a_model(cli_model, tmp_path):
    result = run("train", tmp_path / "whatever.csv", "-o", cli_model)
    assert result.exit_code == 2 and "--overwrite" in result.output


def test_train_with_no_scrub_warns_and_says_so_in_the_manifest(demo_table, recipe_file, tmp_path):
    source = tmp_path / "customers.csv"
    demo_table.head(60).to_csv(source, index=False)
    result = run("train", source, "-o", tmp_path / "model", "--recipe", recipe_file, "--epochs", 1, "--no-scrub")
    assert result.exit_code == 0, result.output
    assert "warning: --no-scrub" in result.output
    assert json.loads((tmp_path / "model" / "manifest.json").read_text())["scrub"] == {"skipped": True}


def test_help_explains_the_commands():
    result = run("--help")
    assert result.exit_code == 0
    for command in ("train", "generate", "demo"):
        assert command in result.output
    assert "--condition" in run("generate", "--help").output


def _train_command(source, model_dir, recipe, *extra):
    return [*LLMSYNTH, "train", str(source), "-o", str(model_dir), "--recipe", str(recipe), *extra]


def test_interrupted_training_resumes_to_the_same_weights(demo_table, tmp_path):
    recipe = tmp_path / "r.yaml"
    recipe.write_text(yaml.safe_dump({
        "tiny": {"vocab_size": 400, "hidden_size": 32, "num_layers": 2, "num_heads": 2, "intermediate_size": 64},
        "train": {"epochs": 20, "batch_size": 16, "learning_rate": 0.003, "patience": 100,
                  "weight_average_epochs": 20},  # the whole run's average: it must be checkpointed too
    }))
    source = tmp_path / "customers.csv"
    demo_table.head(300).to_csv(source, index=False)
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}

    subprocess.run(_train_command(source, tmp_path / "straight", recipe), check=True, env=env, capture_output=True)

    interrupted = subprocess.Popen(_train_command(source, tmp_path / "resumed", recipe), env=env,
                                   stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    checkpoints = tmp_path / "resumed" / ".checkpoint"
    deadline = time.time() + 120
    while not list(checkpoints.glob("step-*")) and time.time() < deadline:
        time.sleep(0.05)
    time.sleep(0.3)
    interrupted.send_signal(signal.SIGTERM)
    _, stderr = interrupted.communicate(timeout=60)
    assert interrupted.returncode == 130, stderr.decode()[-2000:]
    assert not (tmp_path / "resumed" / "manifest.json").exists()

    subprocess.run(_train_command(source, tmp_path / "resumed", recipe, "--resume"), check=True, env=env,
                   capture_output=True)
    straight = load_file(tmp_path / "straight" / "model" / "model.safetensors")
    resumed = load_file(tmp_path / "resumed" / "model" / "model.safetensors")
    assert straight.keys() == resumed.keys()
    for name in straight:
        assert (straight[name] - resumed[name]).abs().max() < 1e-4, name


def test_resume_without_checkpoint_is_a_clear_error(tmp_path, demo_table, recipe_file):
    source = tmp_path / "c.csv"
    demo_table.head(50).to_csv(source, index=False)
    result = run("train", source, "-o", tmp_path / "m", "--recipe", recipe_file, "--resume")
    assert result.exit_code == 2 and "nothing to resume" in result.output


def test_killed_generate_leaves_no_file(cli_model, tmp_path):
    out = tmp_path / "synth.csv"
    partial = tmp_path / ".synth.csv.partial"
    process = subprocess.Popen([*LLMSYNTH, "generate", str(cli_model), "-n", "1000000", "-o", str(out)],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.time() + 120
    while not (partial.exists() and partial.stat().st_size > 0) and time.time() < deadline:
        time.sleep(0.05)
    process.send_signal(signal.SIGTERM)
    _, stderr = process.communicate(timeout=60)
    assert process.returncode == 130, stderr.decode()[-2000:]
    assert "interrupted" in stderr.decode()
    assert list(tmp_path.iterdir()) == []


def test_tabular_demo_runs_the_whole_pipeline_and_reports(tmp_path):
    result = run("demo", "-o", str(tmp_path), "--rows", "200", "--samples", "20", "--max-minutes", "0.05")
    assert result.exit_code == 0, result.output
    assert "100.0% of rows valid" in result.output and "column shapes" in result.output
    assert len(pd.read_csv(tmp_path / "synthetic.csv")) == 20
    # It went through `llmsynth run`: the config it wrote, the split, the report and the checks it printed.
    assert yaml.safe_load((tmp_path / "pipeline.yaml").read_text())["evaluate"]["target"] == "is_fraud"
    metrics = json.loads((tmp_path / "report" / "metrics.json").read_text())
    assert metrics["rows"]["synthetic"] == 20 and "utility" in metrics
    assert all(check["metric"] in result.output for check in metrics["checks"])
