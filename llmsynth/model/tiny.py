"""The offline default: a small Llama-style model from random init and a BPE tokenizer trained on the data."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Literal

import torch
from pydantic import BaseModel, ConfigDict, Field
from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

SPECIAL_TOKENS = {"pad_token": "<pad>", "bos_token": "<bos>", "eos_token": "<eor>"}


class TinyModelConfig(BaseModel):
    """Architecture of the from-scratch model; small enough to train on a laptop CPU in minutes."""

    model_config = ConfigDict(extra="forbid")

    vocab_size: int = Field(1024, ge=300, description="Target BPE vocabulary size (the data may give fewer).")
    hidden_size: int = Field(128, description="Width of the residual stream.")
    num_layers: int = Field(4, description="Transformer blocks.")
    num_heads: int = Field(4, description="Attention heads.")
    intermediate_size: int = Field(384, description="Width of the MLP.")
    max_length: int = Field(512, description="Longest row in tokens the model can see.")
    column_slots: bool = Field(True, description="Tables: each column's tokens at the same positions whatever the "
                               "row's column order (see serialize.tabular.RowEncoder), so that one layer tells an "
                               "income's digits from a room count's.")
    joined_values: bool = Field(False, description="Tables: a category and its column's `, name is` as one token, "
                                "written without the segment ahead of it after another such column (see "
                                "serialize.tabular.RowEncoder): Adult's rows 35 tokens -> 30, sampling 1.25x the "
                                "rows/s and training 11 epochs in 78 s against 12 in 86 s at its same quality; "
                                "German credit's detection AUC 0.01 higher, its SDMetrics score 0.004 (five "
                                "trainings). On in tiny-cpu (docs/benchmarks.md, \"Joined categories\").")
    number_places: Literal["auto", "always", "never"] = Field(
        "auto", description="Tables: numbers written a character a token, padded to their widest, at most 4 decimals, "
        "each column and place with ids of its own (REaLTabFormer's number form); auto: where at least half the "
        "table's numbers are floats (see data.schema.with_number_places).")


def train_tokenizer(texts: Iterable[str], vocab_size: int, whole_tokens: Sequence[str] = (),
                    markers: Sequence[str] = (), whole_values: Sequence[str] = ()) -> PreTrainedTokenizerFast:
    """Byte-level BPE: any byte can be spelled, so the constrained sampler never reaches a dead end.

    Numbers keep BPE merges (` 579` is one token): on the demo table this learned cross-column relations
    better in the same CPU time than one token per digit (income-credit correlation 0.57 vs 0.52).
    `whole_tokens` (the column segments ` name is` and `, name is`, and a table's joined categories `, name is value`:
    see serialize.tabular.RowEncoder) become one token each: shorter rows, one sampling step per column boundary.
    `markers` (a conversation's role tokens) are special tokens: never part of a value or a turn's text.
    `whole_values` (a category with its leading space, ` Never-married`, which byte-level pre-tokenization splits at
    every hyphen) become one token each, added as single words: value content to the sampler (see `token_bytes`), and
    one step instead of three or four for both training and sampling.
    """
    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        min_frequency=2,
        special_tokens=list(SPECIAL_TOKENS.values()) + list(markers),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tokenizer.train_from_iterator(texts, trainer)
    tokenizer.add_tokens([AddedToken(text, normalized=False) for text in whole_tokens])
    tokenizer.add_tokens([AddedToken(text, normalized=False, single_word=True) for text in whole_values])
    return PreTrainedTokenizerFast(tokenizer_object=tokenizer, **SPECIAL_TOKENS,
                                   additional_special_tokens=list(markers))


def tiny_model(config: TinyModelConfig, tokenizer: PreTrainedTokenizerFast,
               extra_sources: Sequence[int] = ()) -> LlamaForCausalLM:
    """`extra_sources`: an id past the tokenizer's for each, its embedding starting as the given token's (a table's
    number places start as their characters)."""
    llama = LlamaConfig(
        vocab_size=len(tokenizer) + len(extra_sources),
        hidden_size=config.hidden_size,
        intermediate_size=config.intermediate_size,
        num_hidden_layers=config.num_layers,
        num_attention_heads=config.num_heads,
        num_key_value_heads=config.num_heads,
        max_position_embeddings=config.max_length,
        tie_word_embeddings=True,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    model = LlamaForCausalLM(llama)
    if extra_sources:
        with torch.no_grad():  # the output embeddings are the same weights
            embeddings = model.get_input_embeddings().weight
            embeddings[len(tokenizer):] = embeddings[list(extra_sources)]
    return model
