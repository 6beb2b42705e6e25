"""Base model and tokenizer loading: the tiny offline preset or a pretrained LM with LoRA."""

from llmsynth.model.pretrained import (NAMED_BASES, BaseWeights, LoraSettings, check_base, load_base, resolve_base,
                                       with_lora)
from llmsynth.model.tiny import TinyModelConfig, tiny_model, train_tokenizer
from llmsynth.model.tokens import token_bytes

__all__ = ["NAMED_BASES", "BaseWeights", "LoraSettings", "TinyModelConfig", "check_base", "load_base", "resolve_base",
           "tiny_model", "token_bytes", "train_tokenizer", "with_lora"]
