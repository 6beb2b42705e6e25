"""The training loop: padding masked, validation improves, LoRA on a local pretrained base."""

import math
import re

import numpy as np
import pytest
import torch
from safetensors.torch import load_file
from transformers import AutoModelForCausalLM

from conftest import tiny_recipe
from llmsynth import TabularSynthesizer
from llmsynth.errors import TrainError
from llmsynth.model import tiny_model, train_tokenizer
from llmsynth.model.tiny import TinyModelConfig
from llmsynth.serialize.tabular import IGNORE, RowEncoder, row_text
from llmsynth.train.batches import column_order, epoch_examples, pack_batch, pad_batch
from llmsynth.train.config import TrainConfig
from llmsynth.train.loop import CHECKPOINT_DIR, _schedule, cpu_has_bf16, resolve_precision


def test_padding_does_not_change_a_rows_loss():
    names = ["a", "b"]
    tokenizer = train_tokenizer([" a is 1, b is xyz"] * 10, 300)
    encoder = RowEncoder(tokenizer, names)
    short = encoder.encode(["1", "x"], [0, 1])
    long = encoder.encode(["12345", "xyzxyzxyz"], [1, 0])
    torch.manual_seed(0)
    model = tiny_model(TinyModelConfig(hidden_size=32, num_layers=2, num_heads=2, intermediate_size=64), tokenizer)
    model.eval()

    def row_loss(batch, row):
        logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits[row, :-1]
        return torch.nn.functional.cross_entropy(logits, batch["labels"][row, 1:], ignore_index=IGNORE)

    alone, padded = pad_batch([short], encoder.pad_id), pad_batch([short, long], encoder.pad_id)
    assert padded["labels"][0, len(short[0]):].eq(IGNORE).all()
    assert torch.allclose(row_loss(alone, 0), row_loss(padded, 0), atol=1e-5)


def test_a_padded_batch_carries_each_rows_slot_positions(demo_table):
    tokenizer = train_tokenizer([" a is 1, b is xyz"] * 10, 300)
    encoder = RowEncoder(tokenizer, ["a", "b"])
    encoder.lay_out_slots([["1", "x"], ["12345", "xyzxyzxyz"]])
    rows = [encoder.encode(["1", "x"], [0, 1]), encoder.encode(["12345", "xyzxyzxyz"], [1, 0])]
    batch = pad_batch(rows, encoder.pad_id)
    for row, (ids, _, positions) in enumerate(rows):
        assert batch["position_ids"][row, :len(ids)].tolist() == positions
    assert rows[0][2] != list(range(len(rows[0][0])))  # the second column's slot starts past the first's margin
    with pytest.raises(TrainError, match="packing"):  # packing reads restarting positions as where records begin
        TabularSynthesizer(tiny_recipe(epochs=1, packing=True)).fit(demo_table.head(50), scrub=False, progress=False)


def test_packed_records_do_not_see_each_other():
    tokenizer = train_tokenizer([" a is 1, b is xyz"] * 10, 300)
    encoder = RowEncoder(tokenizer, ["a", "b"])
    rows = [encoder.encode([str(10 ** k), "xyz" * k], [k % 2, 1 - k % 2]) for k in range(1, 7)]
    torch.manual_seed(0)
    model = tiny_model(TinyModelConfig(hidden_size=32, num_layers=2, num_heads=2, intermediate_size=64), tokenizer)
    model.eval()
    longest = max(len(ids) for ids, _ in rows)
    padded, packed = pad_batch(rows, encoder.pad_id), pack_batch(rows, encoder.pad_id, 2 * longest)
    assert packed["input_ids"].shape[0] < len(rows) and int(packed["tokens"]) == int(padded["tokens"])
    assert packed["labels"].ne(IGNORE).sum() == padded["labels"].ne(IGNORE).sum()
    # A packed row's logits for each record equal that record's logits alone, and so does the batch loss.
    packed_logits = model(input_ids=packed["input_ids"], position_ids=packed["position_ids"], use_cache=False).logits
    for ids, _ in rows:
        alone = model(input_ids=torch.tensor([ids])).logits[0]
        row, start = next((r, s) for r in range(packed["input_ids"].shape[0])
                          for s in range(packed["input_ids"].shape[1] - len(ids) + 1)
                          if packed["input_ids"][r, s:s + len(ids)].tolist() == ids
                          and packed["position_ids"][r, s] == 0)
        assert torch.allclose(packed_logits[row, start:start + len(ids)], alone, atol=1e-5)
    loss_of = lambda batch: model(**{k: v for k, v in batch.items() if k != "tokens"}, use_cache=False).loss  # noqa: E731
    assert torch.allclose(loss_of(packed), loss_of(padded), atol=1e-5)


