"""PII scrubbing with Presidio, offline: the analyzer, recognizers, consistent pseudonyms, tables and chats."""

from collections.abc import Iterable
from pathlib import Path

from llmsynth.data.io import write_text
from llmsynth.errors import ScrubError
from llmsynth.scrub.chat import scrub_chats
from llmsynth.scrub.engine import ScrubConfig, Scrubbed, build_analyzer, load_scrub_config, scrub_config
from llmsynth.scrub.table import scrub_table

__all__ = ["ScrubConfig", "ScrubError", "Scrubbed", "build_analyzer", "load_scrub_config", "scrub_chats",
           "scrub_config", "scrub_table", "write_raw_pii"]


def write_raw_pii(path: str | Path, raw: Iterable[tuple[str, str]]) -> None:
    """The raw values a scrub found, one JSON object per line, for the user to keep private: the evaluation
    looks for them in synthetic output (PII replay)."""
    import json

    write_text(path, "".join(json.dumps({"entity": e, "value": v}) + "\n" for e, v in sorted(raw)))
