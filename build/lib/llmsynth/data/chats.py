"""Conversations in and out: JSONL in the messages format, one conversation per line.

    {"messages": [{"role": "user", "content": "..."}, ...], "metadata": {"intent": "refund", ...}}

Every problem names the file and line; with `skip_bad_lines` a bad line is counted and reported instead.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path

from llmsynth.data.io import read_utf8, write_text
from llmsynth.errors import DataError

ROLES = ("system", "user", "assistant")
METADATA_TYPES = (str, int, float, bool, type(None))


@dataclass
class ChatFile:
    conversations: list[dict]
    skipped: list[str] = field(default_factory=list)  # "line N: problem", for lines left out
    lines: list[int] = field(default_factory=list)  # the line each conversation came from


def conversation_problem(record: object) -> str | None:
    """What is wrong with one conversation record, or None."""
    if not isinstance(record, dict):
        return f"expected a JSON object, found {type(record).__name__}"
    unknown = sorted(set(record) - {"messages", "metadata"})
    if unknown:
        return f"unexpected fields {unknown}; expected 'messages' and optionally 'metadata'"
    messages = record.get("messages")
    if not isinstance(messages, list):
        return "'messages' must be a list of {\"role\", \"content\"} objects"
    if not messages:
        return "the conversation has no messages"
    for number, message in enumerate(messages, start=1):
        if not isinstance(message, dict) or "role" not in message or "content" not in message:
            return f"message {number} must be an object with 'role' and 'content'"
        if message["role"] not in ROLES:
            return f"message {number}: role {message['role']!r} is not one of {list(ROLES)}"
        if not isinstance(message["content"], str):
            return f"message {number}: content must be a string, found {type(message['content']).__name__}"
    metadata = record.get("metadata", {})
    if not isinstance(metadata, dict):
        return f"'metadata' must be a flat object, found {type(metadata).__name__}"
    nested = sorted(k for k, v in metadata.items() if not isinstance(v, METADATA_TYPES))
    if nested:
        return f"metadata must be flat (strings, numbers, booleans); {nested} hold lists or objects"
    return None


def turn_problem(record: dict) -> str | None:
    """What keeps a well-formed conversation from being learned as a dialogue, or None: system turns only at the
    start, then user and assistant alternating, both present, no empty turn."""
    messages = record["messages"]
    for number, message in enumerate(messages, start=1):
        if not message["content"].strip():
            return f"message {number} is empty"
        if message["role"] == "system" and any(m["role"] != "system" for m in messages[: number - 1]):
            return f"message {number}: a system message may only open the conversation"
    turns = [(number, m["role"]) for number, m in enumerate(messages, start=1) if m["role"] != "system"]
    roles = {role for _, role in turns}
    if roles != {"user", "assistant"}:
        only = ", ".join(sorted(roles)) or "system"
        return f"the conversation has {only} messages only; it needs both user and assistant turns"
    for (number, role), (_, next_role) in zip(turns, turns[1:]):
        if role == next_role:
            return f"messages {number} and {number + 1} are both from the {role}; merge consecutive messages of one speaker"
    return None


def read_chats(path: str | os.PathLike, skip_bad_lines: bool = False, dialogues: bool = False) -> ChatFile:
    """Read a JSONL file of conversations; a bad line is a DataError, or a counted skip. With `dialogues`, each
    conversation must also alternate between user and assistant (what training needs; scrubbing takes any)."""
    path = Path(path)
    if path.suffix.lower() != ".jsonl":
        raise DataError(f"{path}: conversations are read from .jsonl files (one conversation per line)")
    if not path.is_file():
        raise DataError(f"{path}: no such file")
    chats = ChatFile([])
    for number, line in enumerate(read_utf8(path).splitlines(), start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
            problem = conversation_problem(record)
            if problem is None and dialogues:
                problem = turn_problem(record)
        except json.JSONDecodeError as exc:
            problem = f"column {exc.colno}: invalid JSON ({exc.msg})"
        if problem is None:
            chats.conversations.append({"messages": record["messages"], "metadata": record.get("metadata", {})})
            chats.lines.append(number)
        elif skip_bad_lines:
            chats.skipped.append(f"line {number}: {problem}")
        else:
            raise DataError(f"{path}: line {number}: {problem} (--skip-bad-lines leaves such lines out)")
    if not chats.conversations:
        raise DataError(f"{path}: no conversations" + (f"; all {len(chats.skipped)} lines were bad" if chats.skipped
                                                          else ""))
    return chats


def write_chats(path: str | os.PathLike, conversations: list[dict]) -> Path:
    """Write conversations as JSONL, atomically."""
    return write_text(path, "".join(json.dumps(c, ensure_ascii=False) + "\n" for c in conversations))
