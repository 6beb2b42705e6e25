"""The training loop: batches, forward, loss, backward, clip, step, log, validate, checkpoint.

Accelerate handles devices, processes (DDP under `accelerate launch`) and bf16. Rows are re-serialized every
epoch with a fresh seeded column order (see `batches.column_order`); padding and the column-name prefixes the sampler
writes itself are masked out of the loss. Batches are padded, or packed with no attention across records.
"""

from __future__ import annotations

import json
import logging
import math
import shutil
import time
from collections.abc import Sequence
from contextlib import nullcontext
from pathlib import Path

import numpy as np
import torch
from accelerate import Accelerator
from accelerate.utils import DistributedType
from pydantic import BaseModel
from safetensors.torch import load_file, save_file
from torch.utils.data import DataLoader
from tqdm.auto import tqdm

from llmsynth.errors import TrainError
from llmsynth.processes import on_cpu
from llmsynth.serialize.tabular import IGNORE
from llmsynth.train.average import WeightAverage
from llmsynth.train.batches import collate, epoch_examples
from llmsynth.train.config import TrainConfig

log = logging.getLogger(__name__)

CHECKPOINT_DIR = ".checkpoint"
ANNEAL_WINDOW_STEPS = 100


class TrainSummary(BaseModel):
    epochs: float
    initial_validation_loss: float
    steps: int
    best_validation_loss: float
    kept_validation_loss: float | None = None  # of the weights it ends with (TrainConfig.keep); None: older models
    last_train_loss: float
    tokens_per_second: float
    seconds: float
    stopped_because: str
    precision: str
    parameters: int
    trainable_parameters: int
    privacy: dict | None = None  # with DP: epsilon spent, delta, noise multiplier, clipping norm, sample rate, steps


# Below this size autocast costs about what bf16 matmuls save on a CPU (the tiny presets: 1.0-1.2x); a 135M-parameter
# base trains 1.4x faster (docs/benchmarks.md).
CPU_BF16_MIN_PARAMETERS = 20_000_000


def cpu_has_bf16() -> bool:
    """Whether this CPU multiplies bf16 natively (AVX512-BF16 or AMX); elsewhere autocast emulates it, slowly."""
    probes = [getattr(torch.cpu, name, None) for name in ("_is_avx512_bf16_supported", "_is_amx_tile_supported")]
    return any(probe() for probe in probes if probe is not None)


def resolve_precision(precision: str, parameters: int) -> str:
    """auto: bf16 where the hardware computes it natively, a GPU with bf16 or, for a model large enough to gain, a CPU
    with AVX512-BF16 or AMX; fp32 elsewhere."""
    gpu = torch.cuda.is_available()
    native = torch.cuda.is_bf16_supported() if gpu else cpu_has_bf16()
    if precision == "auto":
        large_enough = gpu or parameters >= CPU_BF16_MIN_PARAMETERS
        return "bf16" if native and large_enough else "fp32"
    if precision == "bf16" and not native:
        raise TrainError("precision bf16 needs a GPU or a CPU with AVX512-BF16 or AMX; this machine has neither: use "
                         "fp32 (or auto)")
    return precision


