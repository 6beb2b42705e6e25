"""Conversations out of a trained model: a constrained metadata header, then turns under structural rules.

The header is sampled like a table row (categories from the training values, conditions on any subset of
fields, a requested mix of values). The turns are sampled with `TurnRules` enforced token by token: roles
alternate, a turn is never empty, the model decides where a conversation ends (within the training conversations'
numbers of turns, and soon after it reaches the context the model was trained on), a turn's length is bounded, and the
conversation always ends with its end-of-record token. Every conversation is structurally valid by construction. With a
`Novelty` filter, no turn longer than 40 characters closes as a word-for-word copy of a training turn (stock phrases
aside).
"""

from __future__ import annotations

import hashlib
import math
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from pydantic import BaseModel
from tqdm.auto import tqdm
from transformers import DynamicCache

from llmsynth.data.schema import Schema
from llmsynth.errors import GenerateError
from llmsynth.generate.rows import condition_texts, values_frame
from llmsynth.generate.sampler import ConstrainedSampler, batch_plan, draw, forward_cached, row_orders
from llmsynth.model.tokens import token_bytes
from llmsynth.serialize.chat import NEXT_ROLE, ChatEncoder, ChatRecord, rare_turns


PLAUSIBLE = 0.1  # guidance keeps to tokens within this ratio of the conditional model's likeliest (see `_plausible`)


class TurnRules(BaseModel):
    """The structure every generated conversation keeps, learned from the training conversations."""

    first_roles: list[str]
    last_roles: list[str]
    min_turns: int
    max_turns: int
    max_turn_tokens: int
    characters: str = ""  # every character the training turns hold; empty (any) in models saved before it

    @classmethod
    def learn(cls, records: list[ChatRecord], encoder: ChatEncoder) -> "TurnRules":
        turns = [len(r.turns) for r in records]
        lengths = [len(encoder.content_ids(content)) for r in records for _, content in r.turns]
        return cls(first_roles=sorted({r.turns[0][0] for r in records}),
                   last_roles=sorted({r.turns[-1][0] for r in records}),
                   min_turns=min(turns), max_turns=max(turns), max_turn_tokens=turn_token_limit(lengths),
                   characters="".join(sorted({c for r in records for _, content in r.turns for c in content})))

    def valid(self, conversation: dict) -> bool:
        """Does a conversation (messages format) keep these rules? The evaluation's structure check."""
        roles = [m.get("role") for m in conversation.get("messages", [])]
        return (self.min_turns <= len(roles) <= self.max_turns and roles[0] in self.first_roles
                and all(NEXT_ROLE[a] == b for a, b in zip(roles, roles[1:]))
                and all(isinstance(m.get("content"), str) and m["content"].strip() for m in conversation["messages"])
                and (roles[-1] in self.last_roles or len(roles) == self.max_turns))


def turn_token_limit(lengths: list[int]) -> int:
    """A quarter more than the 99.9th percentile of the training turns' token lengths: one pasted 9,000-token turn
    in a real corpus (chitchat's longest is 34,641 characters) would otherwise let every generated turn that has not
    ended run that long; turns in the bulk of the distribution, and their tail up to 1 in 1,000, keep their length."""
    return int(np.percentile(lengths, 99.9, method="higher") * 1.25) + 1


def _whole_text(piece: bytes) -> bool:
    """A token that is text on its own: whole UTF-8 characters, no control characters but line breaks and tabs.
    Turns built from such tokens always decode cleanly (no broken characters)."""
    try:
        text = piece.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return bool(text) and all(c.isprintable() or c in "\n\t" for c in text)


class Novelty:
    """The training turns generation will not repeat word for word: digests of every training turn longer than
    `min_chars` (stripped, as the copy figure reads them) that fewer than `STOCK_PHRASE` training conversations hold;
    the texts themselves are not kept beside the model. A stock phrase that many conversations share ("Is there
    anything else I can help you with today?") is the corpus's boilerplate, not one record's content: real
    conversations the model never saw repeat such turns too (the evaluation's holdout baseline), and forbidding
    them made the model write past its natural end ("...to be safe; I can do that now.PeerV careistant").

    When a turn would close as such a copy, it is sampled again from its start (up to `RETRIES` times); after
    that it may not close there and has to go on (with the rules' length limit the last word)."""

    RETRIES = 3

    def __init__(self, digests: Iterable[str], min_chars: int = 40):
        self.digests, self.min_chars = frozenset(digests), min_chars

    @staticmethod
    def _digest(text: str) -> str:
        return hashlib.blake2b(text.encode(), digest_size=8).hexdigest()

    @classmethod
    def learn(cls, conversations: Iterable[Iterable[str]], min_chars: int = 40) -> "Novelty":
        """From each training conversation's turns."""
        return cls({cls._digest(t) for t in rare_turns(conversations, min_chars)}, min_chars)

    def copies(self, content: bytes) -> bool:
        if len(content) <= self.min_chars:  # bytes: never fewer than characters
            return False
        text = content.decode("utf-8").strip()
        return len(text) > self.min_chars and self._digest(text) in self.digests

    def to_json(self) -> dict:
        return {"min_chars": self.min_chars, "digests": sorted(self.digests)}

    @classmethod
    def from_json(cls, data: dict) -> "Novelty":
        return cls(data["digests"], data["min_chars"])


