"""The processes `accelerate launch` (or torchrun) started, for training and for data-parallel generation."""

from __future__ import annotations

import atexit

import torch
from accelerate import PartialState


def on_cpu() -> bool:
    """Without a GPU the processes join over gloo on the CPU, so the same launch command works on a laptop."""
    return not torch.cuda.is_available()


def process_state() -> PartialState:
    """This process's rank and the process count (one process when nothing launched us)."""
    return PartialState(cpu=on_cpu())


def _leave_group() -> None:
    """Gloo's worker threads still hold tensors when the interpreter is torn down unless the group is destroyed
    first; a process exiting without this aborted with SIGABRT now and then (seen in CI, two-process generation)."""
    if torch.distributed.is_initialized():
        torch.distributed.destroy_process_group()


atexit.register(_leave_group)  # training (Accelerator) and generation (PartialState) both import this module
