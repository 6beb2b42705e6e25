"""Shared by the benchmark scripts: replace one section of docs/benchmarks.md and keep the raw figures."""

from __future__ import annotations

import json
import logging
import os
import platform
import resource
import warnings
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context
from pathlib import Path
from typing import Callable

from llmsynth.versions import library_versions

ROOT = Path(__file__).resolve().parents[1]
HEADER = "# Benchmarks\n\nFigures written by the scripts in `eval/`; each section says how to reproduce it.\n"


def machine() -> str:
    import torch

    device = torch.cuda.get_device_name() if torch.cuda.is_available() else "CPU only"
    return f"{platform.machine()}, {os.cpu_count()} cores, {device}, Python {platform.python_version()}"


def versions(*packages: str) -> dict[str, str]:
    return library_versions(packages)


def _measured(job: Callable[..., dict], args: tuple) -> dict:
    from joblib.externals.loky import get_reusable_executor

    logging.basicConfig(level=logging.ERROR)
    warnings.filterwarnings("ignore")
    result = job(*args)
    # joblib's worker processes (SDV's CTGAN and TVAE start them) wait 300 s for more work, and this process waits
    # for them as it exits: five minutes lost per such run unless they are stopped now.
    get_reusable_executor(reuse=True).shutdown(wait=True, kill_workers=True)
    return {**result, "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}


def run_isolated(job: Callable[..., dict], *args) -> dict:
    """`job(*args)` in a fresh process, so that its peak memory (added as `peak_rss_mb`) and its imports are its own;
    `job` is a module-level function."""
    with ProcessPoolExecutor(max_workers=1, mp_context=get_context("spawn")) as pool:
        return pool.submit(_measured, job, args).result()


KEPT = "<!-- written by hand below: kept when the figures above are rewritten -->"


def write_section(title: str, body: str, figures: dict, name: str) -> None:
    """Write `## title` + body into docs/benchmarks.md, in the place of an older one (but for what follows a KEPT
    line in it: the reading of a run, written by hand) or at the end, and figures to eval/results/NAME.json."""
    results = ROOT / "eval" / "results"
    results.mkdir(parents=True, exist_ok=True)
    (results / f"{name}.json").write_text(json.dumps(figures, indent=2, default=str))
    path = ROOT / "docs" / "benchmarks.md"
    text = path.read_text() if path.exists() else HEADER
    heading = f"## {title}"
    section = f"{heading}\n\n{body.strip()}\n"
    start = text.find(heading)
    if start < 0:
        text = text.rstrip() + "\n\n" + section
    else:
        end = text.find("\n## ", start + 1)
        end = len(text) if end < 0 else end + 1
        old = text[start:end]
        kept = "\n" + old[old.index(KEPT):].strip() + "\n" if KEPT in old else ""
        after = text[end:]
        text = text[:start] + section + kept + ("\n" + after if after else "")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
