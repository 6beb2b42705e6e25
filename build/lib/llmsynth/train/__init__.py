"""Training: recipes and the Accelerate training loop with checkpoints and early stopping."""

from llmsynth.train.config import Recipe, TrainConfig, load_recipe
from llmsynth.train.loop import TrainSummary, train_model

__all__ = ["Recipe", "TrainConfig", "TrainSummary", "load_recipe", "train_model"]