def train_model(model: torch.nn.Module, train_rows: Sequence, validation_rows: Sequence, encoder, config: TrainConfig,
                workdir: Path, resume: bool = False, fingerprint: str = "", progress: bool = True) -> TrainSummary:
    """Train in place; on return the model holds the weights `config.keep` asks for (of the weights' running average
    with `config.weight_average_epochs`). `progress`: a progress bar (on the main process)."""
    parameters = sum(p.numel() for p in model.parameters())
    precision = "fp32" if config.dp_epsilon is not None else resolve_precision(config.precision, parameters)
    accelerator, bf16 = Accelerator(cpu=on_cpu()), precision == "bf16"  # bf16: see _autocast
    torch.manual_seed(config.seed)
    checkpoint = Path(workdir) / CHECKPOINT_DIR
    batch_size = max(1, config.batch_size // accelerator.num_processes)
    steps_per_epoch = math.ceil(len(train_rows) / (batch_size * accelerator.num_processes))
    total_steps = steps_per_epoch * config.epochs
    if config.full_schedule_steps is not None and total_steps <= config.full_schedule_steps:
        config = config.model_copy(update={"patience": total_steps + 1, "anneal_below": None, "keep": "last"})
    eval_steps = {math.ceil(steps_per_epoch * (k + 1) / config.evals_per_epoch) for k in range(config.evals_per_epoch)}
    trainable = [p for p in model.parameters() if p.requires_grad]
    optimizer = make_optimizer(trainable, config, accelerator)
    model, optimizer, private = _prepared(model, optimizer, accelerator, train_rows, encoder, config, batch_size,
                                          resume)
    validation = accelerator.prepare(DataLoader(
        epoch_examples(validation_rows, encoder, config, 1_000_000, validation=True),
        batch_size=batch_size, collate_fn=collate(config, encoder.pad_id)))
    average = config.weight_average_epochs and WeightAverage(model, config.weight_average_epochs * steps_per_epoch)
    state = _starting_state(resume, checkpoint, accelerator, model, optimizer, validation, fingerprint,
                            config.max_batch_tokens, bf16, average)
    state["anneal_steps"] = math.ceil(config.anneal_epochs * steps_per_epoch)
    learning_rate = _schedule(config, total_steps, state)
    started = time.perf_counter() - state["seconds"]
    loss, last_loss, shown, stopped = None, math.nan, 0.0, ""
    bar = tqdm(total=total_steps, initial=state["global_step"], desc="training", unit="step",
               disable=not (progress and accelerator.is_local_main_process))
    while state["epoch"] < config.epochs:
        model.train()
        batches = private.loader if private is not None else _epoch_batches(train_rows, encoder, config, state,
                                                                             batch_size, accelerator)
        for batch in batches:
            if not isinstance(batch, dict):
                continue  # an empty Poisson batch under DP (probability e^-batch_size): nothing to learn from
            for group in optimizer.param_groups:
                group["lr"] = learning_rate(state["global_step"], time.perf_counter() - started)
            state["tokens"] += batch.pop("tokens") * accelerator.num_processes
            loss = private.step(batch) if private is not None else training_step(
                model, batch, optimizer, accelerator, trainable, config.max_grad_norm, config.max_batch_tokens, bf16)
            if average is not None:
                average.update()
            state["step_in_epoch"] += 1
            state["global_step"] += 1
            elapsed = time.perf_counter() - started
            bar.update(1)
            if elapsed - shown > 1:  # reading the loss waits for the device: once a second, not every step
                shown, last_loss = elapsed, loss.item()
                bar.set_postfix(loss=f"{last_loss:.3f}", tok_s=f"{state['tokens'] / elapsed:.0f}")
            if state["step_in_epoch"] in eval_steps:
                stopped = _validate(model, validation, accelerator, state, checkpoint, optimizer, config, elapsed,
                                    bf16, average)
                bar.set_postfix(loss=f"{last_loss:.3f}", val=f"{state['last_val']:.3f}",
                                tok_s=f"{state['tokens'] / elapsed:.0f}")
                if stopped:
                    break
                model.train()
        if stopped:
            break
        state["epoch"] += 1
        state["step_in_epoch"] = 0
    bar.close()
    privacy = private.finish() if private is not None else None
    last_loss = loss.item() if loss is not None else last_loss
    stopped = stopped or "epochs"
    accelerator.wait_for_everyone()
    unwrapped = accelerator.unwrap_model(model)
    kept_loss = _keep_weights(config, stopped, state, unwrapped, checkpoint, average)
    seconds = time.perf_counter() - started
    return TrainSummary(
        epochs=round(state["epoch"] + state["step_in_epoch"] / steps_per_epoch, 3),
        initial_validation_loss=state["initial_validation_loss"], steps=state["global_step"],
        best_validation_loss=state["best"], kept_validation_loss=kept_loss, last_train_loss=last_loss,
        tokens_per_second=state["tokens"] / seconds,
        seconds=seconds, stopped_because=stopped, precision=precision, privacy=privacy,
        parameters=parameters,
        trainable_parameters=sum(p.numel() for p in unwrapped.parameters() if p.requires_grad))


def _keep_weights(config: TrainConfig, stopped: str, state: dict, unwrapped, checkpoint: Path,
                  average: WeightAverage | None) -> float:
    """Put the weights training ends with (`config.keep`; with an average, the average's) in the model; returns
    their validation loss."""
    if config.keep == "last" and stopped != "early stopping":  # last_val: every run validates at least once
        if average is not None:
            average.copy_to_model()
        return state["last_val"]
    unwrapped.load_state_dict(load_file(checkpoint / "best.safetensors"), strict=False)
    return state["best"]


def _prepared(model, optimizer, accelerator: Accelerator, train_rows: Sequence, encoder, config: TrainConfig,
              batch_size: int, resume: bool):
    """The model and optimizer on their devices (and processes); under DP, Opacus wraps the plain model and
    optimizer and draws the batches itself (the third value)."""
    if config.dp_epsilon is None:
        return *accelerator.prepare(model, optimizer), None
    from llmsynth.train.dp import PrivateTraining

    if resume:
        raise TrainError("--resume is not available with differential privacy: the accountant's record of the "
                         "steps taken is not checkpointed; start again")
    private = PrivateTraining(model.to(accelerator.device), optimizer, train_rows, encoder, config, batch_size,
                              accelerator.num_processes)
    return model, private.optimizer, private


def _epoch_batches(train_rows: Sequence, encoder, config: TrainConfig, state: dict, batch_size: int,
                   accelerator: Accelerator) -> DataLoader:
    """This epoch's batches, in its seeded order, past those a resumed run took already."""
    loader = DataLoader(epoch_examples(train_rows, encoder, config, state["epoch"]),
                        batch_size=batch_size, collate_fn=collate(config, encoder.pad_id))
    return accelerator.skip_first_batches(accelerator.prepare(loader), state["step_in_epoch"])


def _schedule(config: TrainConfig, total_steps: int, state: dict):
    """The learning rate at a step after some seconds: linear warm-up, then cosine decay to 10% by the end of the
    epochs or of the time budget, whichever comes first; once validation levels off (`anneal_below`, see
    `_levelled_off`), a straight decay from where it stands to 10% over the last `anneal_epochs`."""
    budget = config.max_minutes * 60 if config.max_minutes else math.inf
    floor = 0.1 * config.learning_rate

    def learning_rate(step: int, elapsed: float) -> float:
        if state.get("anneal_from") is not None:
            done = min(1.0, (step - state["anneal_from"]) / max(1, state["anneal_until"] - state["anneal_from"]))
            return state["anneal_rate"] + (floor - state["anneal_rate"]) * done
        progress = max(step / total_steps, elapsed / budget)
        if progress < config.warmup_ratio:
            return config.learning_rate * (progress + 1 / total_steps) / config.warmup_ratio
        remaining = (progress - config.warmup_ratio) / (1 - config.warmup_ratio)
        return floor + (config.learning_rate - floor) * 0.5 * (1 + math.cos(math.pi * min(1.0, remaining)))

    return learning_rate


def _starting_state(resume: bool, checkpoint: Path, accelerator: Accelerator, model, optimizer, validation,
                    fingerprint: str, max_tokens: int | None, bf16: bool, average: WeightAverage | None) -> dict:
    """Where a resumed run left off; for a fresh run, step 0 with no older run's checkpoints left to resume into."""
    if resume:
        if accelerator.distributed_type == DistributedType.FSDP:
            raise TrainError("--resume under FSDP is not supported: checkpoints hold the main process's optimizer "
                             "shard only; start again, or resume under DDP (training/accelerate/multi-gpu.yaml)")
        state = _load_checkpoint(checkpoint, accelerator.unwrap_model(model), optimizer, fingerprint, average)
        log.info("resuming at epoch %d, step %d", state["epoch"], state["global_step"])
        return state
    if accelerator.is_main_process:
        for stale in checkpoint.glob("step-*"):
            shutil.rmtree(stale)
    initial = validation_loss(model, validation, accelerator, max_tokens, bf16)
    # The starting weights are the first candidate: a pretrained base that training only made worse is kept as it
    # was (a model from random init is always beaten at the first validation).
    _save_best(checkpoint, accelerator, model)
    return {"epoch": 0, "step_in_epoch": 0, "global_step": 0, "best": initial, "bad_evals": 0, "seconds": 0.0,
            "tokens": 0, "fingerprint": fingerprint, "initial_validation_loss": initial, "best_history": [(0, initial)]}


def make_optimizer(parameters: list, config: TrainConfig, accelerator: Accelerator) -> torch.optim.Optimizer:
    """AdamW, with the fused kernel on GPUs."""
    return torch.optim.AdamW(parameters, lr=config.learning_rate, weight_decay=config.weight_decay,
                             fused=accelerator.device.type == "cuda")


def training_step(model, batch: dict, optimizer, accelerator: Accelerator, parameters: list, max_grad_norm: float,
                  max_tokens: int | None = None, bf16: bool = False):
    """Forward, backward, clip, step; returns the loss without waiting for the device to finish.

    The loss is a sum over this process's predicted tokens divided by the count over all processes, times the
    number of processes (which DDP's gradient averaging divides out again): N processes take exactly the step
    one process takes on the same global batch, however the tokens fall between them. With `max_tokens` the batch
    goes through in pieces whose gradients add up to the whole batch's.
    """
    targets = batch["labels"][:, 1:].ne(IGNORE).sum()
    if accelerator.num_processes > 1:
        targets = accelerator.reduce(targets, "sum")
    pieces = micro_batches(batch, max_tokens)
    loss = torch.zeros((), device=targets.device)
    for number, piece in enumerate(pieces, start=1):
        with accelerator.no_sync(model) if number < len(pieces) else nullcontext():  # one gradient all-reduce
            with _autocast(accelerator, bf16):
                part = learned_loss(model, piece, accelerator) / targets * accelerator.num_processes
            accelerator.backward(part)
        loss += part.detach()
    accelerator.clip_grad_norm_(parameters, max_grad_norm)
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    return loss


def learned_loss(model, piece: dict, accelerator: Accelerator) -> torch.Tensor:
    """The summed cross-entropy of the tokens `piece`'s labels learn. The output layer reads the hidden states only
    where a token is learned, not at a prompt's, a padding's or an unlearned segment's positions (a fifth of a tiny
    model's on Adult, where that layer is a third of a token's multiply-adds; most of a chat's, over a pretrained
    base's vocabulary of 49,152)."""
    labels = piece["labels"][:, 1:]
    learned = labels.ne(IGNORE)
    head = accelerator.unwrap_model(model).get_output_embeddings()
    handle = head.register_forward_pre_hook(lambda _, args: (args[0][:, :-1][learned],))
    try:
        logits = model(**{key: value for key, value in piece.items() if key != "labels"}, use_cache=False).logits
    finally:
        handle.remove()
    return torch.nn.functional.cross_entropy(logits.float(), labels[learned], reduction="sum")


# A forward and backward pass's fixed cost in padded tokens' worth: measured ~180 for the tiny model on 2 CPU cores
# (7 ms a pass, 0.04 ms a token).
PASS_COST_TOKENS = 256


def micro_batches(batch: dict, max_tokens: int | None) -> list[dict]:
    """The batch in pieces of whole rows whose gradients add up to the whole batch's: padded rows sorted by length
    and cut where a piece's own padding saves more than a pass costs (records of very different lengths: a
    customer's row beside a transaction with its family's text above it), each piece of at most `max_tokens`
    tokens (one row at least) and cut to its own longest row; the whole batch where that is cheapest. On a GPU a
    batch that fits goes whole: reading its lengths would make every step wait for the device."""
    rows, width = batch["input_ids"].shape
    if "attention_mask" not in batch:  # packed rows: all about the pack length
        step = rows if max_tokens is None else max(1, max_tokens // width)
        return [{key: value[start:start + step] for key, value in batch.items()} for start in range(0, rows, step)]
    if batch["attention_mask"].device.type != "cpu" and (max_tokens is None or rows * width <= max_tokens):
        return [batch]
    lengths = batch["attention_mask"].sum(dim=1)
    order = torch.argsort(lengths, stable=True)
    cuts = _piece_ends(lengths[order].tolist(), max_tokens, PASS_COST_TOKENS)
    if len(cuts) == 1 and int(lengths.max()) == width:
        return [batch]
    pieces, start = [], 0
    for end in cuts:
        rows_in_piece, used = order[start:end], int(lengths[order[end - 1]])
        pieces.append({key: value[rows_in_piece, :used] for key, value in batch.items()})
        start = end
    return pieces


def _piece_ends(lengths: list[int], max_tokens: int | None, pass_cost: int) -> list[int]:
    """Where to cut rows sorted by length so that padded tokens plus `pass_cost` per piece are fewest, with
    no piece over `max_tokens` but a single row (dynamic programming over the cut points)."""
    sorted_lengths = np.array(lengths, dtype=np.int64)
    best, start = np.zeros(len(lengths) + 1), np.zeros(len(lengths) + 1, dtype=np.int64)
    for end in range(1, len(lengths) + 1):
        sizes = (end - np.arange(end)) * sorted_lengths[end - 1]
        costs = best[:end] + sizes + pass_cost
        if max_tokens is not None:
            costs[:end - 1][sizes[:end - 1] > max_tokens] = np.inf
        start[end] = int(np.argmin(costs))
        best[end] = costs[start[end]]
    ends, end = [], len(lengths)
    while end > 0:
        ends.append(end)
        end = int(start[end])
    return ends[::-1]


@torch.no_grad()
def validation_loss(model, batches, accelerator: Accelerator, max_tokens: int | None = None,
                    bf16: bool = False) -> float:
    model.eval()
    total, count = torch.zeros((), device=accelerator.device), torch.zeros((), device=accelerator.device)
    for batch in batches:
        batch.pop("tokens")
        for piece in micro_batches(batch, max_tokens):
            with _autocast(accelerator, bf16):
                total += learned_loss(model, piece, accelerator)
            count += piece["labels"][:, 1:].ne(IGNORE).sum()
    total, count = accelerator.reduce(total), accelerator.reduce(count)
    return float(total / count)


def _autocast(accelerator: Accelerator, bf16: bool):
    """bf16 by our own autocast around the forward passes, not Accelerate's: its setting is fixed for the whole
    process (a second model in one session could not change it) and its wrapper stays on the model it returns."""
    return torch.autocast(accelerator.device.type, dtype=torch.bfloat16, enabled=bf16)


def _validate(model, validation, accelerator, state, checkpoint, optimizer, config, elapsed, bf16: bool,
              average: WeightAverage | None) -> str:
    """Validation loss (of the averaged weights where training keeps an average, which are then the best ones
    saved), early stopping and a checkpoint; returns why training stops, or ''."""
    with average.applied() if average is not None else nullcontext():
        loss = validation_loss(model, validation, accelerator, config.max_batch_tokens, bf16)
        improved = loss < state["best"] - 1e-4  # never for a NaN loss (a diverged run): the best weights stay
        if improved:
            _save_best(checkpoint, accelerator, model)
    state["last_val"] = loss
    state["seconds"] = elapsed
    state["bad_evals"] = 0 if improved else state["bad_evals"] + 1
    state["best"] = loss if improved else state["best"]
    if _levelled_off(state, config) and state.get("anneal_from") is None:
        state.update(anneal_from=state["global_step"], anneal_until=state["global_step"] + state["anneal_steps"],
                     anneal_rate=optimizer.param_groups[0]["lr"])
    _save_checkpoint(checkpoint, accelerator, model, optimizer, state, average)
    if state["bad_evals"] >= config.patience:
        return "early stopping"
    if state.get("anneal_from") is not None and state["global_step"] >= state["anneal_until"]:
        return "levelled off"
    if config.max_minutes is not None and elapsed > config.max_minutes * 60:
        return "time budget"
    return ""


def _levelled_off(state: dict, config: TrainConfig) -> bool:
    """Whether the best validation loss gained less than `anneal_below` (a share, per 100 steps) since a validation
    at least ANNEAL_WINDOW_STEPS back: over steps, not epochs, since a small table's epoch is a few steps and its
    validation loss a noisy figure from one pass to the next."""
    if config.anneal_below is None:
        return False
    history = state.setdefault("best_history", [])
    history.append((state["global_step"], state["best"]))
    earlier = [(step, best) for step, best in history if step <= state["global_step"] - ANNEAL_WINDOW_STEPS]
    if not earlier:
        return False
    step, best = earlier[-1]
    gain = (best - state["best"]) / best * 100 / (state["global_step"] - step)
    return not gain >= config.anneal_below


def _trainable_state(accelerator: Accelerator, model) -> dict[str, torch.Tensor]:
    """The trainable weights, whole: under FSDP every process takes part in gathering them."""
    names = {n for n, p in accelerator.unwrap_model(model).named_parameters() if p.requires_grad}
    return {n: t.detach().float().cpu().clone() for n, t in accelerator.get_state_dict(model).items() if n in names}


def _save_checkpoint(path: Path, accelerator, model, optimizer, state, average: WeightAverage | None) -> None:
    """Each checkpoint is a folder renamed into place when complete, so an interrupt never leaves a torn one.
    Written once, by the main process."""
    accelerator.wait_for_everyone()
    weights = _trainable_state(accelerator, model)
    if not accelerator.is_main_process:
        return
    folder = path / f"step-{state['global_step']:09d}"
    partial = path / f".{folder.name}.partial"
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir()
    save_file(weights, partial / "weights.safetensors")
    if average is not None:
        save_file(average.state_dict(), partial / "average.safetensors")
    torch.save(optimizer.state_dict(), partial / "optimizer.pt")
    (partial / "progress.json").write_text(json.dumps(state))
    shutil.rmtree(folder, ignore_errors=True)
    partial.rename(folder)
    for older in path.glob("step-*"):
        if older.name < folder.name:
            shutil.rmtree(older, ignore_errors=True)


def _save_best(path: Path, accelerator, model) -> None:
    accelerator.wait_for_everyone()
    weights = _trainable_state(accelerator, model)
    if accelerator.is_main_process:
        path.mkdir(parents=True, exist_ok=True)
        save_file(weights, path / "best.safetensors.tmp")
        (path / "best.safetensors.tmp").replace(path / "best.safetensors")


def _load_checkpoint(path: Path, model, optimizer, fingerprint: str, average: WeightAverage | None) -> dict:
    folders = sorted(path.glob("step-*"))
    if not folders:
        raise TrainError(f"nothing to resume: {path} holds no checkpoint; start without --resume")
    latest = folders[-1]
    state = json.loads((latest / "progress.json").read_text())
    if state.get("fingerprint") != fingerprint:
        raise TrainError(f"the checkpoint in {path} was made with other data or settings; start without --resume")
    model.load_state_dict(load_file(latest / "weights.safetensors"), strict=False)
    optimizer.load_state_dict(torch.load(latest / "optimizer.pt", weights_only=True))
    if average is not None:  # the fingerprint has the setting: a checkpoint made with it has the file
        average.load_state_dict(load_file(latest / "average.safetensors"))
    return state
