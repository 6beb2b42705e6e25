"""First-token logit offsets: each value starts as often as in the training rows, where the model writes it too
seldom or too often though no one row's loss shows it (a model trained for minutes, or its weights averaged)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from tqdm.auto import tqdm

from llmsynth.generate.sampler import ConstrainedSampler
from llmsynth.serialize.codecs import CategoricalColumn
from llmsynth.serialize.tabular import RowEncoder

MAX_BIAS = 3.0  # a calibrated first token at most e^3 (20x) more or less likely than the model writes it
FIT_ROUNDS = 20  # rounds fitting the offsets to the shares (each adds the log of what is still missing)


def fit_offsets(logits: torch.Tensor, firsts: torch.Tensor, tokens: torch.Tensor) -> dict[int, float]:
    """Offsets of `tokens` such that the model's average share of each (`logits`: a row of logits over `tokens` per
    context) is its share of `firsts` (the first tokens of the real values), the model's own shares counting as one
    more real row (a token no row starts with is pushed down, not ruled out); at most MAX_BIAS either way. Fitted a
    few rounds: one ratio falls short where part of the mass is certain (an account with 12 transactions is a fraud
    account whatever the offset)."""
    written = torch.softmax(logits, dim=-1).mean(dim=0)
    counts = torch.bincount(firsts, minlength=int(tokens.max()) + 1)[tokens].float()
    target = (counts + written) / (len(firsts) + 1)
    offsets = torch.zeros(len(tokens))
    for _ in range(FIT_ROUNDS):
        shares = torch.softmax(logits + offsets, dim=-1).mean(dim=0)
        offsets = (offsets + target.log() - shares.clamp(min=1e-12).log()).clamp(-MAX_BIAS, MAX_BIAS)
    return {int(token): round(float(offset), 4) for token, offset in zip(tokens, offsets) if abs(offset) >= 0.01}


@torch.no_grad()
def category_offsets(sampler: ConstrainedSampler, records: Sequence[Sequence[str]], seed: int = 0,
                     contexts: int = 5000, progress: bool = False) -> dict[int, dict[int, float]]:
    """Per categorical column (by index), the offsets of the tokens that start its values, after the training rows'
    own earlier columns in table order (the order plain sampling writes). A running average of the weights draws a
    rare class too seldom: the demo's is_fraud 3.5% where its rows have 4.0% (six trainings), and Adult's values
    with 1-5% of their column at 0.96 of their share; these give the shares back (docs/benchmarks.md, "Calibrated
    categories"). Numbers are left alone: offsets on their leading digits raised the detection AUC. The model's
    shares are read after up to `contexts` rows (a seeded sample); the rows' own shares count every row."""
    encoder = sampler.encoder
    categorical = [k for k, column in enumerate(sampler.columns) if isinstance(column, CategoricalColumn)]
    if not categorical or not records:
        return {}
    if len(records) > contexts:
        sample = sorted(np.random.default_rng(seed).choice(len(records), contexts, replace=False))
        read = [records[i] for i in sample]
    else:
        read = list(records)
    logits = _value_start_logits(sampler.model, encoder, read, categorical, progress)
    offsets = {}
    for column in categorical:
        tokens = torch.nonzero(sampler.value_tokens(column, b"")[0]).flatten()
        # a missing value starts no token, unless joined (its own: serialize.tabular.joined_token)
        present = [k for k, record in enumerate(read) if encoder.value_ids(record[column], column)]
        firsts = torch.tensor([ids[0] for ids in (encoder.value_ids(record[column], column) for record in records)
                               if ids])
        if present and len(firsts) and len(tokens):
            offsets[column] = fit_offsets(logits[column][present][:, tokens], firsts, tokens)
    return {column: found for column, found in offsets.items() if found}


def _value_start_logits(model, encoder: RowEncoder, records: Sequence[Sequence[str]], columns: Sequence[int],
                        progress: bool = False, max_logits: int = 2**25) -> dict[int, torch.Tensor]:
    """Per column in `columns`, the model's logits (a row per record) where each record's value of it starts, read
    in one pass over the records in table order (teacher forced); a missing value's row holds the logits where it
    would have started. Batches hold at most `max_logits` logits (a pretrained base's vocabulary is 49k wide)."""
    order = range(encoder.column_count)
    every = [encoder.encode(record, order) for record in records]
    vocabulary = model.get_output_embeddings().weight.shape[0]
    batch_size = max(1, min(256, max_logits // (max(len(ids) for ids, *_ in every) * vocabulary)))
    found: dict[int, list[torch.Tensor]] = {column: [] for column in columns}
    for start in tqdm(range(0, len(records), batch_size), desc="calibrating", unit="batch", disable=not progress):
        batch, encoded = records[start:start + batch_size], every[start:start + batch_size]
        width = max(len(ids) for ids, *_ in encoded)
        ids = torch.full((len(batch), width), encoder.pad_id, dtype=torch.long)
        positions = torch.zeros((len(batch), width), dtype=torch.long)
        for row, (row_ids, _, *row_positions) in enumerate(encoded):
            ids[row, :len(row_ids)] = torch.tensor(row_ids)
            positions[row, :len(row_ids)] = torch.tensor(row_positions[0] if row_positions else range(len(row_ids)))
        logits = model(input_ids=ids.to(model.device), position_ids=positions.to(model.device)).logits
        starts = torch.tensor([_value_starts(encoder, record) for record in batch], device=logits.device)
        rows = torch.arange(len(batch), device=logits.device)
        for column in columns:
            found[column].append(logits[rows, starts[:, column] - 1].float().cpu())
    return {column: torch.cat(pieces) for column, pieces in found.items()}


def _value_starts(encoder: RowEncoder, record: Sequence[str]) -> list[int]:
    """Where each column's value starts in the record's tokens in table order (`RowEncoder.encode`)."""
    starts, at, order = [], len(encoder.prefix_ids), range(encoder.column_count)
    for column in order:
        at += len(encoder.opening(order, column, record[column])[0])
        starts.append(at)
        at += len(encoder.value_ids(record[column], column))
    return starts