def test_a_batch_in_pieces_takes_the_whole_batch_s_step():
    """Bounded memory for long records on a big vocabulary: the step's gradients, summed over pieces of at most
    max_tokens tokens (each cut to its own longest row), are the whole batch's."""
    from accelerate import Accelerator

    from llmsynth.train.config import TrainConfig
    from llmsynth.train.loop import make_optimizer, micro_batches, training_step

    tokenizer = train_tokenizer([" a is 1, b is xyz"] * 10, 300)
    encoder = RowEncoder(tokenizer, ["a", "b"])
    batch = pad_batch([encoder.encode([str(10 ** k), "xyz" * k], [k % 2, 1 - k % 2]) for k in range(1, 8)],
                      encoder.pad_id)
    batch.pop("tokens")
    rows, width = batch["input_ids"].shape
    pieces = micro_batches(batch, 2 * width)
    assert all(p["input_ids"].numel() <= 2 * width for p in pieces) and pieces[0]["input_ids"].shape[1] < width
    assert sorted(int(r) for p in pieces for r in p["attention_mask"].sum(dim=1)) == sorted(
        batch["attention_mask"].sum(dim=1).tolist())  # every row once, cut to its piece's longest
    assert micro_batches(batch, None) == [batch] and len(micro_batches(batch, 1)) == rows  # a row at least
    weights = []
    for max_tokens in (None, 2 * width):
        torch.manual_seed(0)
        model = tiny_model(TinyModelConfig(hidden_size=32, num_layers=2, num_heads=2, intermediate_size=64),
                           tokenizer)
        initial = torch.cat([p.detach().flatten() for p in model.parameters()])
        accelerator = Accelerator(cpu=True)
        parameters = list(model.parameters())
        optimizer = make_optimizer(parameters, TrainConfig(learning_rate=0.01), accelerator)
        loss = training_step(model, dict(batch), optimizer, accelerator, parameters, 1.0, max_tokens)
        weights.append((float(loss), torch.cat([p.detach().flatten() for p in model.parameters()])))
    assert abs(weights[0][0] - weights[1][0]) < 1e-5 and torch.allclose(weights[0][1], weights[1][1], atol=1e-6)
    assert (weights[1][1] - initial).abs().max() > 1e-3  # the step moved the weights


def test_the_output_layer_reads_only_the_learned_positions_and_the_loss_is_the_model_s_own():
    from accelerate import Accelerator

    from llmsynth.train.loop import learned_loss

    tokenizer = train_tokenizer([" a is 1, b is xyz"] * 10, 300)
    encoder = RowEncoder(tokenizer, ["a", "b"])
    rows = [encoder.encode(["1", "x"], [0, 1]), encoder.encode(["12345", "xyzxyzxyz"], [1, 0, 1])]  # one a prompt
    batch = pad_batch(rows, encoder.pad_id)
    batch.pop("tokens")
    learned = int(batch["labels"][:, 1:].ne(IGNORE).sum())
    assert learned < batch["labels"][:, 1:].numel() - 1  # padding and the prompt are not learned
    torch.manual_seed(0)
    model = tiny_model(TinyModelConfig(hidden_size=32, num_layers=2, num_heads=2, intermediate_size=64), tokenizer)
    read = []
    model.get_output_embeddings().register_forward_hook(lambda _, args, out: read.append(args[0].shape[:-1]))
    summed = learned_loss(model, batch, Accelerator(cpu=True))
    ours = torch.autograd.grad(summed / learned, list(model.parameters()))
    assert read == [torch.Size([learned])]
    whole = model(**batch, use_cache=False).loss
    theirs = torch.autograd.grad(whole, list(model.parameters()))
    assert torch.allclose(summed / learned, whole, atol=1e-6)
    assert all(torch.allclose(a, b, atol=1e-6) for a, b in zip(ours, theirs))


