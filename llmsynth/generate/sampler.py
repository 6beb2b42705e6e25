"""Constrained, batched sampling of rows with a KV cache.

The sampler writes each column's ` name is` prefix and the separators itself; the model only chooses
value tokens, and only among those that keep the value valid for its codec (a category from the trie
of training values, a number in range at the column's precision, a date in range, or nothing where
the column had nulls; a joined category, one token with its segment, among its column's). Every row is valid by
construction: there is no rejection loop.
All live rows of a batch advance one token per step, each either forced (written by the sampler) or sampled;
finished rows leave the batch and the KV cache.
"""

from __future__ import annotations

import bisect
import inspect
from collections import deque
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from functools import lru_cache

import numpy as np
import torch
from transformers import DynamicCache

from llmsynth.errors import ModelError
from llmsynth.model.tokens import token_bytes
from llmsynth.serialize.codecs import ColumnCodec, NumericColumn
from llmsynth.serialize.tabular import RowEncoder

SPACE = 0x20
# Value prefixes whose allowed tokens are kept: numbers written by places meet ~10 new ones a row (California), each a
# vocabulary-wide mask were it not shared with the prefixes that allow the same tokens
MAX_CACHED_PREFIXES = 500_000


@dataclass
class _Row:
    order: list[int]
    pending: deque
    position: int = 0  # index into order of the column being written
    positions: deque = field(default_factory=deque)  # position ids of the pending tokens, with column slots
    slot_fill: int = 0  # tokens written in the current column's slot
    value: bytes = b""
    values: dict[int, bytes] = field(default_factory=dict)
    done: bool = False
    end: int = -1  # the token that closes the value being written (`ConstrainedSampler._end_token`)


