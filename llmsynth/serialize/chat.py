"""Conversations as the token ids the model trains on: a metadata header, then role-marked turns.

    <bos> intent is refund, channel is email<|conversation|><|user|>Hi, ...<|assistant|>Hello ...<eor>

The header is a GReaT-style row of the metadata fields (the same encoder and constrained sampler as tables, so a
header can be conditioned on any subset of fields or drawn from the training distribution); it ends with its
own marker. Each turn starts with its role's marker, and the conversation ends with end of record. Every marker
is a special token, learned as the model's decision that a turn or the conversation is over.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from llmsynth.serialize.tabular import IGNORE, RowEncoder

ROLE_MARKERS = {"system": "<|system|>", "user": "<|user|>", "assistant": "<|assistant|>"}
END_OF_HEADER = "<|conversation|>"
MARKERS = [END_OF_HEADER, *ROLE_MARKERS.values()]
NEXT_ROLE = {"system": "user", "user": "assistant", "assistant": "user"}


@dataclass(frozen=True)
class ChatRecord:
    """One conversation as the model learns it: its metadata value texts (schema order) and its turns."""

    metadata: tuple[str, ...]
    turns: tuple[tuple[str, str], ...]  # (role, content)


def turn_texts(records: Sequence[ChatRecord]) -> list[str]:
    return [content for record in records for _, content in record.turns]


class ChatEncoder:
    """Token ids and labels of conversations for one tokenizer. `loss_on` is "all" (both sides are synthesized)
    or "assistant" (only the agent's turns, and the markers that end turns, are learned)."""

    def __init__(self, tokenizer, metadata_names: Sequence[str], loss_on: str = "all"):
        self.tokenizer = tokenizer
        self.end_of_header_id = tokenizer.convert_tokens_to_ids(END_OF_HEADER)
        self.header = RowEncoder(tokenizer, metadata_names, end_of_row_id=self.end_of_header_id)
        self.role_ids = {role: tokenizer.convert_tokens_to_ids(marker) for role, marker in ROLE_MARKERS.items()}
        self.end_id = tokenizer.eos_token_id
        self.pad_id = self.header.pad_id
        self.column_count = len(metadata_names)
        self.loss_on = loss_on

    def content_ids(self, text: str) -> list[int]:
        return self.tokenizer.encode(text, add_special_tokens=False)

    def encode(self, record: ChatRecord, order: Sequence[int]) -> tuple[list[int], list[int]]:
        ids, labels = self.header.encode(record.metadata, order)
        for role, content in record.turns:
            content_ids = self.content_ids(content)
            learned = self.loss_on == "all" or role == "assistant"
            ids += [self.role_ids[role], *content_ids]
            labels += [self.role_ids[role], *(content_ids if learned else [IGNORE] * len(content_ids))]
        ids.append(self.end_id)
        labels.append(self.end_id)
        return ids, labels