def test_rows_of_very_different_lengths_go_through_in_pieces_of_their_own_length():
    """Related tables' records: a customer's short row beside a transaction under its family's long text. Sorted
    and cut in two, the batch pads short rows to their own length; rows of one length stay one pass."""
    from llmsynth.train.loop import micro_batches

    lengths = torch.tensor([12, 200] * 32)
    mask = (torch.arange(200) < lengths[:, None]).long()
    batch = {"input_ids": torch.arange(64)[:, None] * mask, "attention_mask": mask, "labels": mask}
    pieces = micro_batches(batch, None)
    assert [p["input_ids"].shape for p in pieces] == [(32, 12), (32, 200)]
    assert sorted(int(p["input_ids"][r, 0]) for p in pieces for r in range(32)) == list(range(64))
    same = {key: value[lengths == 200] for key, value in batch.items()}
    assert micro_batches(same, None) == [same]


def test_training_learns_and_reports(trained):
    summary = trained.summary
    assert summary.steps > 0 and summary.epochs == 3
    assert summary.initial_validation_loss > 0.9 * math.log(len(trained.tokenizer))  # untrained: near uniform
    assert summary.best_validation_loss < 0.7 * summary.initial_validation_loss
    assert summary.precision == "fp32" and summary.trainable_parameters == summary.parameters


def test_precision_auto_keeps_small_models_in_fp32_on_a_cpu_and_bf16_needs_native_support():
    assert resolve_precision("auto", 1_000_000) == "fp32"  # autocast would cost what it saves
    assert resolve_precision("fp32", 10**9) == "fp32"
    if cpu_has_bf16():
        assert resolve_precision("auto", 10**9) == resolve_precision("bf16", 10) == "bf16"
    else:
        assert resolve_precision("auto", 10**9) == "fp32"
        with pytest.raises(TrainError, match="AVX512-BF16"):
            resolve_precision("bf16", 10)


def test_early_stopping_stops_before_the_epoch_limit(demo_table):
    recipe = tiny_recipe(epochs=50, patience=1, learning_rate=0.05)
    synth = TabularSynthesizer(recipe).fit(demo_table.head(120))
    assert synth.summary.stopped_because == "early stopping" and synth.summary.epochs < 50


def test_lora_on_a_local_pretrained_base(demo_table, lora_base, tmp_path):
    table = demo_table[["state", "age", "is_fraud"]].head(200)
    synth = TabularSynthesizer(tiny_recipe(epochs=1), base_model=str(lora_base)).fit(table)
    assert synth.summary.trainable_parameters < synth.summary.parameters
    synth.save(tmp_path / "lora")
    assert (tmp_path / "lora" / "adapter" / "adapter_model.safetensors").is_file()
    rows = TabularSynthesizer.load(tmp_path / "lora").sample(40, conditions={"state": "NY"})
    assert (rows["state"] == "NY").all() and rows["age"].between(18, 85).all()


def test_a_base_that_training_only_made_worse_is_kept_as_it_was(demo_table, lora_base):
    table = demo_table[["state", "age", "is_fraud"]].head(200)
    synth = TabularSynthesizer(tiny_recipe(epochs=1, learning_rate=1e6), base_model=str(lora_base)).fit(table)
    assert synth.summary.best_validation_loss == synth.summary.initial_validation_loss
    ids = torch.tensor([synth.tokenizer("state is CA, age is 33")["input_ids"]])
    base = AutoModelForCausalLM.from_pretrained(lora_base).eval()
    assert torch.allclose(synth.ready_model()(ids).logits, base(ids).logits, atol=1e-6)


def test_every_shipped_recipe_loads_by_name():
    from llmsynth.train.config import RECIPE_DIR, load_recipe

    recipes = {p.stem: load_recipe(p.stem) for p in RECIPE_DIR.glob("*.yaml")}
    assert {"tiny-cpu", "tiny-chat", "smollm2-135m-lora", "smollm2-360m-lora", "qwen2.5-0.5b-lora"} <= set(recipes)
    assert recipes["qwen2.5-0.5b-lora"].lora.target_modules[0] == "q_proj"


