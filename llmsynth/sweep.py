"""The privacy-utility frontier: the same source trained at several DP epsilons (and without DP), each evaluated
against the same holdout, and the smallest epsilon whose utility meets a floor ("start highly private, dial back the
noise until the privacy threshold is met and accuracy is maximized").

The source is split and scrubbed once; each epsilon then trains, generates and evaluates in its own folder
(`eps-1`, ..., `eps-inf` for no DP) as `llmsynth run` would, with the recipe tuned for DP where DP is on (unless
one recipe is given for all). sweep.json and report.html (a table and the frontier
plot) go to the sweep's folder.
"""

from __future__ import annotations

import json
import math
import os
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from functools import partial
from pathlib import Path
from multiprocessing import get_context
from typing import Any

from llmsynth.data.io import write_text
from llmsynth.errors import DataError
from llmsynth.evaluate.checks import figure
from llmsynth.pipeline import PipelineConfig, Scrubbed, run_stages, split_and_scrub

# Without --recipe, the private runs take the recipe tuned for DP and the run without DP the kind's default.
DP_RECIPES = {"tabular": "tiny-cpu-dp", "chat": "tiny-chat-dp"}
# What each run reports: (key, dotted path in metrics.json); utility first, privacy after.
FIGURES = (
    ("epsilon_spent", "training.dp_epsilon"),
    ("utility_ratio", "utility.ratio"),
    ("column_shapes", "fidelity.column_shapes"),
    ("column_pair_trends", "fidelity.column_pair_trends"),
    ("detection_auc", "fidelity.detection_auc"),
    ("dcr_share", "privacy.dcr_share"),
    ("membership_auc", "privacy.membership_auc"),
    ("at_risk_share", "privacy.record_risk.at_risk_share"),
    ("epsilon_lower_bound", "canaries.dp_audit.epsilon_lower_bound"),
)


def parse_epsilons(text: str) -> list[float | None]:
    """'1,2,4,8,inf' -> [1.0, 2.0, 4.0, 8.0, None] (None: no DP), sorted, each once."""
    values: set[float] = set()
    for part in (p.strip().lower() for p in text.split(",") if p.strip()):
        try:
            value = math.inf if part in ("inf", "none") else float(part)
        except ValueError:
            raise DataError(f"epsilons must be positive numbers or 'inf' (no DP), separated by commas, like "
                            f"1,2,4,8,inf; got {part!r}") from None
        if not value > 0:
            raise DataError(f"epsilons must be above 0; got {part!r}")
        values.add(value)
    if len(values) < 2:
        raise DataError(f"a sweep needs at least two epsilons, like 1,2,4,8,inf; got {text!r}")
    return [None if math.isinf(v) else v for v in sorted(values)]


def run_label(epsilon: float | None) -> str:
    return "eps-inf" if epsilon is None else f"eps-{epsilon:g}"


def _echo_prefixed(echo: Callable[[str], None], label: str, line: str) -> None:
    echo(f"[{label}] {line}")


def _print_flushed(line: str) -> None:  # a worker process's lines, as they come
    print(line, flush=True)


def _one_run(config: PipelineConfig, train: Any, holdout: Any, scrubbed: Scrubbed | None, threads: int | None,
             echo: Callable[[str], None]) -> dict:
    """Train, generate and evaluate one epsilon (in a worker process where `threads` is set); its figures."""
    if threads is not None:
        import torch

        torch.set_num_threads(threads)
    label = config.output.name
    started = time.perf_counter()
    run = run_stages(config, train, holdout, scrubbed, echo)
    metrics = run.evaluation.metrics
    return {"run": label, "epsilon": config.train.dp_epsilon, "folder": str(config.output),
            "seconds": time.perf_counter() - started,
            **{key: figure(metrics, path) for key, path in FIGURES}, "worst_check": run.evaluation.worst}


