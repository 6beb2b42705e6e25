"""The processes `accelerate launch` (or torchrun) started, for training and for data-parallel generation."""

from __future__ import annotations

import atexit
import os
import socket
import subprocess
import sys

import torch
from accelerate import PartialState

from llmsynth.errors import LlmsynthError


def on_cpu() -> bool:
    """Without a GPU the processes join over gloo on the CPU, so the same launch command works on a laptop."""
    return not torch.cuda.is_available()


def process_state() -> PartialState:
    """This process's rank and the process count (one process when nothing launched us)."""
    return PartialState(cpu=on_cpu())


def relaunch(num_processes: int, arguments: list[str]) -> int:
    """`llmsynth ARGUMENTS` again under `accelerate launch` with N processes (GPUs where there are, else CPU
    processes); its exit status."""
    if os.environ.get("LOCAL_RANK") is not None:  # launched already, yet alone: never launch again from here
        raise LlmsynthError(f"--num-processes {num_processes}: the launched processes did not join one group")
    if torch.cuda.is_available() and num_processes > torch.cuda.device_count():
        raise LlmsynthError(f"--num-processes {num_processes}: this machine has {torch.cuda.device_count()} GPU(s); "
                            "use at most one process per GPU")
    with socket.socket() as probe:  # a free port for the processes to meet on, so that runs side by side never clash
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    command = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_machines", "1",
               "--num_processes", str(num_processes), "--main_process_port", str(port), "--mixed_precision", "no",
               "--dynamo_backend", "no", "-m", "llmsynth", *arguments]
    return subprocess.run(command).returncode


def _leave_group() -> None:
    """Gloo's worker threads still hold tensors when the interpreter is torn down unless the group is destroyed
    first; a process exiting without this aborted with SIGABRT now and then (seen in CI, two-process generation)."""
    if torch.distributed.is_initialized():
        torch.distributed.destroy_process_group()


atexit.register(_leave_group)  # training (Accelerator) and generation (PartialState) both import this module
