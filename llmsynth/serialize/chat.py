"""Conversations as the token ids the model trains on: a metadata header, then role-marked turns.

With the tiny preset ("markers" style) every marker is a special token of our own:

    <bos> intent is refund, channel is email<|conversation|><|user|>Hi, ...<|assistant|>Hello ...<eor>

With a pretrained base ("template" style) the conversation is written in the base's own chat template (an instruct
model's, or `prompts/chatml.jinja` for a tokenizer that has none), the metadata header in a system turn:

    <|im_start|>system\\n intent is refund, channel is email<|im_end|>\\n<|im_start|>user\\nHi, ...<|im_end|>\\n...

The header is a GReaT-style row of the metadata fields (the same encoder and constrained sampler as tables, so a
header can be conditioned on any subset of fields or drawn from the training distribution). Both styles come down
to a `TurnFormat`: the ids that open a turn of each role, close a turn, and end the conversation; the first id that
closes a turn (or opens the next) is learned as the model's decision that the turn is over. The pieces are encoded
one by one and joined, so training and generation see the very same ids.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from llmsynth.errors import ModelError
from llmsynth.serialize.tabular import IGNORE, RowEncoder

ROLE_MARKERS = {"system": "<|system|>", "user": "<|user|>", "assistant": "<|assistant|>"}
END_OF_HEADER = "<|conversation|>"
MARKERS = [END_OF_HEADER, *ROLE_MARKERS.values()]
NEXT_ROLE = {"system": "user", "user": "assistant", "assistant": "user"}
FALLBACK_TEMPLATE = Path(__file__).resolve().parent.parent / "prompts" / "chatml.jinja"
STYLES = ("markers", "template")


@dataclass(frozen=True)
class ChatRecord:
    """One conversation as the model learns it: its metadata value texts (schema order) and its turns. A window of
    a longer conversation that goes on after its last turn is not `complete`: no end of conversation is learned."""

    metadata: tuple[str, ...]
    turns: tuple[tuple[str, str], ...]  # (role, content)
    complete: bool = True


@dataclass(frozen=True)
class TurnFormat:
    """The ids around turns: `opening[role]` before a turn's content, `closing` after it, `end` after the last."""

    opening: dict[str, tuple[int, ...]]
    closing: tuple[int, ...]
    end: tuple[int, ...]

    def transitions(self, role: str | None) -> dict[tuple[int, ...], str | None]:
        """What may follow a turn of `role` (None: the header): the ids to the next turn, by its role, and to the
        end of the conversation (None)."""
        if role is None:
            return {self.opening[r]: r for r in self.opening}
        return {self.closing + self.opening[NEXT_ROLE[role]]: NEXT_ROLE[role], self.closing + self.end: None}


def turn_texts(records: Sequence[ChatRecord]) -> list[str]:
    return [content for record in records for _, content in record.turns]


STOCK_PHRASE = 5  # a turn this many training conversations hold is the corpus's boilerplate, not one record's


def rare_turns(conversations: Iterable[Iterable[str]], min_chars: int = 40) -> set[str]:
    """The turns longer than `min_chars` (stripped) that fewer than `STOCK_PHRASE` conversations hold: what no
    generated turn may copy, and what the evaluation's rare-copy figure counts."""
    holders = Counter(t for turns in conversations for t in {t.strip() for t in turns if len(t.strip()) > min_chars})
    return {t for t, count in holders.items() if count < STOCK_PHRASE}


class ChatEncoder:
    """Token ids and labels of conversations for one tokenizer. `loss_on` is "all" (both sides are synthesized)
    or "assistant" (only the agent's turns, and the ids that open and close turns, are learned)."""

    def __init__(self, tokenizer, metadata_names: Sequence[str], loss_on: str = "all", style: str = "markers"):
        if style not in STYLES:
            raise ValueError(f"style must be one of {STYLES}, got {style!r}")
        self.tokenizer = tokenizer
        self.style = style
        self.column_count = len(metadata_names)
        self.loss_on = loss_on
        if style == "markers":
            self.format = TurnFormat({role: (tokenizer.convert_tokens_to_ids(marker),)
                                      for role, marker in ROLE_MARKERS.items()}, (), (tokenizer.eos_token_id,))
            self.header = RowEncoder(tokenizer, metadata_names,
                                     end_of_row_id=tokenizer.convert_tokens_to_ids(END_OF_HEADER))
            self.after_header: tuple[int, ...] = ()
            segments = self.header.first_segment_ids + self.header.next_segment_ids
            self.reserved = {i for ids in segments for i in ids} | {i for ids in self.format.opening.values()
                                                                    for i in ids} | set(self.format.end)
        else:
            self.format, system_opening = _template_format(tokenizer)
            self.header = RowEncoder(tokenizer, metadata_names, end_of_row_id=self.format.closing[0],
                                     prefix_ids=system_opening)
            self.after_header = self.format.closing[1:]
            self.reserved = {self.format.closing[0]}  # turn content never holds it: it closes the turn
        self.end_id = self.format.end[-1]
        self.pad_id = self.header.pad_id

    def content_ids(self, text: str) -> list[int]:
        return self.tokenizer.encode(text, add_special_tokens=False)

    def header_ids(self, values: Sequence[str], order: Sequence[int], given_learned: bool = True
                   ) -> tuple[list[int], list[int]]:
        ids, labels = self.header.encode(values, order, given_learned=given_learned)
        return ids + list(self.after_header), labels + list(self.after_header)

    def encode(self, record: ChatRecord, order: Sequence[int], closed: bool | None = None,
               given_learned: bool = True) -> tuple[list[int], list[int]]:
        """Ids and labels of a conversation; `closed=False` stops after the last turn's content (a prompt; by
        default, where the record is a window that the conversation goes on after); `given_learned`: as
        `RowEncoder.encode`'s, for the metadata header."""
        closed = record.complete if closed is None else closed
        ids, labels = self.header_ids(record.metadata, order, given_learned)
        for number, (role, content) in enumerate(record.turns):
            opening, content_ids = list(self.format.opening[role]), self.content_ids(content)
            learned = self.loss_on == "all" or role == "assistant"
            last = number == len(record.turns) - 1
            closing = [] if last and not closed else list(self.format.closing)
            ids += opening + content_ids + closing
            labels += opening + (content_ids if learned else [IGNORE] * len(content_ids)) + closing
        if closed:
            ids += self.format.end
            labels += self.format.end
        return ids, labels


