"""Training hyper-parameters and recipes (a recipe is this config, plus the model's, saved as YAML)."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from llmsynth.errors import TrainError
from llmsynth.model import LoraSettings, TinyModelConfig

RECIPE_DIR = Path(__file__).resolve().parents[1] / "recipes"  # package data: found in a wheel install too
DEFAULT_RECIPE = "tiny-cpu"
# With a pretrained base and no recipe named: the tiny presets' learning rates (2e-3, 3e-3) wreck a pretrained model
# under LoRA (SmolLM2's validation loss rose from 2.8 to 4.0 in one epoch), so bases get a LoRA recipe's settings.
DEFAULT_LORA_RECIPE = "smollm2-135m-lora"


class TrainConfig(BaseModel):
    """How long and how fast to train; defaults are the `tiny-cpu` recipe's but for `anneal_below`,
    `full_schedule_steps`, `schema_order_share`, `prompt_share` and `weight_average_epochs`, which each recipe sets for
    itself."""

    model_config = ConfigDict(extra="forbid")

    epochs: int = Field(40, ge=1, description="Upper bound on passes over the training rows.")
    batch_size: int = Field(64, ge=1, description="Rows per optimizer step (global, over all processes).")
    learning_rate: float = Field(2e-3, gt=0, description="Peak AdamW learning rate.")
    weight_decay: float = Field(0.01, ge=0)
    warmup_ratio: float = Field(0.03, ge=0, le=0.5, description="Share of steps with linear warm-up.")
    column_order: Literal["conditional", "random", "schema"] = Field(
        "conditional", description="Column order of training examples: 'random' shuffles every example (GReaT); "
        "'schema' keeps the table's order (learns fastest, conditions only well on leading columns); "
        "'conditional' mixes the two so that any conditioned subset can be written first.")
    schema_order_share: float = Field(0.5, ge=0, le=1, description="'conditional' order: the share of examples in "
                                      "the table's order (what unconditioned sampling writes); the rest move a "
                                      "random subset of columns to the front, as conditioned sampling does.")
    prompt_share: float = Field(0.0, ge=0, le=1, description="'conditional' order: the share of the examples that "
                                "move columns which repeat them (up to half the columns) as a prompt ahead of the "
                                "whole row in the table's order instead; with any, sampling writes conditions so. A "
                                "one-layer model learns from these what a condition implies for the columns before "
                                "it, which it misses from moved columns alone; moved columns keep a small table from "
                                "being copied. Validation leaves out the prompt's values where the row repeats them.")
    max_grad_norm: float = Field(1.0, gt=0, description="Gradient clipping threshold.")
    validation_fraction: float = Field(0.1, ge=0.01, le=0.5, description="Rows held out for early stopping.")
    evals_per_epoch: int = Field(1, ge=1, description="Validation passes (and checkpoints) per epoch.")
    patience: int = Field(5, ge=1, description="Validation passes without improvement before stopping.")
    anneal_below: float | None = Field(None, gt=0, lt=1, description="Once the best validation loss improves by less "
                                       "than this share per 100 steps (judged over 100 steps or more), the learning "
                                       "rate decays to a tenth over `anneal_epochs` more and training ends: a run "
                                       "stops soon after it levels off, with what a decayed learning rate adds. "
                                       "None: the schedule spans `epochs` (or the time budget) and only `patience` "
                                       "stops early.")
    anneal_epochs: float = Field(2.0, gt=0, description="Length of that last decay, in epochs.")
    full_schedule_steps: int | None = Field(None, ge=1, description="A run whose whole schedule (`epochs` of steps) "
                                            "is at most this many steps runs it to the end, the learning rate's "
                                            "decay included, and keeps its last weights; patience and "
                                            "`anneal_below` are off for it. A small table's validation loss is a "
                                            "few rows' noisy figure, and patience ended such runs before any decay.")
    keep: Literal["best", "last"] = Field("best", description="The weights training ends with: 'best', those of the "
                                          "lowest validation loss; 'last', those at the end of the learning rate's "
                                          "decay (the best where patience ends the run): a rare pattern is still "
                                          "learned in the decay while the validation loss, made of common tokens, "
                                          "may rise a little.")
    weight_average_epochs: float | None = Field(None, gt=0, description="Keep a running (exponential) average of "
                                                "the weights over about this many epochs' last steps; validation, "
                                                "the best weights and the weights kept are the average's. A small "
                                                "model's last weights carry its last steps' noise, which shows in "
                                                "the shares of the values it writes. None: no average.")
    max_minutes: float | None = Field(None, gt=0, description="Wall-clock budget; stops at the next validation past it.")
    packing: bool = Field(False, description="Lay short records end to end in rows of `pack_length` tokens (no "
                          "attention across records) instead of padding each one: fewer wasted tokens per step.")
    pack_length: int = Field(1024, ge=16, description="Longest packed row in tokens.")
    max_batch_tokens: int | None = Field(None, ge=16, description="Run a step's batch through the model in pieces of "
                                         "at most this many tokens (same step, gradients accumulated): bounds memory "
                                         "where a big vocabulary meets long records (a 49k-token base takes ~4 MB of "
                                         "CPU memory per token in training). None: the whole batch at once.")
    context_tokens: int | None = Field(None, ge=32, description="Conversations: the longest training sequence; "
                                       "longer conversations are learned as windows of whole turns, each with the "
                                       "metadata header. Default: the 99th percentile of the conversations' token "
                                       "lengths, capped by the model's own limit.")
    precision: Literal["auto", "bf16", "fp32"] = Field("auto", description="auto: bf16 where the hardware computes it "
                                                                 "natively (a GPU, or a CPU with AVX512-BF16 or AMX "
                                                                 "for models of 20M+ parameters), else fp32.")
    seed: int = 0
    dp_epsilon: float | None = Field(None, gt=0, description="Differentially private training (DP-SGD, Opacus) to "
                                     "this epsilon over `epochs`; off when not set.")
    dp_delta: float | None = Field(None, gt=0, lt=1, description="DP delta; default 1 / records^1.2.")
    dp_max_grad_norm: float = Field(1.0, gt=0, description="DP: each record's gradient is clipped to this norm.")

    @property
    def sampling_order(self) -> str:
        """How conditioned rows are written (`generate.sampler.row_orders`): as this training taught conditions."""
        return "prompt" if self.column_order == "conditional" and self.prompt_share else self.column_order


class Recipe(BaseModel):
    """A named training set-up: the tiny architecture or LoRA settings, and the training loop's config."""

    model_config = ConfigDict(extra="forbid")

    base_model: str | None = Field(None, description="Pretrained base to fine-tune with LoRA (a named base such as "
                                   "smollm2-135m-instruct, a .gguf file or a model folder); none: the tiny preset.")
    tiny: TinyModelConfig = TinyModelConfig()
    lora: LoraSettings = LoraSettings()
    train: TrainConfig = TrainConfig()


def load_recipe(name_or_path: str | None) -> Recipe:
    """A recipe by name (a file in llmsynth/recipes/) or by path to a YAML file."""
    if name_or_path is None:
        name_or_path = DEFAULT_RECIPE
    named, path = RECIPE_DIR / f"{name_or_path}.yaml", Path(name_or_path)
    if named.is_file():  # a name first: "qwen2.5-0.5b-lora" has a dot but is no file name
        path = named
    elif path.suffix.lower() not in (".yaml", ".yml") and not path.exists():
        if name_or_path == DEFAULT_RECIPE:
            return Recipe()
        known = sorted(p.stem for p in RECIPE_DIR.glob("*.yaml"))
        raise TrainError(f"unknown recipe {name_or_path!r}; known recipes: {known}, or give a YAML file path")
    if not path.is_file():
        raise TrainError(f"{path}: recipe file not found")
    try:
        return Recipe.model_validate(yaml.safe_load(path.read_text()) or {})
    except (yaml.YAMLError, ValidationError) as exc:
        raise TrainError(f"{path}: invalid recipe: {exc}") from exc
