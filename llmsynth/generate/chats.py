"""Conversations out of a trained model: a constrained metadata header, then turns under structural rules.

The header is sampled like a table row (categories from the training values, conditions on any subset of
fields, a requested mix of values). The turns are sampled with `TurnRules` enforced token by token: roles
alternate, a turn is never empty, the number of turns and a turn's length are bounded, and the conversation
always ends with its end-of-record token. Every conversation is structurally valid by construction.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

import numpy as np
import torch
from pydantic import BaseModel
from tqdm.auto import tqdm
from transformers import LogitsProcessor

from llmsynth.data.schema import Schema
from llmsynth.errors import GenerateError
from llmsynth.generate.rows import condition_texts, values_frame
from llmsynth.generate.sampler import ConstrainedSampler, batch_plan, row_orders
from llmsynth.model.tokens import token_bytes
from llmsynth.serialize.chat import NEXT_ROLE, ChatEncoder, ChatRecord


class TurnRules(BaseModel):
    """The structure every generated conversation keeps, learned from the training conversations."""

    first_roles: list[str]
    last_roles: list[str]
    min_turns: int
    max_turns: int
    max_turn_tokens: int

    @classmethod
    def learn(cls, records: list[ChatRecord], encoder: ChatEncoder) -> "TurnRules":
        turns = [len(r.turns) for r in records]
        longest = max(len(encoder.content_ids(content)) for r in records for _, content in r.turns)
        return cls(first_roles=sorted({r.turns[0][0] for r in records}),
                   last_roles=sorted({r.turns[-1][0] for r in records}),
                   min_turns=min(turns), max_turns=max(turns), max_turn_tokens=int(longest * 1.25) + 1)

    def valid(self, conversation: dict) -> bool:
        """Does a conversation (messages format) keep these rules? The evaluation's structure check."""
        roles = [m.get("role") for m in conversation.get("messages", [])]
        return (self.min_turns <= len(roles) <= self.max_turns and roles[0] in self.first_roles
                and all(NEXT_ROLE[a] == b for a, b in zip(roles, roles[1:]))
                and all(isinstance(m.get("content"), str) and m["content"].strip() for m in conversation["messages"])
                and (roles[-1] in self.last_roles or len(roles) == self.max_turns))


def _whole_text(piece: bytes) -> bool:
    """A token that is text on its own: whole UTF-8 characters, no control characters but line breaks and tabs.
    Turns built from such tokens always decode cleanly (no broken characters)."""
    try:
        text = piece.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return bool(text) and all(c.isprintable() or c in "\n\t" for c in text)


class _Turns:
    """Where one conversation stands: its current role, turns so far, the current turn's tokens, and, between turns,
    the id sequences it is part-way through (`going`: sequence -> the role it opens, None for the end)."""

    def __init__(self, going: dict[tuple[int, ...], str | None]):
        self.role: str | None = None
        self.turns = 0
        self.tokens = 0
        self.has_text = False
        self.done = False
        self.going = going
        self.depth = 0