class _Turns:
    """Where one conversation stands: its current role, turns so far, the current turn's tokens and text, and,
    between turns, the id sequences it is part-way through (`going`: sequence -> the role it opens, None for the
    end)."""

    def __init__(self, going: dict[tuple[int, ...], str | None]):
        self.role: str | None = None
        self.full = False  # it has reached the context: it ends where the rules let it
        self.turns = 0
        self.going = going
        self.depth = 0
        self.done = False
        self.tries = 0  # times the current turn was sampled again (it closed as a copy)
        self.restart()

    def restart(self) -> None:
        """Back to the start of the current turn (a fresh turn, or one sampled again)."""
        self.tokens = 0
        self.content = b""
        self.has_text = False


class TurnConstraint:
    """Which tokens keep the rules, per conversation. Between turns the ids of the turn format are followed; where
    they branch (the next role's turn or the end), the model chooses among the branches the rules allow."""

    def __init__(self, encoder: ChatEncoder, rules: TurnRules, vocab_size: int, novelty: Novelty | None = None):
        self.encoder, self.rules, self.novelty = encoder, rules, novelty
        self.pieces = token_bytes(encoder.tokenizer)[:vocab_size] + [b""] * max(0, vocab_size - len(encoder.tokenizer))
        seen = frozenset(rules.characters)  # a pretrained base's 49k tokens hold scripts and symbols the data never has
        self.content = torch.tensor([i not in encoder.reserved and _whole_text(b)
                                     and (not seen or seen.issuperset(b.decode("utf-8")))
                                     for i, b in enumerate(self.pieces)])
        self.text = torch.tensor([bool(b.strip()) and bool(c) for b, c in zip(self.pieces, self.content.tolist())])
        self.text_bearing = set(torch.nonzero(self.text).flatten().tolist())
        self.transitions = {role: encoder.format.transitions(role) for role in (None, *encoder.format.opening)}

    def first(self) -> _Turns:
        return _Turns({ids: role for ids, role in self.transitions[None].items() if role in self.rules.first_roles})

    def _ways_on(self, state: _Turns) -> dict[tuple[int, ...], str | None]:
        """From the current turn: to the next role's turn (while turns are left), to the end (where the rules let
        the conversation stop). Where the context is full, it ends (a turn later where that turn's role may not
        close a conversation)."""
        may_end = state.turns >= self.rules.min_turns and (
            state.role in self.rules.last_roles or state.turns == self.rules.max_turns)
        may_go_on = state.turns < self.rules.max_turns
        if state.full:
            may_go_on = may_go_on and not may_end
        return {ids: role for ids, role in self.transitions[state.role].items()
                if (may_go_on if role is not None else may_end)}

    def closes(self, state: _Turns, token: int) -> bool:
        """Would this token end the current turn?"""
        return (not state.done and not state.going and state.has_text
                and any(ids[0] == token for ids in self._ways_on(state)))

    def copy_closes(self, state: _Turns, token: int) -> bool:
        """Would this token close the turn as a copy of a training turn?"""
        return self.novelty is not None and self.closes(state, token) and self.novelty.copies(state.content)

    def update(self, state: _Turns, token: int) -> None:
        if state.done:
            return
        if not state.going:
            if not self.closes(state, token):
                state.tokens += 1
                state.content += self.pieces[token]
                state.has_text = state.has_text or token in self.text_bearing
                return
            state.going, state.depth = self._ways_on(state), 0
        state.going = {ids: role for ids, role in state.going.items() if ids[state.depth] == token}
        state.depth += 1
        finished = [(ids, role) for ids, role in state.going.items() if len(ids) == state.depth]
        if finished:
            role = finished[0][1]
            state.going, state.depth = {}, 0
            if role is None:
                state.done = True
            else:
                state.role, state.turns, state.tries = role, state.turns + 1, 0
                state.restart()

    def allowed(self, state: _Turns) -> torch.Tensor:
        """The tokens that may come next; a turn sampled again `RETRIES` times may not close as a copy."""
        allowed = torch.zeros_like(self.content)
        if state.done:
            allowed[self.encoder.end_id] = True
            return allowed
        if state.going:
            allowed[[ids[state.depth] for ids in state.going]] = True
            return allowed
        if state.tokens < self.rules.max_turn_tokens:
            allowed |= self.content
        elif not state.has_text:  # a turn at its length limit with only blanks so far: it must say something
            allowed |= self.text
        if state.has_text and not (state.tries >= Novelty.RETRIES and allowed.any()
                                   and self.novelty is not None and self.novelty.copies(state.content)):
            allowed[[ids[0] for ids in self._ways_on(state)]] = True
        return allowed


