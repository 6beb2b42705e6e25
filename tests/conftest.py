"""Shared fixtures: no network, a tiny recipe, and one small synthesizer trained once per session."""

from __future__ import annotations

import os
import socket

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"

import pytest  # noqa: E402

_real_connect = socket.socket.connect


def _local_only_connect(self, address):
    host = address[0] if isinstance(address, tuple) else address
    if self.family == socket.AF_UNIX or host in ("127.0.0.1", "::1", "localhost"):
        return _real_connect(self, address)
    raise RuntimeError(f"tests must not reach the network (tried {address!r})")


socket.socket.connect = _local_only_connect

from llmsynth import TabularSynthesizer  # noqa: E402
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
