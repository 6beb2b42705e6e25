"""Evaluation: validity by the codecs, and column-level fidelity (the full suite grows here)."""

from llmsynth.evaluate.fidelity import column_shapes, correlation
from llmsynth.evaluate.validity import valid_rows

__all__ = ["column_shapes", "correlation", "valid_rows"]