class TurnConstraint(LogitsProcessor):
    """Masks every token that would break the rules, then applies temperature and top-p (after the mask, so the
    nucleus is drawn from valid tokens only). Between turns the ids of the turn format are followed; where they
    branch (the next role's turn or the end), the model chooses among the branches the rules allow."""

    def __init__(self, encoder: ChatEncoder, rules: TurnRules, vocab_size: int, temperature: float, top_p: float):
        self.encoder, self.rules = encoder, rules
        self.temperature, self.top_p = temperature, top_p
        self.pieces = token_bytes(encoder.tokenizer)[:vocab_size] + [b""] * max(0, vocab_size - len(encoder.tokenizer))
        self.content = torch.tensor([i not in encoder.reserved and _whole_text(b) for i, b in enumerate(self.pieces)])
        self.text = torch.tensor([bool(b.strip()) and bool(c) for b, c in zip(self.pieces, self.content.tolist())])
        self.text_bearing = set(torch.nonzero(self.text).flatten().tolist())
        self.transitions = {role: encoder.format.transitions(role) for role in (None, *encoder.format.opening)}
        self.states: list[_Turns] | None = None

    def start(self) -> "TurnConstraint":
        """Forget the last batch: the next call sees new prompts."""
        self.states = None
        return self

    def _first(self) -> _Turns:
        return _Turns({ids: role for ids, role in self.transitions[None].items() if role in self.rules.first_roles})

    def _ways_on(self, state: _Turns) -> dict[tuple[int, ...], str | None]:
        """From the current turn: to the next role's turn (while turns are left), to the end (where the rules let
        the conversation stop)."""
        ways = {}
        for ids, role in self.transitions[state.role].items():
            if role is not None and state.turns < self.rules.max_turns:
                ways[ids] = role
            if role is None and state.turns >= self.rules.min_turns and (
                    state.role in self.rules.last_roles or state.turns == self.rules.max_turns):
                ways[ids] = role
        return ways

    def _update(self, state: _Turns, token: int) -> None:
        if state.done:
            return
        if not state.going:
            ways = self._ways_on(state) if state.has_text else {}
            if not any(ids[0] == token for ids in ways):
                state.tokens += 1
                state.has_text = state.has_text or token in self.text_bearing
                return
            state.going, state.depth = ways, 0
        state.going = {ids: role for ids, role in state.going.items() if ids[state.depth] == token}
        state.depth += 1
        finished = [(ids, role) for ids, role in state.going.items() if len(ids) == state.depth]
        if finished:
            role = finished[0][1]
            state.going, state.depth = {}, 0
            if role is None:
                state.done = True
            else:
                state.role, state.turns, state.tokens, state.has_text = role, state.turns + 1, 0, False

    def _allowed(self, state: _Turns) -> torch.Tensor:
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
        if state.has_text:
            allowed[[ids[0] for ids in self._ways_on(state)]] = True
        return allowed

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        if self.states is None:
            self.states = [self._first() for _ in range(len(input_ids))]
        else:
            for state, token in zip(self.states, input_ids[:, -1].tolist()):
                self._update(state, token)
        allowed = torch.stack([self._allowed(s) for s in self.states]).to(scores.device)
        scores = scores.float().masked_fill(~allowed, -torch.inf) / max(self.temperature, 1e-5)
        if self.top_p < 1.0:
            sorted_scores, order = scores.sort(dim=-1, descending=True)
            probs = sorted_scores.softmax(dim=-1)
            outside = probs.cumsum(dim=-1) - probs > self.top_p
            scores = scores.scatter(1, order, sorted_scores.masked_fill(outside, -torch.inf))
        return scores


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
                   shard: tuple[int, int] = (0, 1)) -> Iterator[list[dict]]:
    """Yield batches of conversations in the messages format; same seed, same conversations.

    `conditions` fixes metadata fields in every conversation; `mix` asks for shares of values (e.g.
    {"intent": {"refund": 0.3}}: 30% refunds, the rest drawn from the model). `shard` (i, k): only batches
    i, i + k, ... (see `batch_plan`).
    """
    if n < 1:
        raise GenerateError(f"the number of conversations must be at least 1, got {n}")
    conditions, mix = dict(conditions or {}), dict(mix or {})
    both = sorted(set(conditions) & set(mix))
    if both:
        raise GenerateError(f"{both}: a field is either fixed by a condition or mixed, not both")
    for field_name, shares in mix.items():  # every mixed value is checked up front, like a condition
        for value in shares:
            condition_texts(schema, {field_name: value}, noun="field")
    condition_texts(schema, conditions, noun="field")
    assignments = _mix_assignments(n, mix, np.random.default_rng(seed))
    header_sampler = ConstrainedSampler(model, encoder.header, schema.learned) if schema.learned else None
    constraint = TurnConstraint(encoder, rules, model.get_output_embeddings().weight.shape[0], temperature, top_p)
    plan = list(batch_plan(n, batch_size, seed, shard))
    with tqdm(total=sum(count for _, count, _, _ in plan), desc="generating", unit="conversation",
              disable=not progress) as bar:
        for start, count, rng, generator in plan:
            wanted = [{**conditions, **a} for a in assignments[start:start + count]]
            headers, metadata = _headers(header_sampler, encoder, schema, wanted, rng, generator, temperature,
                                         top_p, column_order, seed + start)
            bodies = _bodies(model, encoder, constraint.start(), headers, temperature, seed + start)
            yield [{"messages": messages, "metadata": meta} for messages, meta in zip(bodies, metadata)]
            bar.update(len(wanted))


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


@torch.no_grad()
def _bodies(model, encoder: ChatEncoder, constraint: TurnConstraint, prompts: list[list[int]], temperature: float,
            seed: int) -> list[list[dict]]:
    width = max(len(p) for p in prompts)
    pad = encoder.pad_id
    rules = constraint.rules
    input_ids = torch.tensor([[pad] * (width - len(p)) + p for p in prompts], device=model.device)
    attention = torch.tensor([[0] * (width - len(p)) + [1] * len(p) for p in prompts], device=model.device)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        output = model.generate(input_ids=input_ids, attention_mask=attention, do_sample=temperature > 0,
                                temperature=1.0, top_p=1.0, top_k=0, logits_processor=[constraint],
                                max_new_tokens=_longest(encoder, rules),
                                pad_token_id=pad, eos_token_id=encoder.end_id)
    return [_messages(encoder, constraint.pieces, row.tolist()) for row in output[:, width:]]


def _longest(encoder: ChatEncoder, rules: TurnRules) -> int:
    """New tokens the longest conversation the rules allow takes: every turn at its limit, and the ids between."""
    between = max(len(ids) for role in (None, *encoder.format.opening) for ids in encoder.format.transitions(role))
    return rules.max_turns * (rules.max_turn_tokens + between) + between + 1


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
