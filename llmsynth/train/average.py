"""An exponential moving average of the trainable weights (Polyak averaging), which training validates and keeps.

A tiny model's last weights carry the noise of its last steps: on Adult, three trainings' shares of married people
came out 0.38 to 0.45 (the rows' 0.455), those of their averaged weights 0.44 to 0.46, and an SDMetrics QualityReport
scores the rows 0.968-0.973 instead of 0.954-0.965 (docs/benchmarks.md, "Averaged weights"). Kept here rather than in
torch's `AveragedModel`, which copies the whole model, a frozen pretrained base included.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch


class WeightAverage:
    """The average of the trainable weights over about the last `steps` steps taken: each step's weights count
    1 - 1 / `steps` times the next one's.

    It starts from zero and is divided by the weight its terms sum to (as Adam corrects its moments), so the
    random initial weights never count and a short run's average is of its own steps only.
    """

    def __init__(self, model: torch.nn.Module, steps: float):
        self.decay = 1 - 1 / max(1.0, steps)
        self.named = {name: p for name, p in model.named_parameters() if p.requires_grad}
        self.running = {name: torch.zeros_like(p, dtype=torch.float32) for name, p in self.named.items()}
        self.updates = 0

    @torch.no_grad()
    def update(self) -> None:
        """Take in the weights of the step just taken."""
        self.updates += 1
        for name, parameter in self.named.items():
            self.running[name].lerp_(parameter.detach().float(), 1 - self.decay)

    @contextmanager
    def applied(self) -> Iterator[None]:
        """The averaged weights in the model inside the block, the trained ones back after it."""
        if self.updates == 0:
            yield
            return
        trained = {name: p.detach().clone() for name, p in self.named.items()}
        self.copy_to_model()
        try:
            yield
        finally:
            with torch.no_grad():
                for name, parameter in self.named.items():
                    parameter.copy_(trained[name])

    @torch.no_grad()
    def copy_to_model(self) -> None:
        if self.updates:
            scale = 1 - self.decay ** self.updates
            for name, running in self.running.items():
                self.named[name].copy_(running / scale)

    def state_dict(self) -> dict[str, torch.Tensor]:
        """For a checkpoint: the running average (before its correction) and, as a tensor, the count of steps."""
        return {**{f"running.{name}": t for name, t in self.running.items()}, "updates": torch.tensor(self.updates)}

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        for name in self.running:
            self.running[name].copy_(state[f"running.{name}"])
        self.updates = int(state["updates"])
