"""Generation: constrained, batched sampling of valid rows, streamed in chunks."""

from llmsynth.generate.rows import generate_rows
from llmsynth.generate.sampler import ConstrainedSampler

__all__ = ["ConstrainedSampler", "generate_rows"]
