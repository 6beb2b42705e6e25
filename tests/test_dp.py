"""Differentially private training with Opacus, on real tiny models: per-record gradients exist and are per record,
the weights move, held-out loss improves, the accountant's epsilon is reported and kept; LoRA too; what DP cannot
do is refused clearly."""

import json

import pytest
import torch
from accelerate import Accelerator
from click.testing import CliRunner
from conftest import tiny_recipe

from llmsynth import TabularSynthesizer
from llmsynth.cli import main
from llmsynth.errors import TrainError
from llmsynth.model import LoraSettings, TinyModelConfig, tiny_model, train_tokenizer, with_lora
from llmsynth.serialize.tabular import RowEncoder, row_text, segment_texts, value_texts
from llmsynth.train.dp import PrivateTraining, default_delta
from llmsynth.train.loop import make_optimizer


@pytest.fixture(scope="module")
def rows_and_encoder(demo_table):
    from llmsynth.data.schema import infer_schema

    learned = infer_schema(demo_table).learned
    names = [c.name for c in learned]
    rows = value_texts(demo_table, learned)
    tokenizer = train_tokenizer((row_text(names, r) for r in rows), 400,
                                whole_tokens=[t for n in names for t in segment_texts(n)])
    return rows, RowEncoder(tokenizer, names), tokenizer


def _private(model, rows, encoder, **train):
    config = tiny_recipe(epochs=2, dp_epsilon=8.0, **train).train
    trainable = [p for p in model.parameters() if p.requires_grad]
    optimizer = make_optimizer(trainable, config, Accelerator(cpu=True))
    return PrivateTraining(model, optimizer, rows, encoder, config, batch_size=32, processes=1)


def _model(tokenizer, lora: bool):
    torch.manual_seed(0)
    model = tiny_model(TinyModelConfig(hidden_size=32, num_layers=2, num_heads=2, intermediate_size=64), tokenizer)
    return with_lora(model, LoraSettings(r=4, lora_alpha=8)) if lora else model


@pytest.mark.filterwarnings("ignore:Full backward hook is firing")
@pytest.mark.parametrize("lora", [False, True], ids=["full", "lora"])
def test_gradients_are_per_record_and_the_weights_move(rows_and_encoder, lora):
    rows, encoder, tokenizer = rows_and_encoder
    model = _model(tokenizer, lora)
    trainable = [p for p in model.parameters() if p.requires_grad]
    frozen = [p for p in model.parameters() if not p.requires_grad]
    assert bool(frozen) == lora
    private = _private(model, rows, encoder)
    batch = next(b for b in private.loader if isinstance(b, dict))
    batch.pop("tokens")
    records = len(batch["input_ids"])
    private.loss(dict(batch)).backward()
    assert all(p.grad_sample is not None and p.grad_sample.shape[0] == records for p in trainable)
    assert all(getattr(p, "grad_sample", None) is None for p in frozen)
    norms = torch.stack([p.grad_sample.flatten(1).norm(dim=1) for p in trainable]).norm(dim=0)
    assert norms.std() > 0 and (norms > 0).all()  # one gradient per record, not one copied batch gradient
    private.optimizer.zero_grad(set_to_none=True)
    before = [p.detach().clone() for p in model.parameters()]
    private.step(batch)
    moved = [not torch.equal(a, p) for a, p in zip(before, model.parameters())]
    assert moved == [p.requires_grad for p in model.parameters()]  # the adapter moves, the base does not
    spent = private.finish()
    assert spent["steps"] == 1 and 0 < spent["epsilon"] < 8 and spent["delta"] == default_delta(len(rows))
    assert not hasattr(model, "autograd_grad_sample_hooks")  # Opacus's hooks are off the model again


def test_private_fit_learns_and_keeps_its_epsilon_in_the_manifest(demo_table, tmp_path, recipe_file):
    table = demo_table.head(400)
    table.to_csv(tmp_path / "customers.csv", index=False)
    result = CliRunner().invoke(main, ["train", str(tmp_path / "customers.csv"), "-o", str(tmp_path / "m"),
                                       "--recipe", str(recipe_file), "--epochs", "3", "--dp-epsilon", "8",
                                       "--no-scrub"])
    assert result.exit_code == 0, result.output
    assert "differentially private: epsilon" in result.output
    training = json.loads((tmp_path / "m" / "manifest.json").read_text())["training"]
    privacy = training["privacy"]
    train_rows = 400 - round(400 * 0.1)
    assert 7 < privacy["epsilon"] <= 8 + 1e-6 and privacy["target_epsilon"] == 8
    assert privacy["delta"] == pytest.approx(default_delta(train_rows)) and privacy["noise_multiplier"] > 0.3
    assert training["best_validation_loss"] < 0.95 * training["initial_validation_loss"]  # held-out loss improves
    rows = TabularSynthesizer.load(tmp_path / "m").sample(30)
    assert len(rows) == 30


def test_private_lora_fit_learns(demo_table, lora_base):
    table = demo_table[["state", "age", "is_fraud"]].head(300)
    synth = TabularSynthesizer(tiny_recipe(epochs=3, dp_epsilon=8.0, learning_rate=1e-2), base_model=str(lora_base))
    synth.fit(table, scrub=False, progress=False)
    summary = synth.summary
    assert summary.trainable_parameters < summary.parameters and summary.privacy["epsilon"] <= 8 + 1e-6
    assert summary.best_validation_loss < summary.initial_validation_loss
    assert synth.first_token_bias == {}  # calibration reads the rows' shares without noise: not under DP


def test_what_dp_cannot_do_is_refused(rows_and_encoder, demo_table):
    rows, encoder, tokenizer = rows_and_encoder
    model = _model(tokenizer, lora=False)
    with pytest.raises(TrainError, match="packing off"):
        _private(model, rows, encoder, packing=True)
    with pytest.raises(TrainError, match="one process"):
        config = tiny_recipe(dp_epsilon=8.0).train
        PrivateTraining(model, make_optimizer(list(model.parameters()), config, Accelerator(cpu=True)), rows,
                        encoder, config, batch_size=32, processes=2)
    with pytest.raises(TrainError, match="--resume is not available"):
        TabularSynthesizer(tiny_recipe(epochs=1, dp_epsilon=8.0)).fit(demo_table.head(200), resume=True,
                                                                     scrub=False, progress=False)