class ConstrainedSampler:
    def __init__(self, model, encoder: RowEncoder, columns: Sequence[ColumnCodec],
                 first_token_bias: Mapping[int, Mapping[int, float]] | None = None):
        """`first_token_bias`: per column index, logit offsets of the tokens that may start its value (a related
        table's calibrated counts: see generate.families.calibrated)."""
        self.model = model
        self.encoder = encoder
        self.columns = list(columns)
        self.token_bytes = token_bytes(encoder.tokenizer) + encoder.place_bytes()
        self.vocab_size = model.get_output_embeddings().weight.shape[0]
        if encoder.vocabulary_size > self.vocab_size:
            raise ModelError(f"the model has {self.vocab_size} token embeddings; the rows' encoding takes "
                             f"{encoder.vocabulary_size}")
        self._candidates = [self._candidate_tokens(column) for column in self.columns]
        # Numeric columns in tokens: their all-digit continuing tokens by length and value, found by bisection
        self._digit_tokens = {index: _by_length_and_value(self._candidates[index][1])
                              for index, column in enumerate(self.columns)
                              if isinstance(column, NumericColumn) and not column.places}
        self._allowed_cache: dict[tuple[int, bytes], tuple[torch.Tensor, bool]] = {}
        self._masks: dict[tuple[int, ...], torch.Tensor] = {}  # one mask for the many prefixes that allow the same
        self._end_of_value_ids = torch.tensor(encoder.end_of_value_ids)
        self._joined = {token: (" " + text).encode() if text else b""  # a joined token's value bytes
                        for found in encoder.joined_ids for text, token in found.items()}
        self._first_token_bias = {column: _dense(offsets, self.vocab_size)
                                  for column, offsets in (first_token_bias or {}).items()}

    def _candidate_tokens(self, column: ColumnCodec) -> tuple[list[tuple[int, bytes]], list[tuple[int, bytes]]]:
        """Tokens that may start a value (after its leading space) and tokens that may continue one.

        A cheap pre-filter on bytes; `viable` has the final word. Values without spaces never take
        a token that starts with one after their first byte, which keeps numeric checks short.
        """
        value_bytes = column.allowed_bytes()
        allowed = None if value_bytes is None else set(value_bytes) | {SPACE}
        tokenizer_ids = min(len(self.encoder.tokenizer), self.vocab_size)  # a number's places: `value_tokens`
        tokens = [(i, b) for i, b in enumerate(self.token_bytes[:tokenizer_ids])
                  if b and (allowed is None or set(b) <= allowed)]
        starting = [(i, b) for i, b in tokens if b[0] == SPACE]
        spaces_inside = value_bytes is None or SPACE in value_bytes
        continuing = tokens if spaces_inside else [(i, b) for i, b in tokens if b[0] != SPACE]
        return starting, continuing

    def _viable(self, column: ColumnCodec, text: bytes) -> bool:
        return text[:1] == b" " and (len(text) == 1 or column.viable(text[1:]))

    def _complete(self, column: ColumnCodec, text: bytes) -> bool:
        return (text == b"" and column.nullable) or (text[:1] == b" " and column.complete(text[1:]))

    def value_tokens(self, column_index: int, text: bytes) -> tuple[torch.Tensor, bool]:
        """Boolean mask over the vocabulary of the tokens that may continue `text` in this column, and whether `text`
        is a complete value already (then the token that closes it may follow too). Cached apart from that closing
        token, which is the next column's segment and so differs with each row's column order."""
        key = (column_index, text)
        found = self._allowed_cache.get(key)
        if found is None:
            column = self.columns[column_index]
            starting, continuing = self._candidates[column_index]
            body = text[1:].decode("ascii", "replace")  # a number's text is ASCII; anything else takes no digits
            joined = self.encoder.joined_ids[column_index]
            if joined:  # one token is the whole value, complete once drawn
                ids = [] if text else list(joined.values())
            elif self.encoder.place_counts[column_index]:  # the ids of the place reached (after its space)
                place = max(len(text) - 1, 0)
                ids = [i for i, b in self.encoder.place_tokens(column_index, place) if self._viable(column, text + b)]
            elif column_index in self._digit_tokens and column.takes_digits(body):
                # A number's start: the viable digit tokens of each length are one to a few runs of values (Adult's
                # fnlwgt took a third of sampling, California's fractions over half, checked token by token).
                others, by_length = self._digit_tokens[column_index]
                ids = [i for i, b in others if self._viable(column, text + b)]
                for length, (values, value_ids) in by_length.items():
                    for low, high in column.digit_continuations(body, length):
                        ids += value_ids[bisect.bisect_left(values, low):bisect.bisect_right(values, high)]
            else:
                ids = [i for i, b in (continuing if text else starting) if self._viable(column, text + b)]
            complete = not joined and self._complete(column, text)
            if not ids and not complete:
                raise RuntimeError(f"no valid continuation for column {column.name!r} after {text!r}")
            if len(self._allowed_cache) >= MAX_CACHED_PREFIXES:
                self._allowed_cache.clear()
                self._masks.clear()
            shared = tuple(sorted(ids))
            mask = self._masks.get(shared)
            if mask is None:
                mask = self._masks[shared] = torch.zeros(self.vocab_size, dtype=torch.bool)
                mask[ids] = True
            found = self._allowed_cache[key] = (mask, complete)
        return found

    def _end_token(self, row: _Row) -> int:
        """The token that closes the current value: the next column's segment (written after a value the model ends,
        which a joined one is not: `RowEncoder.opening`), or end of row."""
        if row.position == len(row.order) - 1:
            return self.encoder.end_of_row_id
        return self.encoder.segment_ids(row.order[row.position + 1], first=False)[0]

    def _queue(self, row: _Row, tokens: Sequence[int], column: int) -> None:
        """Tokens for the model to read next, in `column`'s slot where the encoder lays columns in slots."""
        row.pending.extend(tokens)
        if self.encoder.slots is not None:
            start = self.encoder.slots[column] + row.slot_fill
            row.positions.extend(range(start, start + len(tokens)))
            row.slot_fill += len(tokens)

    def _forced_prefix(self, row: _Row, conditions: dict[int, str]) -> None:
        """Queue the sampler-written tokens up to the next value the model must choose."""
        while row.position < len(row.order):
            column = row.order[row.position]
            opening, row.slot_fill = self.encoder.opening(row.order, row.position, conditions.get(column))
            self._queue(row, opening, column)
            if column not in conditions:
                row.end = self._end_token(row)
                return
            text = conditions[column]
            row.values[column] = (" " + text).encode() if text else b""
            self._queue(row, self.encoder.value_ids(text, column), column)
            row.position += 1
        row.done = True

    @torch.no_grad()
    def sample_batch(self, orders: Sequence[Sequence[int]], conditions: dict[int, str], generator: torch.Generator,
                     temperature: float = 1.0, top_p: float = 1.0,
                     prefixes: Sequence[Sequence[int]] | None = None) -> list[dict[int, bytes]]:
        """Value bytes (with their leading space, b'' for null) per column for each row; each row after its own
        `prefixes` where given (a related table's rows: their parents' text), else after the encoder's prefix.
        Rows advance in lock step, a longer prefix simply being written for more steps."""
        device = self.model.device
        prefixes = prefixes if prefixes is not None else [self.encoder.prefix_ids] * len(orders)
        slots = self.encoder.slots is not None
        rows = [_Row(order=list(order), pending=deque(prefix),
                     positions=deque(range(len(prefix)) if slots else ())) for order, prefix in zip(orders, prefixes)]
        for row in rows:
            self._forced_prefix(row, conditions)
        cache = DynamicCache()
        live = list(range(len(rows)))  # rows still being written; each has a token pending
        while live:
            feed = torch.tensor([rows[i].pending.popleft() for i in live], dtype=torch.long)
            # without slots the model counts positions itself: every row has read as many tokens
            positions = {} if not slots else {
                "position_ids": torch.tensor([rows[i].positions.popleft() for i in live])[:, None].to(device)}
            logits = forward_cached(self.model, cache, input_ids=feed[:, None].to(device), **positions).logits
            choosing = [k for k, i in enumerate(live) if not rows[i].pending and not rows[i].done]
            if choosing:
                chosen = self._choose(logits[choosing, -1].float().cpu(), [rows[live[k]] for k in choosing],
                                      generator, temperature, top_p)
                for k, token in zip(choosing, chosen.tolist()):
                    self._advance(rows[live[k]], token, conditions)
            keep = [k for k, i in enumerate(live) if rows[i].pending]
            if len(keep) < len(live):  # drop finished rows from the batch and the KV cache
                cache.reorder_cache(torch.tensor(keep, dtype=torch.long))
                live = [live[k] for k in keep]
        return [row.values for row in rows]

    def _choose(self, logits: torch.Tensor, rows: list[_Row], generator, temperature, top_p) -> torch.Tensor:
        if self._first_token_bias:  # rows about to start a value of a calibrated column
            biased = [(k, self._first_token_bias.get(row.order[row.position])) for k, row in enumerate(rows)
                      if not row.value]
            biased = [(k, offset) for k, offset in biased if offset is not None]
            if biased:
                where, offsets = zip(*biased)
                logits = logits.index_add(0, torch.tensor(where), torch.stack(offsets))
        ends = torch.tensor([row.end for row in rows])
        masks, complete = zip(*(self.value_tokens(row.order[row.position], row.value) for row in rows))
        allowed = torch.stack(masks)
        closing = torch.tensor(complete)
        allowed[closing, ends[closing]] = True
        # The model may close a value with any column's segment; all that mass means "this value is complete".
        end_mass = torch.logsumexp(logits[:, self._end_of_value_ids], dim=-1, keepdim=True)
        return draw(logits.scatter(1, ends[:, None], end_mass), allowed, generator, temperature, top_p)

    def _advance(self, row: _Row, token: int, conditions: dict[int, str]) -> None:
        column = row.order[row.position]
        joined = self._joined.get(token)
        if joined is not None:  # a joined category: the whole value, complete at once
            row.values[column] = joined
            self._queue(row, [token], column)
            self._next_column(row, conditions)
        elif token == row.end and self._complete(self.columns[column], row.value):
            row.values[column] = row.value
            row.value = b""
            self._next_column(row, conditions)
        else:
            row.value += self.token_bytes[token]
            self._queue(row, [token], column)

    def _next_column(self, row: _Row, conditions: dict[int, str]) -> None:
        row.position += 1
        if row.position == len(row.order):
            row.done = True
            row.pending.clear()  # a last joined value: nothing more to read
            row.positions.clear()
        else:
            self._forced_prefix(row, conditions)


