"""Data-parallel generation: each process samples its share of the batches, the main process writes them in order.

Batches are seeded by their index alone (`batch_plan`), so k processes write exactly what one process writes for
the same seed and batch size.
"""

from __future__ import annotations

import pickle
import shutil
from collections.abc import Iterable
from pathlib import Path

import pandas as pd
from accelerate import PartialState

from llmsynth.data.io import TableWriter


def write_batches(batches: Iterable[pd.DataFrame | list[dict]], output: Path, processes: PartialState) -> None:
    """Stream this process's batches (i, i + k, ...) to `output`; with several processes, through private part
    files beside it that the main process joins in batch order. Nothing carries the final name until all is in."""
    if processes.num_processes == 1:
        with TableWriter(output) as writer:
            for batch in batches:
                writer.write(batch)
        return
    parts = output.parent / f".{output.name}.parts"
    if processes.is_main_process:
        shutil.rmtree(parts, ignore_errors=True)
        parts.mkdir(parents=True)
    processes.wait_for_everyone()
    for k, batch in enumerate(batches):
        index = processes.process_index + k * processes.num_processes
        (parts / f"{index:09d}.pkl").write_bytes(pickle.dumps(batch))
    processes.wait_for_everyone()
    if processes.is_main_process:
        try:
            with TableWriter(output) as writer:
                for part in sorted(parts.glob("*.pkl")):
                    writer.write(pickle.loads(part.read_bytes()))
        finally:
            shutil.rmtree(parts, ignore_errors=True)
    processes.wait_for_everyone()