def _mix_assignments(n: int, mix: Mapping[str, Mapping[Any, float]], rng: np.random.Generator) -> list[dict]:
    """Per conversation, the mixed fields it is conditioned on: round(n * share) of each value, in random order."""
    assignments: list[dict] = [{} for _ in range(n)]
    for field_name, shares in mix.items():
        if sum(shares.values()) > 1 + 1e-9 or min(shares.values(), default=0) < 0:
            raise GenerateError(f"mix for {field_name!r}: shares must be >= 0 and add up to at most 1, got {dict(shares)}")
        values = [v for v, share in shares.items() for _ in range(round(n * share))][:n]
        for index, value in zip(rng.permutation(n), values):
            assignments[index][field_name] = value
    return assignments


def generate_chats(model, encoder: ChatEncoder, schema: Schema, rules: TurnRules, n: int,
                   conditions: Mapping[str, Any] | None = None, mix: Mapping[str, Mapping[Any, float]] | None = None,
                   seed: int = 0, batch_size: int = 64, temperature: float = 1.0, top_p: float = 1.0,
                   column_order: str = "conditional", progress: bool = True,
                   shard: tuple[int, int] = (0, 1), novelty: Novelty | None = None,
                   counts: Counter | None = None, guidance: float = 1.0,
                   requests: Sequence[Mapping[str, Any]] | None = None, context: int | None = None
                   ) -> Iterator[list[dict]]:
    """Yield batches of conversations in the messages format; same seed, same conversations.

    `conditions` fixes metadata fields in every conversation; `mix` asks for shares of values (e.g.
    {"intent": {"refund": 0.3}}: 30% refunds, the rest drawn from the model); `requests` instead fixes each
    conversation's own fields (one per conversation: `n` is their number). `shard` (i, k): only batches
    i, i + k, ... (see `batch_plan`). With `novelty`, no turn closes as a copy of a training turn; `counts` gets
    how often a turn was sampled again ("resampled") and how many copies were kept where the turn's length limit
    left no other way ("kept"). `guidance` > 1: classifier-free guidance towards the metadata (see `_bodies`).
    `context`: the tokens a conversation may take (the context the model was trained on; None: no limit).
    """
    n = n if requests is None else len(requests)
    if n < 1:
        raise GenerateError(f"the number of conversations must be at least 1, got {n}")
    wanted = ([dict(r) for r in requests] if requests is not None
              else _wanted(schema, n, dict(conditions or {}), dict(mix or {}), seed))
    for request in {tuple(sorted(r.items(), key=lambda kv: kv[0])) for r in wanted}:  # every value checked up front
        condition_texts(schema, dict(request), noun="field")
    header_sampler = ConstrainedSampler(model, encoder.header, schema.learned) if schema.learned else None
    constraint = TurnConstraint(encoder, rules, model.get_output_embeddings().weight.shape[0], novelty)
    counts = Counter() if counts is None else counts
    plan = list(batch_plan(n, batch_size, seed, shard))
    with tqdm(total=sum(count for _, count, _, _ in plan), desc="generating", unit="conversation",
              disable=not progress) as bar:
        for start, count, rng, generator in plan:
            headers, metadata = _headers(header_sampler, encoder, schema, wanted[start:start + count], rng, generator,
                                         temperature, top_p, column_order, seed + start)
            bodies = _bodies(model, encoder, constraint, headers, generator, temperature, top_p, counts, guidance,
                             context)
            yield [{"messages": messages, "metadata": meta} for messages, meta in zip(bodies, metadata)]
            bar.update(count)


