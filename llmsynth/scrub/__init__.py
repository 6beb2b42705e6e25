"""PII scrubbing with Presidio, offline: the analyzer, consistent pseudonyms, tables."""

from llmsynth.errors import ScrubError
from llmsynth.scrub.engine import ScrubConfig, build_analyzer
from llmsynth.scrub.table import scrub_table

__all__ = ["ScrubConfig", "ScrubError", "build_analyzer", "scrub_table"]