def recommend(runs: Sequence[dict], utility: str, floor: float) -> dict:
    """The smallest epsilon whose `utility` figure meets `floor`, or why there is none."""
    private = [r for r in runs if r["epsilon"] is not None and r[utility] is not None]
    meeting = [r for r in private if r[utility] >= floor]
    if meeting:
        best = min(meeting, key=lambda r: r["epsilon"])
        return {"epsilon": best["epsilon"], "run": best["run"],
                "reason": f"the smallest epsilon whose {utility} ({best[utility]:.3f}) meets the floor {floor:g}"}
    top = max(private, key=lambda r: r[utility], default=None)
    reason = f"no private run's {utility} meets the floor {floor:g}"
    return {"epsilon": None, "run": None,
            "reason": reason + (f" (best: {top[utility]:.3f} at epsilon {top['epsilon']:g}); train longer, use more "
                                "data or lower the floor" if top else "")}


def run_sweep(config: PipelineConfig, epsilons: Sequence[float | None], utility_floor: float = 0.9,
              processes: int = 1, echo: Callable[[str], None] = print) -> dict:
    """Every epsilon of the sweep on one split; writes sweep.json and report.html to `config.output` and returns
    what sweep.json holds. `processes`: runs side by side, the CPU threads shared between them."""
    started = time.perf_counter()
    train, holdout, scrubbed = split_and_scrub(config, echo)
    configs = [config.model_copy(update={"output": config.output / run_label(epsilon), "train": config.train.model_copy(
        update={"dp_epsilon": epsilon, "recipe": config.train.recipe or (DP_RECIPES[config.kind] if epsilon else None)})})
        for epsilon in epsilons]
    echoes = [partial(_echo_prefixed, _print_flushed if processes > 1 else echo, c.output.name) for c in configs]
    if processes > 1:
        threads = max(1, (os.cpu_count() or 1) // processes)
        with ProcessPoolExecutor(processes, mp_context=get_context("spawn")) as pool:
            runs = list(pool.map(_one_run, configs, *([item] * len(configs) for item in
                                                      (train, holdout, scrubbed, threads)), echoes))
    else:
        runs = [_one_run(c, train, holdout, scrubbed, None, e) for c, e in zip(configs, echoes)]
    utility = "utility_ratio" if config.evaluate.target else "column_shapes"
    sweep = {"source": str(config.input), "kind": config.kind, "target": config.evaluate.target,
             "utility": utility, "utility_floor": utility_floor, "processes": processes,
             "train": config.train.model_dump(mode="json", exclude={"dp_epsilon"}),
             "seconds": time.perf_counter() - started, "runs": runs, "report": str(config.output / "report.html"),
             "recommendation": recommend(runs, utility, utility_floor)}
    from llmsynth.evaluate.report import sweep_html

    write_text(config.output / "sweep.json", json.dumps(sweep, indent=2))
    write_text(config.output / "report.html", sweep_html(sweep))
    return sweep


def sweep_config(input_path: Path, output: Path, kind: str = "tabular", scrub: bool = True, n: int | None = None,
                 target: str | None = None, **train: Any) -> PipelineConfig:
    """The pipeline every run of a sweep follows (`train`: the train stage's fields but dp_epsilon)."""
    return PipelineConfig(kind=kind, input=input_path, output=output, scrub=scrub, train=train,
                          generate={"n": n}, evaluate={"target": target, "reference_model": None})


def sweep_lines(sweep: dict) -> list[str]:
    """A line per run and the recommendation, for the console."""
    lines = []
    for run in sweep["runs"]:
        shown = ", ".join(f"{key.replace('_', ' ')} {run[key]:.3f}" for key, _ in FIGURES if run[key] is not None)
        lines.append(f"{run['run']:<10} {shown}")
    advice = sweep["recommendation"]
    lines.append(f"recommended: epsilon {advice['epsilon']:g}, {advice['reason']}" if advice["epsilon"] else
                 f"no recommendation: {advice['reason']}")
    return [*lines, f"-> {sweep['report']}, {Path(sweep['report']).with_name('sweep.json')}"]
