"""The processes `accelerate launch` (or torchrun) started, for training and for data-parallel generation."""

from __future__ import annotations

import torch
from accelerate import PartialState


def on_cpu() -> bool:
    """Without a GPU the processes join over gloo on the CPU, so the same launch command works on a laptop."""
    return not torch.cuda.is_available()


def process_state() -> PartialState:
    """This process's rank and the process count (one process when nothing launched us)."""
    return PartialState(cpu=on_cpu())