def test_no_progress_bars_when_asked_for_none(demo_table, capfd):
    """Scripted batch runs call fit(progress=False): nothing on stderr from training either."""
    TabularSynthesizer(tiny_recipe(epochs=1)).fit(demo_table.head(120), scrub=False, progress=False)
    assert not re.search(r"training: +\d+%", capfd.readouterr().err)  # tqdm's bar


def test_a_run_that_levels_off_decays_its_learning_rate_and_stops(demo_table):
    """anneal_below: once validation improves by less than that share, a last decay and the end, not 50 epochs."""
    recipe = tiny_recipe(epochs=50, patience=50, anneal_below=0.05, anneal_epochs=1)
    synth = TabularSynthesizer(recipe).fit(demo_table.head(240), scrub=False, progress=False)
    assert synth.summary.stopped_because == "levelled off" and synth.summary.epochs < 50


def test_a_schedule_short_enough_runs_to_its_end_and_keeps_its_last_weights(demo_table, tmp_path):
    """full_schedule_steps: a small table's run is not ended by patience or the level-off rule (its validation loss
    is a few rows' noisy figure) but decays to the end of its epochs; a longer schedule stops as before."""
    table = demo_table.head(120)  # ~4 steps an epoch: 30 epochs are ~120 steps
    settings = {"epochs": 30, "patience": 1, "learning_rate": 0.02, "anneal_below": 0.05, "anneal_epochs": 1}
    synth = TabularSynthesizer(tiny_recipe(**settings, full_schedule_steps=1000)).fit(
        table, workdir=tmp_path, scrub=False, progress=False)
    assert synth.summary.stopped_because == "epochs" and synth.summary.epochs == 30
    last = load_file(next((tmp_path / CHECKPOINT_DIR).glob("step-*")) / "weights.safetensors")
    weights = synth.model.state_dict()
    assert last and all(torch.equal(weights[name], tensor) for name, tensor in last.items())
    long = TabularSynthesizer(tiny_recipe(**settings, full_schedule_steps=10)).fit(
        table, scrub=False, progress=False).summary
    assert long.stopped_because in ("early stopping", "levelled off") and long.epochs < 30


def test_the_last_decay_runs_straight_from_where_the_rate_stood_to_a_tenth():
    config = tiny_recipe(epochs=10, learning_rate=1e-2).train
    state = {}
    learning_rate = _schedule(config, total_steps=1000, state=state)
    assert learning_rate(500, 0.0) == pytest.approx(1e-3 + 9e-3 * 0.5 * (1 + math.cos(math.pi * 0.47 / 0.97)))
    state.update(anneal_from=500, anneal_until=600, anneal_rate=5e-3)
    assert [learning_rate(step, 0.0) for step in (500, 550, 600, 700)] == pytest.approx([5e-3, 3e-3, 1e-3, 1e-3])


def test_keep_last_ends_with_the_decay_s_weights_and_patience_still_returns_the_best(demo_table, tmp_path):
    """keep: last returns the weights at the end of the schedule, though validation was lower before (a rare
    pattern is still learned there); a run that patience ends has nothing to gain from its last weights."""
    table = demo_table.head(120)
    recipe = tiny_recipe(epochs=60, patience=500, learning_rate=0.02, keep="last")  # overfits 120 rows at the end
    synth = TabularSynthesizer(recipe).fit(table, workdir=tmp_path, scrub=False, progress=False)
    final = load_file(next((tmp_path / CHECKPOINT_DIR).glob("step-*")) / "weights.safetensors")
    weights = synth.model.state_dict()
    assert final and all(torch.equal(weights[name], tensor) for name, tensor in final.items())
    assert synth.summary.kept_validation_loss > synth.summary.best_validation_loss
    recipe = tiny_recipe(epochs=50, patience=1, learning_rate=0.05, keep="last")
    stopped = TabularSynthesizer(recipe).fit(table, scrub=False, progress=False).summary
    assert stopped.stopped_because == "early stopping" and stopped.kept_validation_loss == stopped.best_validation_loss


