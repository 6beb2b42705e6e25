"""Differentially private training: DP-SGD with Opacus.

Each record (a row, or a whole conversation) gets its own gradient, clipped to `dp_max_grad_norm`; batches are drawn
by Poisson sampling; Gaussian noise is added to the summed gradients; the RDP accountant turns the noise, the sampling
rate and the number of steps into the (epsilon, delta) guarantee. The noise is set before training for the recipe's
epochs; early stopping or the time budget can only end training sooner, which spends less, and the summary reports
the epsilon actually spent.

The loss is each record's mean token loss, averaged over the batch: a record's gradient must depend on that record
alone (the usual token mean over a whole batch would let one record change the weight of every other). Layers Opacus
has no per-sample rule for (RMSNorm) fall back to functorch. Training runs in fp32; packing is refused (a packed row
mixes records), and so are several processes.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Sequence

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from llmsynth.errors import TrainError
from llmsynth.serialize.tabular import IGNORE
from llmsynth.train.batches import column_order, pad_batch
from llmsynth.train.config import TrainConfig

log = logging.getLogger(__name__)

ACCOUNTANT = "rdp"


class _Records(Dataset):
    """Records encoded on access, each time with a fresh column order (as the ordinary loop's epochs have)."""

    def __init__(self, records: Sequence, encoder, config: TrainConfig):
        self.records, self.encoder, self.config = records, encoder, config
        self.rng = np.random.default_rng([config.seed, 0xD9])

    def __len__(self) -> int:
        return len(self.records)

    def __getitem__(self, index: int):
        return self.encoder.encode(self.records[index], column_order(self.encoder.column_count, self.config, self.rng))


def default_delta(records: int) -> float:
    """1 / n^1.2: below 1/n, as a meaningful delta must be."""
    return 1 / records ** 1.2


class PrivateTraining:
    """The model, optimizer and batches of the training loop, made private."""

    def __init__(self, model: torch.nn.Module, optimizer: torch.optim.Optimizer, records: Sequence, encoder, config,
                 batch_size: int, processes: int):
        from opacus import PrivacyEngine

        if config.packing:
            raise TrainError("differential privacy needs one record per row: turn packing off in the recipe")
        if processes > 1:
            raise TrainError("differentially private training runs in one process; launch it without accelerate "
                             "launch --num_processes")
        if config.max_minutes is not None:
            log.warning("differential privacy: the noise is set for %d epochs; a time budget that stops training "
                        "sooner spends less than epsilon %g but still pays that noise: set epochs to what fits",
                        config.epochs, config.dp_epsilon)
        self.target_epsilon = config.dp_epsilon
        self.delta = config.dp_delta or default_delta(len(records))
        self.max_grad_norm = config.dp_max_grad_norm
        loader = DataLoader(_Records(records, encoder, config), batch_size=batch_size,
                            collate_fn=lambda examples: pad_batch(examples, encoder.pad_id))
        with warnings.catch_warnings():  # "secure RNG turned off": the noise comes from torch's generator
            warnings.simplefilter("ignore")
            self.engine = PrivacyEngine(accountant=ACCOUNTANT)
            self.module, self.optimizer, self.loader = self.engine.make_private_with_epsilon(
                module=model, optimizer=optimizer, data_loader=loader, target_epsilon=self.target_epsilon,
                target_delta=self.delta, epochs=config.epochs, max_grad_norm=self.max_grad_norm,
                poisson_sampling=True)
        self.sample_rate = 1 / len(self.loader)

    def loss(self, batch: dict) -> torch.Tensor:
        """Each record's mean token loss, averaged over the batch (a padded batch from `loader`)."""
        device = next(self.module.parameters()).device
        batch = {k: v.to(device) for k, v in batch.items() if isinstance(v, torch.Tensor)}
        labels = batch.pop("labels")[:, 1:]
        logits = self.module(**batch, use_cache=False).logits[:, :-1].float()
        token_losses = torch.nn.functional.cross_entropy(logits.transpose(1, 2), labels, ignore_index=IGNORE,
                                                         reduction="none")
        return (token_losses.sum(dim=1) / labels.ne(IGNORE).sum(dim=1).clamp(min=1)).mean()

    def step(self, batch: dict) -> torch.Tensor:
        """One DP-SGD step: per-record gradients, clipped, summed, noised; the loss without waiting for the device."""
        loss = self.loss(batch)
        with warnings.catch_warnings():  # the embedding's hook fires with no input gradient: expected
            warnings.filterwarnings("ignore", message="Full backward hook is firing")
            loss.backward()
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        return loss.detach()

    def finish(self) -> dict:
        """Take Opacus's hooks off the model (it samples like any other afterwards); what was spent."""
        self.module.cleanup()
        steps = sum(entry[-1] for entry in self.engine.accountant.history)
        return {"epsilon": float(self.engine.get_epsilon(self.delta)) if steps else 0.0,
                "target_epsilon": self.target_epsilon, "delta": self.delta,
                "noise_multiplier": float(self.optimizer.noise_multiplier), "max_grad_norm": self.max_grad_norm,
                "sample_rate": self.sample_rate, "steps": steps, "accountant": ACCOUNTANT}
