"""Fair generation: rows whose target rate does not depend on the sensitive columns (statistical parity), drawn by
conditional sampling. A pilot sample gives the share of each group and of each target value as the model learned
them; each (group, target value) cell then gets n x group share x value share rows, sampled with both fixed, so the
rest of every row still follows the model's conditional distribution. The groups keep their sizes, the target keeps
its overall rate, and only the dependence between them is removed.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from llmsynth.data.schema import Schema
from llmsynth.errors import GenerateError
from llmsynth.serialize.codecs import CategoricalColumn

PILOT_ROWS = 2000


def check_fair(schema: Schema, fair: Sequence[str], target: str | None, conditions: Mapping[str, Any] | None) -> None:
    """The sensitive columns and the target: learned categorical columns, distinct, not fixed by a condition."""
    if target is None:
        raise GenerateError("fair generation needs a target: the column whose rate must not depend on "
                            f"{', '.join(fair)} (--target)")
    categorical = {c.name for c in schema.learned if isinstance(c, CategoricalColumn)}
    for name in [*fair, target]:
        if name not in categorical:
            raise GenerateError(f"fair generation: {name!r} is not a categorical column of the model; categorical "
                                f"columns: {sorted(categorical)}")
    if target in fair:
        raise GenerateError(f"fair generation: {target!r} is both the target and a sensitive column")
    fixed = sorted(set(conditions or {}) & {*fair, target})
    if fixed:
        raise GenerateError(f"fair generation: {fixed} fixed by --condition as well; condition on other columns")


def _allocate(n: int, weights: np.ndarray) -> np.ndarray:
    """n split in proportion to `weights` by largest remainders: whole counts that sum to n."""
    shares = n * weights / weights.sum()
    counts = np.floor(shares).astype(int)
    counts[np.argsort(counts - shares)[:n - counts.sum()]] += 1
    return counts


def parity_cells(pilot: pd.DataFrame, fair: Sequence[str], target: str, n: int) -> list[tuple[dict[str, Any], int]]:
    """(conditions, rows) per cell: each group with its pilot share, split between target values by their overall
    pilot shares."""
    groups = pilot.groupby(list(fair), dropna=False).size()
    values = pilot[target].value_counts(dropna=False)
    cells = [({**dict(zip(fair, group if isinstance(group, tuple) else (group,))), target: value}, size * frequency)
             for group, size in groups.items() for value, frequency in values.items()]
    counts = _allocate(n, np.array([weight for _, weight in cells], float))
    return [(conditions, int(count)) for (conditions, _), count in zip(cells, counts) if count]


def fair_rows(sample: Callable[..., Iterator[pd.DataFrame]], schema: Schema, n: int, fair: Sequence[str],
              target: str | None, conditions: Mapping[str, Any] | None = None, seed: int = 0,
              batch_size: int = 1024, progress: bool = True, **sampling: Any) -> Iterator[pd.DataFrame]:
    """`n` rows in chunks of `batch_size` with statistical parity of `target` over `fair`; `sample` is a
    synthesizer's `iter_sample` (its temperature and top_p in `sampling`). Bad columns fail here, not on the first
    chunk."""
    check_fair(schema, fair, target, conditions)
    return _fair_chunks(sample, n, fair, target, conditions, seed, batch_size, progress, sampling)


def _fair_chunks(sample: Callable[..., Iterator[pd.DataFrame]], n: int, fair: Sequence[str], target: str,
                 conditions: Mapping[str, Any] | None, seed: int, batch_size: int, progress: bool,
                 sampling: dict[str, Any]) -> Iterator[pd.DataFrame]:
    def seed_of(part: int) -> int:  # the pilot and each cell draw from their own stream
        return int(np.random.SeedSequence([seed, 0xFA12, part]).generate_state(1)[0])

    pilot = pd.concat(sample(min(n, PILOT_ROWS), conditions, seed=seed_of(0), batch_size=batch_size, progress=False,
                             **sampling), ignore_index=True)
    chunks = []
    with tqdm(total=n, desc="generating (fair)", unit="row", disable=not progress) as bar:
        for part, (cell_conditions, count) in enumerate(parity_cells(pilot, fair, target, n), start=1):
            for chunk in sample(count, {**(conditions or {}), **cell_conditions}, seed=seed_of(part),
                                batch_size=batch_size, progress=False, **sampling):
                chunks.append(chunk)
                bar.update(len(chunk))
    rows = pd.concat(chunks, ignore_index=True)
    rows = rows.iloc[np.random.default_rng([seed, 0x5F1E]).permutation(len(rows))].reset_index(drop=True)
    for start in range(0, n, batch_size):
        yield rows.iloc[start:start + batch_size]
