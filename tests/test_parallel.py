"""Several processes (accelerate launch, CPU processes over gloo here): the same training step and the same output
as one process."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import torch
from safetensors.torch import load_file

from llmsynth.synthesizers.chat import ChatSynthesizer
from llmsynth.data import read_table
from llmsynth.data.chats import read_chats
from llmsynth.data.demo import support_chats
from llmsynth.model import TinyModelConfig
from llmsynth.train.config import Recipe, TrainConfig

ROOT = Path(__file__).resolve().parents[1]
LAUNCH_CPU = [sys.executable, "-m", "accelerate.commands.launch", "--config_file",
              str(ROOT / "training" / "accelerate" / "cpu.yaml")]


def _env():
    # One thread per process in every run, so that one process and two do the same float arithmetic.
    return {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}


@pytest.fixture(scope="module")
def chat_model(tmp_path_factory):
    recipe = Recipe(tiny=TinyModelConfig(vocab_size=600, hidden_size=32, num_layers=2, num_heads=2,
                                         intermediate_size=64, max_length=1024),
                    train=TrainConfig(epochs=1, batch_size=16))
    folder = tmp_path_factory.mktemp("chat") / "model"
    ChatSynthesizer(recipe).fit(support_chats(40, seed=2).conversations, progress=False).save(folder)
    return folder


def test_shipped_accelerate_configs_load():
    from accelerate.commands.config.config_args import load_config_from_file

    configs = {p.stem: load_config_from_file(str(p)) for p in (ROOT / "training" / "accelerate").glob("*.yaml")}
    assert set(configs) == {"cpu", "single-gpu", "multi-gpu", "fsdp"}
    assert configs["cpu"].num_processes == 2 and configs["fsdp"].fsdp_config["fsdp_state_dict_type"] == \
        "FULL_STATE_DICT"


def test_shards_of_the_batches_are_the_whole_output(trained):
    whole = trained.sample(100, seed=5, batch_size=16)
    shards = [list(trained.iter_sample(100, seed=5, batch_size=16, progress=False, shard=(i, 3))) for i in range(3)]
    interleaved = [shards[k % 3][k // 3] for k in range(sum(map(len, shards)))]
    pd.testing.assert_frame_equal(pd.concat(interleaved, ignore_index=True), whole)


def test_two_process_training_takes_the_one_process_steps(demo_table, recipe_file, tmp_path):
    # 320 rows: 288 train (9 global batches of 32, 16 per process) and 32 validation, so no batch is uneven.
    source = tmp_path / "customers.csv"
    demo_table.head(320).to_csv(source, index=False)
    train = ["train", str(source), "--recipe", str(recipe_file), "--no-scrub", "--epochs", "2"]
    one = subprocess.run([sys.executable, "-m", "llmsynth", *train, "-o", str(tmp_path / "one")], env=_env(),
                         capture_output=True, text=True)
    assert one.returncode == 0, one.stderr[-2000:]
    two = subprocess.run([*LAUNCH_CPU, "-m", "llmsynth", *train, "-o", str(tmp_path / "two")], env=_env(),
                         capture_output=True, text=True)
    assert two.returncode == 0, two.stderr[-2000:]
    assert two.stdout.count("synthesizer saved to") == 1  # one process reports and writes
    summaries = [json.loads((tmp_path / run / "manifest.json").read_text())["training"] for run in ("one", "two")]
    assert summaries[0]["steps"] == summaries[1]["steps"] == 18
    assert summaries[1]["best_validation_loss"] == pytest.approx(summaries[0]["best_validation_loss"], abs=1e-3)
    weights = [load_file(tmp_path / run / "model" / "model.safetensors") for run in ("one", "two")]
    largest = max(float((weights[0][k] - weights[1][k]).abs().max()) for k in weights[0])
    assert largest < 1e-3, largest
    assert not torch.equal(weights[0]["model.norm.weight"], torch.ones_like(weights[0]["model.norm.weight"]))


@pytest.mark.parametrize("kind", ["tabular", "chat"])
def test_two_process_generation_writes_the_one_process_output(kind, cli_model, chat_model, tmp_path):
    model, suffix = (cli_model, ".csv") if kind == "tabular" else (chat_model, ".jsonl")
    n = 45 if kind == "tabular" else 20  # chats: 3 batches, 2 for the first process and 1 for the second
    common = ["generate", str(model), "-n", str(n), "--seed", "3", "--batch-size", "8"]
    outputs = {}
    for processes in (1, 2):
        out = tmp_path / f"out{processes}{suffix}"
        result = subprocess.run([sys.executable, "-m", "llmsynth", *common, "-o", str(out),
                                 "--num-processes", str(processes)], env=_env(), capture_output=True, text=True)
        assert result.returncode == 0, result.stderr[-8000:]  # the failing rank's error precedes the launcher's
        assert result.stdout.count(f"wrote {n}") == 1
        outputs[processes] = out
    assert "by 2 processes" in result.stdout
    assert sorted(p.name for p in tmp_path.iterdir()) == [f"out1{suffix}", f"out2{suffix}"]  # no parts left
    if kind == "tabular":
        pd.testing.assert_frame_equal(read_table(outputs[1]), read_table(outputs[2]))
    else:
        assert read_chats(outputs[1]).conversations == read_chats(outputs[2]).conversations
        assert len(read_chats(outputs[2]).conversations) == n
        assert result.stdout.count("re-scrubbed the output") == 1


@pytest.fixture(scope="module")
def bank_model(tmp_path_factory):
    from llmsynth.data.demo import bank
    from llmsynth.data.relational import Database, Layout
    from llmsynth.synthesizers import RelationalSynthesizer

    layout, tables = bank(40, seed=1)
    recipe = Recipe(tiny=TinyModelConfig(vocab_size=600, hidden_size=32, num_layers=1, num_heads=2,
                                         intermediate_size=64), train=TrainConfig(epochs=1, batch_size=32))
    folder = tmp_path_factory.mktemp("bank") / "model"
    RelationalSynthesizer(recipe).fit(Database(Layout.model_validate(layout), tables), scrub=False,
                                      progress=False).save(folder)
    return folder


def test_two_process_family_generation_writes_the_one_process_tables(bank_model, tmp_path):
    from llmsynth.data.relational import read_related

    common = ["generate", str(bank_model), "-n", "10", "--seed", "3", "--batch-size", "4"]  # batches of 4, 4 and 2
    for processes in (1, 2):
        result = subprocess.run([sys.executable, "-m", "llmsynth", *common, "-o", str(tmp_path / f"out{processes}"),
                                 "--num-processes", str(processes)], env=_env(), capture_output=True, text=True)
        assert result.returncode == 0, result.stderr[-8000:]
        assert result.stdout.count("wrote 10 families") == 1
    assert "by 2 processes" in result.stdout
    one, two = (read_related(str(tmp_path / f"out{processes}")) for processes in (1, 2))
    customers, accounts = two.tables["customers"], two.tables["accounts"]
    assert len(customers) == 10 and customers.customer_id.is_unique and accounts.account_id.is_unique
    assert set(accounts.customer_id) <= set(customers.customer_id)  # keys numbered on across the processes' batches
    assert set(two.tables["transactions"].account_id) <= set(accounts.account_id)
    for name, table in one.tables.items():
        pd.testing.assert_frame_equal(two.tables[name], table)

