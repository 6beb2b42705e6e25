"""PII scrubbing with Presidio, offline: the analyzer, recognizers, consistent pseudonyms, tables and chats."""

from llmsynth.errors import ScrubError
from llmsynth.scrub.chat import scrub_chats
from llmsynth.scrub.engine import ScrubConfig, build_analyzer, load_scrub_config
from llmsynth.scrub.table import scrub_table

__all__ = ["ScrubConfig", "ScrubError", "build_analyzer", "load_scrub_config", "scrub_chats", "scrub_table"]