def _wanted(schema: Schema, n: int, conditions: dict, mix: dict, seed: int) -> list[dict]:
    """Each conversation's fixed fields: the conditions, and its share of the mix."""
    both = sorted(set(conditions) & set(mix))
    if both:
        raise GenerateError(f"{both}: a field is either fixed by a condition or mixed, not both")
    for field_name, shares in mix.items():  # every mixed value is checked up front, like a condition
        for value in shares:
            condition_texts(schema, {field_name: value}, noun="field")
    return [{**conditions, **a} for a in _mix_assignments(n, mix, np.random.default_rng(seed))]


def _headers(sampler, encoder: ChatEncoder, schema: Schema, wanted: list[dict], rng, generator, temperature,
             top_p, column_order, seed) -> tuple[list[list[int]], list[dict]]:
    """Prompt ids (through the end-of-header marker) and metadata of each conversation, in request order."""
    if sampler is None:
        empty = encoder.header_ids([], [])[0]
        frame = values_frame([{} for _ in wanted], schema, seed)
        return [list(empty) for _ in wanted], _records(frame)
    groups: dict[tuple, list[int]] = {}
    for index, request in enumerate(wanted):
        groups.setdefault(tuple(sorted(request.items(), key=lambda kv: kv[0])), []).append(index)
    sampled: list[tuple[list[int], dict[int, bytes]] | None] = [None] * len(wanted)
    for request, indices in groups.items():
        fixed = condition_texts(schema, dict(request), noun="field")
        orders = list(row_orders(len(indices), len(schema.learned), list(fixed), column_order, rng))
        for index, order, values in zip(indices, orders, sampler.sample_batch(orders, fixed, generator, temperature,
                                                                              top_p)):
            sampled[index] = (order, values)
    prompts = []
    for order, values in sampled:
        texts = [values[k][1:].decode() for k in range(len(schema.learned))]
        prompts.append(encoder.header_ids(texts, order)[0])
    frame = values_frame([values for _, values in sampled], schema, seed)
    return prompts, _records(frame)


def _records(frame) -> list[dict]:
    """DataFrame rows as JSON-ready dicts (numpy scalars to Python, missing values left out)."""
    records = []
    rows = frame.to_dict(orient="records") if len(frame.columns) else [{}] * len(frame)  # pandas 2 gives [] there
    for row in rows:
        records.append({k: (v.item() if hasattr(v, "item") else v) for k, v in row.items()
                        if not (v is None or (isinstance(v, float) and np.isnan(v)))})
    return records


@dataclass
class _Row:
    """One conversation being written: the ids it keeps, its constraint state, and where its current turn starts
    (the id that opens it, that id's column in the KV cache and its position), so the turn can be sampled again."""

    state: _Turns
    ids: list[int] = field(default_factory=list)
    position: int = 0  # of the next id
    anchor: tuple[int, int, int, int] = (0, 0, 0, 0)  # the opening id, its cache column, its position, len(ids)


