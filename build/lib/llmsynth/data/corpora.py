"""Real conversations we did not write, from a data package on PyPI (read from its installed folder, never
downloaded): what the benchmarks and tests measure on besides the generated demo chats.

The Chit Chat Challenge corpus (`chitchat-dataset==0.9.0`, BYU PCC lab, MIT): 7,168 open-domain conversations
between two people, median 2 turns and 240 characters, the longest 564 turns and 115,780 characters.
"""

from __future__ import annotations

import json
from importlib.metadata import PackageNotFoundError, distribution

from llmsynth.errors import DataError

CHITCHAT = "chitchat-dataset"


def chitchat_conversations() -> list[dict]:
    """The corpus in the messages format: a speaker's consecutive messages are one turn (lines joined by line
    breaks), the first speaker is the user; the conversation's ratings (1-10) and its starting prompt are metadata.
    Conversations with fewer than two turns (no reply) are left out: 6,969 remain."""
    try:
        path = distribution(CHITCHAT).locate_file("chitchat_dataset/dataset.json")
    except PackageNotFoundError as exc:
        raise DataError(f"the real chat corpus ships in {CHITCHAT}, which is not installed: "
                        f"pip install --no-deps {CHITCHAT}==0.9.0") from exc
    conversations = []
    for record in json.loads(path.read_text()).values():
        turns = [("\n".join(u["text"].strip() for u in run if u["text"].strip())) for run in record["messages"]]
        turns = [t for t in turns if t]
        if len(turns) < 2:
            continue
        messages = [{"role": "user" if n % 2 == 0 else "assistant", "content": t} for n, t in enumerate(turns)]
        conversations.append({"messages": messages, "metadata": {**record.get("ratings", {}),
                                                                 "prompt": record.get("prompt", "")}})
    return conversations
