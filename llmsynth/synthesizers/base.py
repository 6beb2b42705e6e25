"""What every kind of synthesizer shares: the recipe, the model (tiny preset or LoRA on a base), one `fit` from
records to trained weights, canary insertion, save and load with the manifest.

A kind (tables, conversations, ...) subclasses `Synthesizer` and fills in the hooks marked "the kind's": how its
input is read, checked and scrubbed into records, how a record is encoded, where a canary's secret goes, what it
adds to the manifest, and how it samples. `llmsynth.synthesizers` finds kinds by name.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import logging
import os
import shutil
import tempfile
from collections.abc import Iterator, Sequence
from contextlib import nullcontext
from pathlib import Path
from typing import Any

import numpy as np
import torch

from llmsynth.versions import library_versions
from llmsynth.data.canaries import CanarySet, canary_path, make_canaries, write_canaries
from llmsynth.data.io import write_text
from llmsynth.errors import ModelError
from llmsynth.model import BaseWeights, check_base, load_base, resolve_base, tiny_model, train_tokenizer, with_lora
from llmsynth.processes import process_state
from llmsynth.scrub import ScrubConfig, Scrubbed, scrub_config
from llmsynth.train.config import DEFAULT_LORA_RECIPE, Recipe, load_recipe
from llmsynth.train.loop import CHECKPOINT_DIR, TrainSummary, train_model

log = logging.getLogger(__name__)

MANIFEST = "manifest.json"
FORMAT_VERSION = 4  # 4: numbers by places (a schema's `places`), which an older llmsynth cannot read
# The oldest format each kind still reads: related tables' rows say how many rows follow them since format 2, and how
# many of their sequence's rare events are to come since format 3; a model trained before would be prompted with a
# text it never saw.
OLDEST_FORMAT = {"relational": 3}


class Synthesizer:
    """Learns records of one kind with a small causal LM and samples new ones."""

    KIND = ""
    DEFAULT_RECIPE: str | None = None  # the kind's recipe when none is named (None: the package default)
    MARKERS: Sequence[str] = ()  # special tokens a tiny tokenizer learns whole (e.g. turn markers)
    UNSCRUBBED_WARNING = "training on unscrubbed data: PII in it can be memorized and replayed"

    def __init__(self, recipe: Recipe | str | None = None, base_model: str | None = None):
        if recipe is None:
            recipe = DEFAULT_LORA_RECIPE if base_model else self.DEFAULT_RECIPE
        self.recipe = recipe if isinstance(recipe, Recipe) else load_recipe(recipe)
        self.base_model = base_model or self.recipe.base_model  # as the user named it; self.base: where it lies
        self.base: BaseWeights | None = None
        self.model = None
        self.tokenizer = None
        self.encoder = None  # built once per fitted or loaded model
        self.summary: TrainSummary | None = None
        self.data_summary: dict[str, Any] = {}
        self.scrub_summary: dict[str, Any] | None = None
        self.canaries: CanarySet | None = None  # inserted by fit(canaries=...); saved beside the directory

    # -- fit ---------------------------------------------------------------------------------------------------
    def fit(self, data: Any, workdir: str | os.PathLike | None = None, resume: bool = False,
            scrub: ScrubConfig | Scrubbed | bool = True, progress: bool = True,
            canaries: Sequence[int] = (), audit_canaries: int = 0) -> "Synthesizer":
        """Train on `data` (the kind's records, or a file of them); `workdir` keeps checkpoints so that
        `resume=True` can go on.

        The data is scrubbed first (`scrub`: True, a ScrubConfig, `Scrubbed` for data this run scrubbed already,
        or False to skip, with a warning); what the scrubber did goes into the manifest, never the raw values it
        found. `canaries` (e.g. [1, 4, 16, 64]) puts a canary record into training that many times each, after
        scrubbing (see llmsynth.data.canaries); `audit_canaries` more each go in once or not (a coin flip), for the
        DP audit's lower bound on epsilon. `progress`: progress bars for scrubbing and training.
        """
        records = self._records(self._read(data), scrub, progress)
        train_records, validation_records = self._split(records)
        self._build_model(self._tokenizer_texts(train_records), workdir, resume)
        self.encoder = self._new_encoder()
        canary_records = self._canary_records(train_records, canaries, audit_canaries)
        train_examples, validation_examples, facts = self._examples(records, canary_records, train_records,
                                                                    validation_records)
        identity = [*self._identity(records), list(canaries), *([audit_canaries] if audit_canaries else [])]
        self._train(train_examples, validation_examples, workdir, resume, identity, progress)
        self._calibrate(records, progress)
        self.data_summary = {**self._counts(records, train_records, validation_records), **facts}
        return self

    def _records(self, data: Any, scrub: ScrubConfig | Scrubbed | bool, progress: bool) -> list:
        """Scrubbed (once: data a run scrubbed already is taken as it is), then made the kind's records."""
        if isinstance(scrub, Scrubbed):
            self.scrub_summary = scrub.summary
            self._remember_surrogates(scrub.config, scrub.raw)
        elif (config := scrub_config(scrub)) is None:
            log.warning(self.UNSCRUBBED_WARNING)
            self.scrub_summary = {"skipped": True}
        else:
            data, self.scrub_summary, raw = self._scrub(data, config, progress)
            self._remember_surrogates(config, raw)
        return self._learn_records(data)

    def _read(self, data: Any) -> Any:
        """The kind's: the input read and checked (a file path, or records in memory)."""
        raise NotImplementedError

    def _scrub(self, data: Any, config: ScrubConfig, progress: bool) -> tuple[Any, dict, set]:
        """The kind's: scrubbed data, the scrub summary, and the raw values found."""
        raise NotImplementedError

    def _remember_surrogates(self, config: ScrubConfig, raw: set) -> None:
        """What the model will learn in place of the raw PII, for kinds that must leave it alone later."""

    def _learn_records(self, data: Any) -> list:
        """The kind's: its schema learned from the scrubbed data, and the data as training records."""
        raise NotImplementedError

    def _tokenizer_texts(self, records: list) -> Iterator[str]:
        """The kind's: the texts a tiny tokenizer is trained on."""
        raise NotImplementedError

    def _whole_tokens(self) -> list[str]:
        """Texts a tiny tokenizer keeps as single tokens (column names' segments)."""
        return []

    def _whole_values(self) -> list[str]:
        """Values a tiny tokenizer writes as one token each (categories, with their leading space)."""
        return []

    def _extra_token_sources(self) -> list[int]:
        """Per id the kind's encoder writes past the tiny tokenizer's, the token its embedding starts as."""
        return []

    def _new_encoder(self):
        """The kind's: the encoder of records into token ids (training) and of prompts (sampling)."""
        raise NotImplementedError

    def _examples(self, records: list, canaries: list, train: list, validation: list) -> tuple[list, list, dict]:
        """What training sees of the train records with the canaries, and of the validation records (checked to fit
        the model), and facts about them for the manifest's data summary."""
        return train + canaries, validation, {}

    def _identity(self, records: list) -> list:
        """What a resumed run must share with this one (besides the recipe and the base)."""
        return []

    def _counts(self, records: list, train: list, validation: list) -> dict[str, Any]:
        """The kind's: the data summary's counts."""
        raise NotImplementedError

    def _build_model(self, texts: Iterator[str], workdir, resume: bool) -> None:
        if self.base_model is None:
            self.tokenizer = self._tiny_tokenizer(texts, workdir, resume)
            torch.manual_seed(self.recipe.train.seed)
            self.model = tiny_model(self.recipe.tiny, self.tokenizer, self._extra_token_sources())
        else:
            self.base = resolve_base(self.base_model)
            base, self.tokenizer = load_base(self.base)
            torch.manual_seed(self.recipe.train.seed)  # the adapter's initial weights: same seed, same model
            self.model = with_lora(base, self.recipe.lora)

    def _tiny_tokenizer(self, texts, workdir, resume: bool):
        """Train the tokenizer, or reuse the one an interrupted run kept beside its checkpoint."""
        from transformers import AutoTokenizer

        kept = Path(workdir) / CHECKPOINT_DIR / "tokenizer" if workdir is not None else None
        if resume and kept is not None and kept.is_dir():
            return AutoTokenizer.from_pretrained(kept, local_files_only=True)
        tokenizer = train_tokenizer(texts, self.recipe.tiny.vocab_size, whole_tokens=self._whole_tokens(),
                                    markers=list(self.MARKERS), whole_values=self._whole_values())
        if kept is not None:
            tokenizer.save_pretrained(kept)
        return tokenizer

    def _split(self, records: list) -> tuple[list, list]:
        """Training and validation (early stopping) records, by a seeded shuffle."""
        order = np.random.default_rng(self.recipe.train.seed).permutation(len(records))
        n_validation = max(1, round(len(records) * self.recipe.train.validation_fraction))
        return [records[i] for i in order[n_validation:]], [records[i] for i in order[:n_validation]]

    def _train(self, train_examples, validation_examples, workdir, resume: bool, identity: list,
               progress: bool) -> None:
        """Train in a checkpoint folder (`workdir`, or a temporary one); `identity` is what a resumed run must
        share with this one (the stopping rules may change)."""
        train = self.recipe.train.model_dump(exclude={"epochs", "max_minutes", "patience"})
        fingerprint = hashlib.sha256(json.dumps([self.recipe.tiny.model_dump(), self.recipe.lora.model_dump(), train,
                                                 self.base_model, self.base and self.base.sha256, *identity],
                                                default=str).encode()).hexdigest()
        with tempfile.TemporaryDirectory() if workdir is None else nullcontext(workdir) as where:
            self.summary = train_model(self.model, train_examples, validation_examples, self.encoder,
                                       self.recipe.train, Path(where), resume=resume, fingerprint=fingerprint,
                                       progress=progress)
        if self.base_model is not None:  # sample from the merged weights a loaded model has (load merges too): the
            self.model.merge_adapter()  # same seed gives the same output before and after save/load, and faster

    def _calibrate(self, records: list, progress: bool) -> None:
        """The kind's: what it measures of the trained model on its records for sampling (nothing by default);
        `progress`: a progress bar."""

    # -- canaries ----------------------------------------------------------------------------------------------
    def _canary_records(self, records: list, counts: Sequence[int], audit: int) -> list:
        """Copies of canary records to add to the training records (after scrubbing and the validation split, so
        that every copy is trained on); the secrets stay in `self.canaries` for save()."""
        if not counts and not audit:
            self.canaries = None
            return []
        self.canaries = make_canaries(self.KIND, counts, seed=self.recipe.train.seed, audit=audit)
        self.canaries.template = self._canary_template(records)
        return [self._canary_record(records, number, secret) for number, secret in enumerate(self.canaries.copies)]

    def _canary_template(self, records: list) -> dict[str, Any]:
        """The kind's: where the secret goes, built from the commonest values rather than a real record (the file
        is kept beside the model)."""
        raise NotImplementedError

    def _canary_record(self, records: list, number: int, secret: str):
        """The kind's: the `number`-th training copy of a canary with `secret`."""
        raise NotImplementedError

    def canary_ids(self, canaries: CanarySet, secret: str | None) -> list[int]:
        """The kind's: token ids of a canary's record up to the end of its secret; with `secret=None`, up to its
        prefix. (With `ready_model` and `tokenizer`, what the canary test needs of a synthesizer.)"""
        raise NotImplementedError

    def canary_positions(self, canaries: CanarySet, secret: str | None) -> list[int] | None:
        """The position ids of `canary_ids`, where the model was trained with positions of its own (a table's column
        slots); None: the usual 0, 1, 2..."""
        return None

    # -- sample ------------------------------------------------------------------------------------------------
    def iter_sample(self, n: int, conditions=None, seed: int = 0, temperature: float = 1.0, top_p: float = 1.0,
                    batch_size: int | None = None, progress: bool = True, shard: tuple[int, int] = (0, 1),
                    **options: Any) -> Iterator[Any]:
        """The kind's: `n` records in batches (a DataFrame or a list of dicts each), for streaming writes; `shard`
        (i, k) keeps batches i, i + k, ... (data-parallel generation: the k shards together are the unsharded
        output); `options` are the kind's own."""
        raise NotImplementedError

    def ready_model(self):
        """The model on this process's device (its GPU under `accelerate launch`), in eval mode, for sampling."""
        self._require_fitted()
        return self.model.to(process_state().device).eval()

    def _require_fitted(self) -> None:
        if self.model is None:
            raise ModelError("the synthesizer is not trained: call fit() or load() first")

    # -- save / load -------------------------------------------------------------------------------------------
    def _manifest(self) -> dict[str, Any]:
        """The kind's: what it adds to the manifest (schema, serialization...)."""
        raise NotImplementedError

    def _restore(self, manifest: dict[str, Any]) -> None:
        """The kind's: read back what `_manifest` wrote."""
        raise NotImplementedError

    def _write_files(self, directory: Path) -> None:
        """Files this kind keeps beside the model (written before the manifest)."""

    def _restore_files(self, directory: Path) -> None:
        """Read back what `_write_files` wrote."""

    def save(self, directory: str | os.PathLike) -> Path:
        """Write the self-describing synthesizer directory; the manifest goes last, marking it complete.
        Under `accelerate launch` the main process writes and the others wait for it."""
        self._require_fitted()
        directory = Path(directory)
        processes = process_state()
        if not processes.is_main_process:
            processes.wait_for_everyone()
            return directory
        directory.mkdir(parents=True, exist_ok=True)
        (directory / MANIFEST).unlink(missing_ok=True)
        for part in ("model", "adapter", "tokenizer"):
            shutil.rmtree(directory / part, ignore_errors=True)
        if self.base_model is None:
            self.model.save_pretrained(directory / "model", safe_serialization=True)
        else:
            self.model.save_pretrained(directory / "adapter")
        self.tokenizer.save_pretrained(directory / "tokenizer")
        self._write_files(directory)
        manifest = {
            "format": "llmsynth-synthesizer",
            "format_version": FORMAT_VERSION,
            "kind": self.KIND,
            "created": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
            **self._manifest(),
            "model": {"type": "tiny" if self.base_model is None else "lora", "base_model": self.base_model,
                      "base_sha256": self.base and self.base.sha256},
            "recipe": self.recipe.model_dump(mode="json"),
            "training": self.summary.model_dump(mode="json") if self.summary else None,
            "data": self.data_summary,
            "scrub": self.scrub_summary,
            "canaries": self._canary_manifest(directory),
            "versions": library_versions(),
        }
        write_text(directory / MANIFEST, json.dumps(manifest, indent=2))
        shutil.rmtree(directory / CHECKPOINT_DIR, ignore_errors=True)
        processes.wait_for_everyone()
        return directory

    def _canary_manifest(self, directory: Path) -> dict[str, Any] | None:
        """Write the canary secrets beside the directory; the manifest says only how many went in, and where."""
        if self.canaries is None:
            return None
        path = write_canaries(self.canaries, canary_path(directory))
        counted = [c for c in self.canaries.canaries if not c.audit]
        audit = [c for c in self.canaries.canaries if c.audit]
        return {"inserted": [c.inserted for c in counted if c.inserted],
                "references": sum(not c.inserted for c in counted), "file": path.name,
                **({"audit": len(audit)} if audit else {})}

    @classmethod
    def load(cls, directory: str | os.PathLike) -> "Synthesizer":
        """A saved synthesizer of this kind (`llmsynth.synthesizers.load` reads the kind from the manifest)."""
        manifest = read_manifest(directory, cls.KIND)
        from transformers import AutoModelForCausalLM, AutoTokenizer

        directory = Path(directory)
        synth = cls(recipe=Recipe.model_validate(manifest["recipe"]), base_model=manifest["model"]["base_model"])
        synth.tokenizer = AutoTokenizer.from_pretrained(directory / "tokenizer", local_files_only=True)
        if synth.base_model is None:
            synth.model = AutoModelForCausalLM.from_pretrained(directory / "model", local_files_only=True)
        else:
            from peft import PeftModel

            synth.base = resolve_base(synth.base_model)
            check_base(synth.base, manifest["model"].get("base_sha256"))
            base, _ = load_base(synth.base)
            synth.model = PeftModel.from_pretrained(base, directory / "adapter").merge_and_unload()
        synth.summary = TrainSummary.model_validate(manifest["training"]) if manifest.get("training") else None
        synth.data_summary = manifest.get("data", {})
        synth.scrub_summary = manifest.get("scrub")
        synth._restore(manifest)
        synth._restore_files(directory)
        synth.encoder = synth._new_encoder()
        return synth


def read_manifest(directory: str | os.PathLike, kind: str | None = None) -> dict:
    """The manifest of a complete synthesizer directory (of `kind`, where given), or a ModelError saying why not."""
    path = Path(directory) / MANIFEST
    if not path.is_file():
        raise ModelError(f"{directory}: not a synthesizer directory (no {MANIFEST}); train one with `llmsynth train`")
    try:
        manifest = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise ModelError(f"{path}: corrupt manifest ({exc})") from exc
    if not isinstance(manifest, dict) or manifest.get("format") != "llmsynth-synthesizer":
        raise ModelError(f"{path}: not an llmsynth manifest")
    if manifest.get("format_version", 0) > FORMAT_VERSION:
        raise ModelError(f"{directory} was written by a newer llmsynth (format {manifest['format_version']}, this "
                         f"version reads up to {FORMAT_VERSION}); upgrade llmsynth")
    if manifest.get("format_version", 0) < OLDEST_FORMAT.get(manifest.get("kind"), 0):
        raise ModelError(f"{directory} was written by an older llmsynth (format {manifest.get('format_version', 0)}) "
                         f"whose {manifest['kind']} text this version no longer writes; train it again")
    if kind is not None and manifest.get("kind") != kind:
        raise ModelError(f"{directory} holds a {manifest.get('kind')!r} synthesizer, not a {kind!r} one")
    return manifest
