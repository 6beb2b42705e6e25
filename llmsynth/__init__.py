"""llmsynth: privacy-safe synthetic tables and conversations from a small causal language model."""

from llmsynth.errors import LlmsynthError

__version__ = "0.1.0"
__all__ = ["ChatSynthesizer", "LlmsynthError", "TabularSynthesizer", "__version__", "load", "new_synthesizer"]


def __getattr__(name: str):
    # Imported on first use so that `llmsynth --help` does not pay for torch and transformers.
    if name in ("ChatSynthesizer", "TabularSynthesizer", "load", "new_synthesizer"):
        from llmsynth import synthesizers

        return getattr(synthesizers, name)
    raise AttributeError(f"module 'llmsynth' has no attribute {name!r}")