def context_length(lengths: Sequence[int], model_limit: int, percentile: float = 99.0) -> int:
    """The longest training sequence, chosen from the data: the conversations' token lengths at `percentile`,
    rounded up to a multiple of 64, never past the model's own limit. Longer conversations become windows."""
    ranked = sorted(lengths)
    at = ranked[min(len(ranked) - 1, math.ceil(len(ranked) * percentile / 100) - 1)]
    return min(model_limit, -(-at // 64) * 64)


@dataclass
class Windowing:
    """What `windows` did to a corpus: conversations split into windows, windows made, turns cut to fit."""

    context: int
    windowed_conversations: int = 0
    windows: int = 0
    cut_turns: int = 0


def windows(record: ChatRecord, encoder: ChatEncoder, context: int, counts: Windowing) -> list[ChatRecord]:
    """A conversation too long for `context` tokens as windows of whole consecutive turns, each with the metadata
    header, each within `context` (a turn longer than a whole window is cut to fit, at a token boundary). Only the
    last window is complete: the end of the conversation is learned there alone."""
    header = len(encoder.encode(ChatRecord(record.metadata, ()), range(encoder.column_count))[0])
    budget = context - header - 8  # room for the header in another column order
    frame = len(encoder.format.closing) + max(len(ids) for ids in encoder.format.opening.values())
    if budget <= frame:
        raise ModelError(f"the context of {context} tokens leaves no room for a turn after the metadata header")
    groups: list[list[tuple[str, str]]] = [[]]
    used = 0
    for role, content in record.turns:
        ids = encoder.content_ids(content)
        if len(ids) + frame > budget:
            content = encoder.tokenizer.decode(ids[:budget - frame - 2])
            counts.cut_turns += 1
        cost = len(encoder.content_ids(content)) + frame
        if groups[-1] and used + cost > budget:
            groups.append([])
            used = 0
        groups[-1].append((role, content))
        used += cost
    counts.windowed_conversations += 1
    counts.windows += len(groups)
    return [ChatRecord(record.metadata, tuple(turns), complete=number == len(groups) - 1)
            for number, turns in enumerate(groups)]


def chat_template(tokenizer) -> str:
    """The tokenizer's own chat template, or ChatML from `prompts/` for one that has none."""
    return tokenizer.chat_template or FALLBACK_TEMPLATE.read_text()


def _template_format(tokenizer) -> tuple[TurnFormat, tuple[int, ...]]:
    """The turn format a chat template writes, and the ids before a system turn's content, found by rendering a
    probe conversation with marker contents and cutting the text at them."""
    contents = ["\x01S\x01", "\x01U\x01", "\x01A\x01", "\x01V\x01"]
    messages = [{"role": role, "content": content}
                for role, content in zip(("system", "user", "assistant", "user"), contents)]
    try:
        text = tokenizer.apply_chat_template(messages, chat_template=chat_template(tokenizer), tokenize=False)
    except Exception as exc:  # a template raises what it likes (jinja errors, "roles must alternate", ...)
        raise ModelError(f"the base model's chat template cannot write a system turn followed by user and "
                         f"assistant turns ({exc}); chat synthesis needs one that can") from exc
    cuts = [text.find(content) for content in contents]
    if min(cuts) < 0 or cuts != sorted(cuts):
        raise ModelError("the base model's chat template changes the turn contents; chat synthesis cannot use it")
    starts = [0] + [cut + len(content) for cut, content in zip(cuts, contents)]
    system_opening, system_to_user, user_to_assistant, assistant_to_user, closing = (
        text[start:cut] for start, cut in zip(starts, cuts + [len(text)]))
    openings: dict[str, str] = {}
    for role, between in (("user", system_to_user), ("assistant", user_to_assistant), ("user", assistant_to_user)):
        opening = between[len(closing):]
        if not between.startswith(closing) or openings.setdefault(role, opening) != opening:
            raise ModelError("the base model's chat template writes turns of one role differently; chat synthesis "
                             "cannot use it")

    def encode(piece: str) -> tuple[int, ...]:
        return tuple(tokenizer.encode(piece, add_special_tokens=False))

    used = {i for piece in (closing, *openings.values()) for i in encode(piece)}
    candidates = (tokenizer.eos_token_id, tokenizer.bos_token_id, tokenizer.pad_token_id, tokenizer.unk_token_id,
                  *tokenizer.all_special_ids)
    end = next((i for i in candidates if i is not None and i not in used), None)
    if not closing or end is None:
        raise ModelError("the base model's chat template closes no turn, or its tokenizer has no token left to end "
                         "a conversation with; chat synthesis cannot use it")
    turn_format = TurnFormat({role: encode(opening) for role, opening in openings.items()}, encode(closing), (end,))
    return turn_format, encode(system_opening)
