"""Pretrained causal LMs from a local path or the local Hugging Face cache, wrapped with LoRA."""

from __future__ import annotations

from pathlib import Path

import torch
from pydantic import BaseModel, ConfigDict, Field

from llmsynth.errors import ModelError


class LoraSettings(BaseModel):
    """LoRA adapter for a pretrained base (peft's LoraConfig, named the same)."""

    model_config = ConfigDict(extra="forbid")

    r: int = Field(16, description="Adapter rank.")
    lora_alpha: int = Field(32, description="Scaling numerator (alpha / r).")
    lora_dropout: float = Field(0.05, description="Dropout on the adapter input.")
    target_modules: list[str] | str = Field("all-linear", description="Modules to adapt.")


def load_base(base_model: str, dtype: torch.dtype | None = None):
    """Model and tokenizer of a base; never downloads (a hub id must already be in the local cache)."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    try:
        tokenizer = AutoTokenizer.from_pretrained(base_model, local_files_only=True)
        model = AutoModelForCausalLM.from_pretrained(base_model, local_files_only=True, dtype=dtype)
    except (OSError, ValueError) as exc:
        hint = "" if Path(base_model).exists() else (
            "; it is neither a local folder nor in the local Hugging Face cache (llmsynth never downloads: "
            "fetch it with `hf download` first)"
        )
        raise ModelError(f"cannot load base model {base_model!r}{hint} ({exc})") from exc
    return model, tokenizer


def with_lora(model, settings: LoraSettings):
    from peft import LoraConfig, get_peft_model

    config = LoraConfig(task_type="CAUSAL_LM", **settings.model_dump())
    return get_peft_model(model, config)
