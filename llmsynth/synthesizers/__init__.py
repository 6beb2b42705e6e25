"""The kinds of synthesizer, found by name: `new_synthesizer(kind)` for a fresh one, `load(directory)` for a saved
one (the manifest says its kind). A new kind subclasses `Synthesizer` (base.py) and is added to `KINDS`."""

from __future__ import annotations

import os
from typing import Any

from llmsynth.errors import ModelError
from llmsynth.synthesizers.base import MANIFEST, Synthesizer, read_manifest
from llmsynth.synthesizers.chat import ChatSynthesizer, copy_summary
from llmsynth.synthesizers.relational import RelationalSynthesizer
from llmsynth.synthesizers.tabular import TabularSynthesizer
from llmsynth.train.config import load_recipe

KINDS: dict[str, type[Synthesizer]] = {kind.KIND: kind for kind in (TabularSynthesizer, ChatSynthesizer,
                                                                    RelationalSynthesizer)}

__all__ = ["KINDS", "MANIFEST", "ChatSynthesizer", "RelationalSynthesizer", "Synthesizer", "TabularSynthesizer",
           "copy_summary", "load", "new_synthesizer", "read_manifest"]


def new_synthesizer(kind: str, recipe: str | None = None, base_model: str | None = None,
                    options: dict[str, Any] | None = None, **train_overrides: Any) -> Synthesizer:
    """An untrained synthesizer of `kind` from a recipe name or file (default by kind and base), with the recipe's
    training settings overridden where a value is given (epochs, max_minutes, seed...); `options` are the kind's
    own (column_kinds for tables, loss_on for conversations)."""
    try:
        cls = KINDS[kind]
    except KeyError:
        raise ModelError(f"no synthesizer kind {kind!r}; the kinds are {', '.join(KINDS)}") from None
    synth = cls(load_recipe(recipe) if recipe else None, base_model=base_model, **(options or {}))
    overrides = {k: v for k, v in train_overrides.items() if v is not None}
    synth.recipe = synth.recipe.model_copy(update={"train": synth.recipe.train.model_copy(update=overrides)})
    return synth


def load(directory: str | os.PathLike) -> Synthesizer:
    """The saved synthesizer in `directory`, of whatever kind its manifest names."""
    kind = read_manifest(directory).get("kind")
    if kind not in KINDS:
        raise ModelError(f"{directory} holds a {kind!r} synthesizer, which this version of llmsynth does not know "
                         f"(it knows {', '.join(KINDS)})")
    return KINDS[kind].load(directory)