def test_the_weight_average_counts_each_step_less_than_the_next_and_never_the_initial_weights():
    from llmsynth.train.average import WeightAverage

    model = torch.nn.Linear(1, 1, bias=False)
    frozen = torch.nn.Linear(1, 1, bias=False).requires_grad_(False)
    average = WeightAverage(torch.nn.Sequential(model, frozen), steps=2)  # each step half the next
    assert list(average.named) == ["0.weight"]  # trainable weights only
    for value in (4.0, 2.0, 1.0):
        model.weight.data.fill_(value)
        average.update()
    expected = (0.25 * 4 + 0.5 * 2 + 1 * 1) / (0.25 + 0.5 + 1)
    with average.applied():
        assert model.weight.item() == pytest.approx(expected)
    assert model.weight.item() == 1.0  # the trained weights back
    restored = WeightAverage(torch.nn.Sequential(model, frozen), steps=2)
    restored.load_state_dict(average.state_dict())
    restored.copy_to_model()
    assert model.weight.item() == pytest.approx(expected)


def test_a_run_with_a_weight_average_ends_with_the_average(demo_table, tmp_path):
    """keep: last with weight_average_epochs: the model holds the averaged weights, not the last step's."""
    recipe = tiny_recipe(epochs=4, keep="last", weight_average_epochs=1)
    synth = TabularSynthesizer(recipe).fit(demo_table.head(240), workdir=tmp_path, scrub=False, progress=False)
    last = next((tmp_path / CHECKPOINT_DIR).glob("step-*"))
    trained, average = load_file(last / "weights.safetensors"), load_file(last / "average.safetensors")
    steps_per_epoch = 7  # 216 training rows in batches of 32: an average over the last ~7 steps
    weights, scale = synth.model.state_dict(), 1 - (1 - 1 / steps_per_epoch) ** int(average["updates"])
    assert trained and all(torch.allclose(weights[name], average[f"running.{name}"] / scale) for name in trained)
    assert not all(torch.equal(weights[name], tensor) for name, tensor in trained.items())


def test_conditional_order_moves_columns_or_writes_them_as_a_prompt_ahead_of_the_whole_row():
    config = TrainConfig(schema_order_share=0.2, prompt_share=0.5)
    rng = np.random.default_rng(0)
    orders = [column_order(6, config, rng) for _ in range(2000)]
    prompted = [order for order in orders if len(order) > 6]
    moved = [order for order in orders if len(order) == 6 and list(order) != list(range(6))]
    assert 0.35 < len(prompted) / len(orders) < 0.45 and 0.3 < len(moved) / len(orders) < 0.45
    for order in prompted:  # up to half the columns, each once, then the whole row in the table's order
        prompt = list(order[:-6])
        assert list(order[-6:]) == list(range(6)) and 1 <= len(prompt) <= 3 and len(set(prompt)) == len(prompt)
    assert all(sorted(order) == list(range(6)) for order in moved)
    assert TrainConfig(prompt_share=0.5).sampling_order == "prompt"
    assert TrainConfig().sampling_order == "conditional"
    assert TrainConfig(column_order="schema", prompt_share=0.5).sampling_order == "schema"


def test_validation_keeps_the_rows_order_and_leaves_a_prompt_s_values_unlearned_in_the_row():
    """Sampling writes a condition's values in the row itself: their loss there (copying the prompt) kept falling
    for epochs after the rest had levelled off, and held training on (Adult: 16 epochs, not 12)."""
    names = ["state", "age", "rate"]
    rows = [["CA", "34", "5.25"], ["NY", "", "112.00"], ["Utah", "7", "0.5"]] * 10
    encoder = RowEncoder(train_tokenizer([row_text(names, r) for r in rows], 300), names)
    config = TrainConfig(schema_order_share=0.0, prompt_share=1.0)
    examples = epoch_examples(rows, encoder, config, 3, validation=True)
    rng = np.random.default_rng([config.seed, 3])  # no shuffle drawn: the records' own order
    orders = [column_order(3, config, rng) for _ in rows]
    assert examples == [encoder.encode(row, order, given_learned=False) for row, order in zip(rows, orders)]
    for (_, labels), row, order in zip(examples, rows, orders):  # against training's: the prompt's values alone
        given = order[:encoder.prompt_length(order)]
        unlearned = sum(a != b for a, b in zip(labels, encoder.encode(row, order)[1]))
        assert unlearned == sum(len(encoder.value_ids(row[column], column)) for column in given)