@torch.no_grad()
def _bodies(model, encoder: ChatEncoder, constraint: TurnConstraint, prompts: list[list[int]],
            generator: torch.Generator, temperature: float, top_p: float, counts: Counter,
            guidance: float = 1.0, context: int | None = None) -> list[list[dict]]:
    """Sample every conversation's turns after its header, all rows one token per step with a KV cache. A turn that
    closes as a training turn's copy is sampled again: its ids are masked out of the cache and the id that opened
    it is fed again at its old position, so the model sees just what it saw at the turn's start.

    With `guidance` above 1 (classifier-free guidance), each conversation has a twin in the batch that is written
    after an empty header and is fed the same ids; the logits are the twin's plus `guidance` times the difference,
    which pushes every token towards what the header asks for (among the tokens `_plausible` keeps). A conversation
    that has reached `context` tokens ends where the rules let it: after the turn under way, or one more where that
    turn's role may not close it."""
    device = model.device
    n = len(prompts)
    empty = list(encoder.header_ids([], [])[0])
    twins = [empty] * n if guidance != 1.0 and any(p != empty for p in prompts) else []  # no metadata: no twins
    shifts = [len(p) - len(t) for p, t in zip(prompts, twins)]  # a twin's position = its partner's - shift
    everything = prompts + twins
    width = max(len(p) for p in everything)
    rows = [_Row(constraint.first(), position=len(p)) for p in prompts]
    mask = torch.tensor([[0] * (width - len(p)) + [1] * len(p) for p in everything])
    feed = torch.tensor([[encoder.pad_id] * (width - len(p)) + p for p in everything])
    positions = (mask.cumsum(-1) - 1).clamp(min=0)
    cache, live = DynamicCache(), list(range(n))
    while live:
        logits = forward_cached(model, cache, input_ids=feed.to(device), attention_mask=mask.to(device),
                                position_ids=positions.to(device)).logits[:, -1].float().cpu()
        states = [rows[i].state for i in live]
        for i, state in zip(live, states):
            state.full = context is not None and rows[i].position >= context
        allowed = torch.stack([constraint.allowed(s) for s in states])
        if twins:
            unconditional, logits = logits[len(live):], logits[:len(live)]
            allowed &= _plausible(logits, allowed)
            logits = unconditional + guidance * (logits - unconditional)
        tokens = draw(logits, allowed, generator, temperature, top_p)
        column = mask.shape[1]  # where this step's fed ids go in the cache
        mask = torch.cat([mask, torch.ones(len(mask), 1, dtype=mask.dtype)], dim=1)
        fed, fed_positions = [], []
        for k, (row, token) in enumerate(zip((rows[i] for i in live), tokens.tolist())):
            state = row.state
            copy = constraint.copy_closes(state, token)
            if copy and state.tries < Novelty.RETRIES:
                opener, start, position, kept = row.anchor
                # The old opener and the turn out of the cache (the twin's too); the opener comes again here.
                mask[k::len(live), start:column] = 0
                del row.ids[kept:]
                state.tries += 1
                state.restart()
                row.anchor, row.position = (opener, column, position, kept), position + 1
                fed.append(opener), fed_positions.append(position)
                counts["resampled"] += 1
                continue
            if copy:  # no other way: the turn is at its length limit
                counts["kept"] += 1
            turns = state.turns
            constraint.update(state, token)
            row.ids.append(token)
            if state.turns > turns:
                row.anchor = (token, column, row.position, len(row.ids))
            fed.append(token), fed_positions.append(row.position)
            row.position += 1
        keep = [k for k, i in enumerate(live) if not rows[i].state.done]
        if twins:
            fed += fed
            fed_positions += [p - shifts[i] for p, i in zip(fed_positions, live)]
            keep += [k + len(live) for k in keep]
        if len(keep) < len(fed):  # finished conversations leave the batch and the KV cache
            cache.reorder_cache(torch.tensor(keep, dtype=torch.long))
            mask, fed, fed_positions = mask[keep], [fed[k] for k in keep], [fed_positions[k] for k in keep]
        live = [i for i in live if not rows[i].state.done]
        feed, positions = torch.tensor(fed)[:, None], torch.tensor(fed_positions)[:, None]
    return [_messages(encoder, constraint.pieces, row.ids) for row in rows]


def _plausible(logits: torch.Tensor, allowed: torch.Tensor) -> torch.Tensor:
    """The allowed tokens guidance may choose from: those the conditional model gives at least `PLAUSIBLE` times the
    probability of its likeliest allowed token. Guidance multiplies the gap between the two runs, so a token both
    find unlikely could otherwise come first (on SmolLM2, half the update_contact chats opened "My contact details
    have changed, George. My name is Toni Jacob.", and the agent went on with "George")."""
    masked = logits.masked_fill(~allowed, -torch.inf)
    return masked >= masked.max(dim=-1, keepdim=True).values + math.log(PLAUSIBLE)


def _messages(encoder: ChatEncoder, pieces: list[bytes], ids: list[int]) -> list[dict]:
    """Turns out of generated ids, read the way `TurnConstraint` wrote them: turn-format sequences between
    contents (content never holds the id a turn-ending sequence starts with)."""
    messages, content, position = [], b"", 0
    going = encoder.format.transitions(None)
    while position < len(ids):
        found = next(((seq, role) for seq, role in going.items() if ids[position:position + len(seq)] == list(seq)),
                     None)
        if found is None:
            content += pieces[ids[position]]
            position += 1
            continue
        if messages:
            messages[-1]["content"] = content.decode("utf-8").strip()
        seq, role = found
        if role is None:
            return messages
        messages.append({"role": role, "content": ""})
        content, position, going = b"", position + len(seq), encoder.format.transitions(role)
    if messages:
        messages[-1]["content"] = content.decode("utf-8").strip()
    return messages
