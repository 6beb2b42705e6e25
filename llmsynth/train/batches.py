"""Training examples and batches: records encoded with a seeded column order per epoch, padded or packed.

Shared by the ordinary loop and the differentially private one (which needs one record per row).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from llmsynth.serialize.tabular import IGNORE
from llmsynth.train.config import TrainConfig


def pad_batch(examples: Sequence[tuple[list[int], ...]], pad_id: int) -> dict[str, torch.Tensor | int]:
    """One record per row, padded to the longest, with its position ids where the examples carry them (column
    slots); `tokens` counts the real ones (not a model input). Filled in numpy: a tensor per row cost a tiny model's
    training a few percent of its time."""
    lengths = np.array([len(example[0]) for example in examples])
    input_ids = np.full((len(examples), lengths.max()), pad_id, dtype=np.int64)
    labels = np.full(input_ids.shape, IGNORE, dtype=np.int64)
    positions = np.zeros(input_ids.shape, dtype=np.int64) if len(examples[0]) == 3 else None
    for row, (ids, row_labels, *row_positions) in enumerate(examples):
        input_ids[row, : len(ids)] = ids
        labels[row, : len(ids)] = row_labels
        if positions is not None:
            positions[row, : len(ids)] = row_positions[0]
    attention = (np.arange(input_ids.shape[1]) < lengths[:, None]).astype(np.int64)
    batch = {"input_ids": torch.from_numpy(input_ids), "labels": torch.from_numpy(labels),
             "attention_mask": torch.from_numpy(attention), "tokens": int(lengths.sum())}
    if positions is not None:
        batch["position_ids"] = torch.from_numpy(positions)
    return batch


def pack_batch(examples: Sequence[tuple[list[int], list[int]]], pad_id: int,
               length: int) -> dict[str, torch.Tensor | int]:
    """The same records laid end to end in as few rows of at most `length` tokens as first-fit decreasing finds
    (records without position ids of their own: see `collate`).

    Each record's position ids start at 0 again, and no attention mask is passed: transformers reads the restarts
    as sequence boundaries and builds a block-diagonal causal mask, so no token sees another record. A record's
    first label is ignored already (its start token), so nothing is predicted across a boundary either; the tail
    padding is a segment of its own with ignored labels. The step's loss is the padded batch's loss.
    """
    rows: list[list[int]] = []
    fill: list[int] = []
    for index in sorted(range(len(examples)), key=lambda i: -len(examples[i][0])):
        size = len(examples[index][0])
        row = next((r for r, used in enumerate(fill) if used + size <= length), None)
        if row is None:
            rows.append([])
            fill.append(0)
            row = len(rows) - 1
        rows[row].append(index)
        fill[row] += size
    width = max(fill)
    input_ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    labels = torch.full((len(rows), width), IGNORE, dtype=torch.long)
    positions = torch.zeros((len(rows), width), dtype=torch.long)
    for row, members in enumerate(rows):
        start = 0
        for index in members:
            ids, row_labels = examples[index]
            end = start + len(ids)
            input_ids[row, start:end] = torch.tensor(ids)
            labels[row, start:end] = torch.tensor(row_labels)
            positions[row, start:end] = torch.arange(len(ids))
            start = end
        positions[row, start:] = torch.arange(width - start)
    return {"input_ids": input_ids, "labels": labels, "position_ids": positions,
            "tokens": sum(fill)}


def collate(config: TrainConfig, pad_id: int):
    """The batch builder the config asks for."""
    if config.packing:
        return lambda examples: pack_batch(examples, pad_id, config.pack_length)
    return lambda examples: pad_batch(examples, pad_id)


def column_order(columns: int, config: TrainConfig, rng: np.random.Generator) -> np.ndarray:
    """One training example's column order, as `config.column_order` asks.

    random: all shuffled (GReaT). schema: always the table's order (REaLTabFormer). conditional:
    `config.schema_order_share` of the examples in schema order, the rest with a random subset moved to the front in
    random order, which is exactly what sampling does with conditioned columns, while the fixed order is learned
    quickly; of these, `config.prompt_share` repeat the subset (up to half the columns) as a prompt ahead of the
    whole row in the table's order instead (`RowEncoder.encode`), which is what sampling then does.
    """
    mode = config.column_order
    if mode == "random" or columns == 0:
        return rng.permutation(columns)
    if mode == "schema" or rng.random() < config.schema_order_share:
        return np.arange(columns)
    if config.prompt_share and rng.random() < config.prompt_share:  # conditions name a few columns
        prompt = rng.permutation(columns)[: rng.integers(1, (columns + 1) // 2 + 1)]
        return np.concatenate([prompt, np.arange(columns)])
    front = rng.permutation(columns)[: rng.integers(1, columns + 1)]
    rest = np.ones(columns, dtype=bool)
    rest[front] = False
    return np.concatenate([front, np.flatnonzero(rest)])


def epoch_examples(records: Sequence, encoder, config: TrainConfig, epoch: int, validation: bool = False):
    """Every record (a row, or a conversation with its metadata) once, in a seeded order (for `validation`, their
    own, and a prompt's values unlearned in the row: `RowEncoder.encode`'s `given_learned`), each with its own
    seeded column order; `encoder` is a RowEncoder, ChatEncoder or RelationalEncoder."""
    rng = np.random.default_rng([config.seed, epoch])
    row_order = np.arange(len(records)) if validation else rng.permutation(len(records))
    return [encoder.encode(records[i], column_order(encoder.column_count, config, rng), given_learned=not validation)
            for i in row_order]