def _dense(offsets: Mapping[int, float], size: int) -> torch.Tensor:
    dense = torch.zeros(size)
    dense[list(offsets)] = torch.tensor(list(offsets.values()), dtype=torch.float)
    return dense


def _by_length_and_value(tokens: list[tuple[int, bytes]]
                         ) -> tuple[list[tuple[int, bytes]], dict[int, tuple[list[int], list[int]]]]:
    """The tokens that are not all digits, and the others by their number of digits: (values sorted, their ids)."""
    others, by_length = [], {}
    for token, piece in tokens:
        if piece.isdigit():
            by_length.setdefault(len(piece), []).append((int(piece), token))
        else:
            others.append((token, piece))
    return others, {length: tuple(map(list, zip(*sorted(found)))) for length, found in by_length.items()}


def forward_cached(model, cache: DynamicCache, **inputs):
    """The forward pass with the key/value cache under the name this transformers takes: `cache` since 5.25,
    `past_key_values` before (the old name is gone in 5.40)."""
    base = model.get_base_model() if hasattr(model, "get_base_model") else model  # a LoRA model passes it through
    return model(**inputs, **{_cache_keyword(type(base)): cache}, use_cache=True)


@lru_cache(maxsize=None)
def _cache_keyword(model_class: type) -> str:
    return "cache" if "cache" in inspect.signature(model_class.forward).parameters else "past_key_values"


