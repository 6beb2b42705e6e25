"""Shared fixtures: no network, a tiny recipe, and small synthesizers (Python and command line) trained once."""

from __future__ import annotations

import json
import os
import socket

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"

import pytest  # noqa: E402
import yaml  # noqa: E402
from click.testing import CliRunner  # noqa: E402

_real_connect = socket.socket.connect


def _local_only_connect(self, address):
    host = address[0] if isinstance(address, tuple) else address
    if self.family == socket.AF_UNIX or host in ("127.0.0.1", "::1", "localhost"):
        return _real_connect(self, address)
    raise RuntimeError(f"tests must not reach the network (tried {address!r})")


socket.socket.connect = _local_only_connect


@pytest.fixture(scope="session", autouse=True)
def base_cache(tmp_path_factory):
    """Dequantized GGUF bases go to a folder of this test run, not the user's cache: each run pays for and checks
    the dequantization once."""
    from llmsynth.model.pretrained import CACHE_ENV

    folder = tmp_path_factory.mktemp("llmsynth-cache")
    before = os.environ.get(CACHE_ENV)
    os.environ[CACHE_ENV] = str(folder)
    yield folder
    os.environ.pop(CACHE_ENV) if before is None else os.environ.__setitem__(CACHE_ENV, before)

from llmsynth import TabularSynthesizer  # noqa: E402
from llmsynth.cli import main  # noqa: E402
from llmsynth.data import write_table  # noqa: E402
from llmsynth.data.demo import customers  # noqa: E402
from llmsynth.model import TinyModelConfig  # noqa: E402
from llmsynth.train.config import Recipe, TrainConfig  # noqa: E402


def tiny_recipe(epochs: int = 2, **train) -> Recipe:
    return Recipe(
        tiny=TinyModelConfig(vocab_size=400, hidden_size=32, num_layers=2, num_heads=2, intermediate_size=64),
        train=TrainConfig(**{"epochs": epochs, "batch_size": 32, "learning_rate": 3e-3, **train}),
    )


@pytest.fixture(scope="session")
def demo_table():
    return customers(600, seed=1)


@pytest.fixture(scope="session")
def trained(demo_table) -> TabularSynthesizer:
    return TabularSynthesizer(tiny_recipe(epochs=3)).fit(demo_table)


@pytest.fixture(scope="session")
def lora_base(tmp_path_factory):
    """A local "pretrained" base: a tiny Llama-style model and its tokenizer saved as a hub model would be."""
    from llmsynth.model import TinyModelConfig, tiny_model, train_tokenizer
    from llmsynth.serialize.tabular import row_text

    base_dir = tmp_path_factory.mktemp("base")
    tokenizer = train_tokenizer([row_text(["x"], ["1"])] * 5 + ["state is CA, age is 33"] * 5, 400)
    model = tiny_model(TinyModelConfig(hidden_size=32, num_layers=2, num_heads=2, intermediate_size=64), tokenizer)
    model.save_pretrained(base_dir)
    tokenizer.save_pretrained(base_dir)
    return base_dir


@pytest.fixture(scope="session")
def recipe_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("recipe") / "test.yaml"
    path.write_text(yaml.safe_dump({
        "tiny": {"vocab_size": 400, "hidden_size": 32, "num_layers": 2, "num_heads": 2, "intermediate_size": 64},
        "train": {"epochs": 2, "batch_size": 32, "learning_rate": 0.003},
    }))
    return path


@pytest.fixture(scope="session")
def cli_model(tmp_path_factory, demo_table, recipe_file):
    folder = tmp_path_factory.mktemp("cli")
    demo_table.head(300).to_csv(folder / "customers.csv", index=False)
    result = CliRunner().invoke(main, ["train", str(folder / "customers.csv"), "-o", str(folder / "model"),
                                       "--recipe", str(recipe_file)])
    assert result.exit_code == 0, result.output
    assert "synthesizer saved to" in result.output and "scrubbed first: customer_id 300, name 300" in result.output
    assert not (folder / "model" / ".checkpoint").exists()
    scrub = json.loads((folder / "model" / "manifest.json").read_text())["scrub"]
    assert scrub["columns"]["ssn"]["policy"].startswith("identifier") and scrub["columns"]["age"]["policy"] == "kept"
    return folder / "model"


@pytest.fixture(scope="module")
def split():
    """Train, holdout and a fresh draw of the same distribution: 600 demo customers each, disjoint."""
    source = customers(1800, seed=4)
    return source.iloc[:600], source.iloc[600:1200].reset_index(drop=True), source.iloc[1200:].reset_index(drop=True)


@pytest.fixture(scope="module")
def table_files(split, tmp_path_factory):
    """The split as CSV files, and a copy of the training rows passed off as synthetic (copy.csv)."""
    folder = tmp_path_factory.mktemp("eval")
    for name, table in zip(("train", "holdout", "fresh"), split):
        write_table(table, folder / f"{name}.csv")
    write_table(split[0], folder / "copy.csv")
    return folder


def eval_files(folder, synthetic: str, *options: str):
    """`llmsynth eval` of one synthetic file of `table_files` against its train and holdout, into report-<file>/."""
    return CliRunner().invoke(main, ["eval", "--real", str(folder / "train.csv"), "--holdout",
                                     str(folder / "holdout.csv"), "--synthetic", str(folder / synthetic),
                                     "-o", str(folder / f"report-{synthetic}"), *options])