def draw(logits: torch.Tensor, allowed: torch.Tensor, generator: torch.Generator, temperature: float = 1.0,
         top_p: float = 1.0) -> torch.Tensor:
    """One token per row among the `allowed` ones: temperature, then top-p within the allowed (the nucleus never
    holds a masked token), greedy at temperature 0."""
    logits = logits.float().masked_fill(~allowed, -torch.inf)
    if temperature <= 0:
        return logits.argmax(dim=-1)
    probs = torch.softmax(logits / temperature, dim=-1)
    if top_p < 1.0:
        sorted_probs, sorted_ids = probs.sort(dim=-1, descending=True)
        sorted_probs[sorted_probs.cumsum(dim=-1) - sorted_probs > top_p] = 0
        probs = torch.zeros_like(probs).scatter_(-1, sorted_ids, sorted_probs)
    # Inverse-CDF sampling: much faster than torch.multinomial on wide, mostly-masked rows.
    cdf = probs.cumsum(dim=-1)
    chosen = torch.searchsorted(cdf, torch.rand((len(logits), 1), generator=generator) * cdf[:, -1:], right=True)
    chosen = chosen[:, 0].clamp_(max=probs.shape[1] - 1)
    slipped = ~allowed.gather(1, chosen[:, None])[:, 0]  # a draw on the very edge of the CDF
    chosen[slipped] = probs[slipped].argmax(dim=-1)
    return chosen


def row_orders(n: int, columns: int, conditioned: Sequence[int], mode: str,
               rng: np.random.Generator) -> Iterator[list[int]]:
    """Conditioned columns first (written before the model speaks); the rest as in training, or with mode "prompt"
    the whole row after them, the conditioned columns written again in their place."""
    if mode == "prompt":  # the conditioned columns, then the whole row in the table's order
        yield from ([*conditioned, *range(columns)] for _ in range(n))
        return
    free = np.array([c for c in range(columns) if c not in set(conditioned)], dtype=int)
    for _ in range(n):
        yield list(conditioned) + (rng.permutation(free) if mode == "random" else free).tolist()


def batch_plan(n: int, batch_size: int, seed: int, shard: tuple[int, int] = (0, 1)
               ) -> Iterator[tuple[int, int, np.random.Generator, torch.Generator]]:
    """The batches one process samples, as (first record, count, numpy rng, torch generator).

    Each batch draws from generators seeded by the seed and the batch's index alone, so the batches are
    independent: process i of k takes batches i, i + k, ... and together they sample exactly what one process does.
    """
    index, count = shard
    if not 0 <= index < count:
        raise ValueError(f"shard {index} of {count} does not exist")
    for number, start in enumerate(range(0, n, batch_size)):
        if number % count == index:
            rng = np.random.default_rng([seed, number])
            generator = torch.Generator().manual_seed(int(rng.integers(2**62)))
            yield start, min(batch_size, n - start), rng, generator
