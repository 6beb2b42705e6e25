"""`TabularSynthesizer`: fit / sample / save / load, delegating to the stage packages."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import logging
import os
import shutil
import tempfile
from collections import Counter
from contextlib import nullcontext
from collections.abc import Iterator, Mapping, Sequence
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import torch

from llmsynth.data.io import check_table, read_table, write_text
from llmsynth.data.schema import Schema, infer_schema
from llmsynth.errors import DataError, ModelError
from llmsynth.generate.rows import generate_rows
from llmsynth.generate.sampler import ConstrainedSampler
from llmsynth.model import BaseWeights, check_base, load_base, resolve_base, tiny_model, train_tokenizer, with_lora
from llmsynth.processes import process_state
from llmsynth.serialize.codecs import CategoricalColumn, TextColumn
from llmsynth.serialize.tabular import RowEncoder, row_text, segment_texts, value_texts
from llmsynth.train.config import DEFAULT_LORA_RECIPE, Recipe, load_recipe
from llmsynth.train.loop import CHECKPOINT_DIR, TrainSummary, train_model

if TYPE_CHECKING:
    from llmsynth.evaluate.canary import CanarySet
    from llmsynth.scrub import ScrubConfig

log = logging.getLogger(__name__)

MANIFEST = "manifest.json"
FORMAT_VERSION = 1


def _versions() -> dict[str, str]:
    found = {}
    for package in ("llmsynth", "torch", "transformers", "tokenizers", "peft", "accelerate"):
        try:
            found[package] = version(package)
        except PackageNotFoundError:
            pass
    return found


class Synthesizer:
    """What every synthesizer shares: the model (tiny preset or LoRA on a base), training, save and load.
    Subclasses say what a record is and how it is sampled."""

    KIND = ""

    def __init__(self, recipe: Recipe | str | None = None, base_model: str | None = None):
        if recipe is None and base_model:
            recipe = DEFAULT_LORA_RECIPE
        self.recipe = recipe if isinstance(recipe, Recipe) else load_recipe(recipe)
        self.base_model = base_model or self.recipe.base_model  # as the user named it; self.base: where it lies
        self.base: BaseWeights | None = None
        self.model = None
        self.tokenizer = None
        self.summary: TrainSummary | None = None
        self.data_summary: dict[str, Any] = {}
        self.scrub_summary: dict[str, Any] | None = None
        self.canaries: CanarySet | None = None  # inserted by fit(canaries=...); saved beside the directory

    def _build_model(self, texts: Iterator[str], whole_tokens: list[str], workdir, resume: bool,
                     markers: list[str] = ()) -> None:
        if self.base_model is None:
            self.tokenizer = self._tiny_tokenizer(texts, whole_tokens, markers, workdir, resume)
            torch.manual_seed(self.recipe.train.seed)
            self.model = tiny_model(self.recipe.tiny, self.tokenizer)
        else:
            self.base = resolve_base(self.base_model)
            base, self.tokenizer = load_base(self.base)
            torch.manual_seed(self.recipe.train.seed)  # the adapter's initial weights: same seed, same model
            self.model = with_lora(base, self.recipe.lora)

    def _tiny_tokenizer(self, texts, whole_tokens, markers, workdir, resume: bool):
        """Train the tokenizer, or reuse the one an interrupted run kept beside its checkpoint."""
        from transformers import AutoTokenizer

        kept = Path(workdir) / CHECKPOINT_DIR / "tokenizer" if workdir is not None else None
        if resume and kept is not None and kept.is_dir():
            return AutoTokenizer.from_pretrained(kept, local_files_only=True)
        tokenizer = train_tokenizer(texts, self.recipe.tiny.vocab_size, whole_tokens=whole_tokens, markers=markers)
        if kept is not None:
            tokenizer.save_pretrained(kept)
        return tokenizer

    def _scrub_config(self, scrub: ScrubConfig | bool, warning: str) -> ScrubConfig | None:
        """The scrub config a fit asked for (True: the default one), or None, with `warning` logged and said in the
        manifest, when scrubbing is skipped."""
        if scrub is False:
            log.warning(warning)
            self.scrub_summary = {"skipped": True}
            return None
        from llmsynth.scrub import ScrubConfig  # Presidio loads only when scrubbing

        return scrub if isinstance(scrub, ScrubConfig) else ScrubConfig()

    def _split(self, records: list) -> tuple[list, list]:
        """Training and validation (early stopping) records, by a seeded shuffle."""
        order = np.random.default_rng(self.recipe.train.seed).permutation(len(records))
        n_validation = max(1, round(len(records) * self.recipe.train.validation_fraction))
        return [records[i] for i in order[n_validation:]], [records[i] for i in order[:n_validation]]

    def _canary_records(self, records: list, counts: Sequence[int]) -> list:
        """Copies of canary records to add to the training records (after scrubbing and the validation split, so
        that every copy is trained on); the secrets stay in `self.canaries` for save()."""
        if not counts:
            self.canaries = None
            return []
        from llmsynth.evaluate.canary import make_canaries

        self.canaries = make_canaries(self.KIND, counts, seed=self.recipe.train.seed)
        self.canaries.template = self._canary_template(records)
        return [self._canary_record(records, number, secret) for number, secret in enumerate(self.canaries.copies)]

    def _canary_template(self, records: list) -> dict[str, Any]:
        """Where the secret goes, built from the commonest values rather than a real record (the file is kept
        beside the model)."""
        raise NotImplementedError

    def _canary_record(self, records: list, number: int, secret: str):
        """The `number`-th training copy of a canary with `secret`."""
        raise NotImplementedError

    def canary_ids(self, canaries: CanarySet, secret: str | None) -> list[int]:
        """Token ids of a canary's record up to the end of its secret; with `secret=None`, up to its prefix."""
        raise NotImplementedError

    def _train(self, train_records, validation_records, encoder, workdir, resume: bool, identity: list) -> None:
        """Train in a checkpoint folder (`workdir`, or a temporary one); `identity` is what a resumed run must
        share with this one (the stopping rules may change)."""
        train = self.recipe.train.model_dump(exclude={"epochs", "max_minutes", "patience"})
        fingerprint = hashlib.sha256(json.dumps([self.recipe.tiny.model_dump(), self.recipe.lora.model_dump(), train,
                                                 self.base_model, self.base and self.base.sha256, *identity],
                                                default=str).encode()).hexdigest()
        with tempfile.TemporaryDirectory() if workdir is None else nullcontext(workdir) as where:
            self.summary = train_model(self.model, train_records, validation_records, encoder, self.recipe.train,
                                       Path(where), resume=resume, fingerprint=fingerprint)
        if self.base_model is not None:  # sample from the merged weights a loaded model has (load merges too): the
            self.model.merge_adapter()  # same seed gives the same output before and after save/load, and faster

    def _require_fitted(self) -> None:
        if self.model is None:
            raise ModelError("the synthesizer is not trained: call fit() or load() first")

    def _manifest(self) -> dict[str, Any]:
        """What this kind adds to the manifest (schema, serialization...)."""
        raise NotImplementedError

    def _restore(self, manifest: dict[str, Any]) -> None:
        """Read back what `_manifest` wrote."""
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
            "versions": _versions(),
        }
        write_text(directory / MANIFEST, json.dumps(manifest, indent=2))
        shutil.rmtree(directory / CHECKPOINT_DIR, ignore_errors=True)
        processes.wait_for_everyone()
        return directory

    def _canary_manifest(self, directory: Path) -> dict[str, Any] | None:
        """Write the canary secrets beside the directory; the manifest says only how many went in, and where."""
        if self.canaries is None:
            return None
        from llmsynth.evaluate.canary import canary_path, write_canaries

        path = write_canaries(self.canaries, canary_path(directory))
        return {"inserted": [c.inserted for c in self.canaries.inserted], "references": len(self.canaries.canaries)
                - len(self.canaries.inserted), "file": path.name}

    @classmethod
    def load(cls, directory: str | os.PathLike):
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
        return synth

    def _ready_model(self):
        """The model on this process's device (its GPU under `accelerate launch`), in eval mode, for sampling."""
        return self.model.to(process_state().device).eval()


class TabularSynthesizer(Synthesizer):
    """Learns a table's rows with a small causal LM and samples new, always-valid rows.

    >>> synth = TabularSynthesizer().fit(table)              # tiny offline preset
    >>> synth.sample(1000, conditions={"is_fraud": 1})
    """

    KIND = "tabular"

    def __init__(self, recipe: Recipe | str | None = None, base_model: str | None = None,
                 column_kinds: Mapping[str, str] | None = None):
        super().__init__(recipe, base_model)
        self.column_kinds = dict(column_kinds or {})
        self.schema: Schema | None = None
        self._sampler: ConstrainedSampler | None = None

    # -- fit ---------------------------------------------------------------------------------------------------
    def fit(self, data: pd.DataFrame | str | os.PathLike, workdir: str | os.PathLike | None = None,
            resume: bool = False, scrub: ScrubConfig | bool = True, progress: bool = True,
            canaries: Sequence[int] = ()) -> "TabularSynthesizer":
        """Train on a DataFrame or a table file; `workdir` keeps checkpoints so that `resume=True` can go on.

        The table is scrubbed first (`scrub`: True, a ScrubConfig, or False to skip, with a warning); what the
        scrubber did goes into the manifest, never the raw values it found. `canaries` (e.g. [1, 4, 16, 64]) puts a
        canary row into training that many times each, after scrubbing (see llmsynth.evaluate.canary).
        """
        source = "the DataFrame" if isinstance(data, pd.DataFrame) else str(data)
        table = data if isinstance(data, pd.DataFrame) else read_table(data)
        check_table(table, source)
        table = table.rename(columns=str)
        config = self._scrub_config(scrub, "training on unscrubbed data: PII in free-text columns can be memorized "
                                           "and replayed")
        if config is not None:
            from llmsynth.scrub import scrub_table

            table, self.scrub_summary, _ = scrub_table(table, config, self.column_kinds, progress=progress)
        try:
            self.schema = infer_schema(table, self.column_kinds)
        except DataError as exc:
            raise DataError(f"{source}: {exc}") from exc
        learned = self.schema.learned
        rows = value_texts(table, learned)
        train_rows, validation_rows = self._split(rows)

        names = [c.name for c in learned]
        self._build_model((row_text(names, r) for r in train_rows),
                          [text for name in names for text in segment_texts(name)], workdir, resume)
        encoder = RowEncoder(self.tokenizer, names)
        canary_rows = self._canary_records(train_rows, canaries)
        longest = max(len(encoder.encode(r, range(len(names)))[0]) for r in rows + canary_rows)
        if self.base_model is None and longest > self.recipe.tiny.max_length:
            raise DataError(f"a row takes {longest} tokens, more than the model's max_length "
                            f"{self.recipe.tiny.max_length}; raise tiny.max_length in the recipe")
        self._train(train_rows + canary_rows, validation_rows, encoder, workdir, resume,
                    [self.schema.model_dump(mode="json"), rows[:1000], len(rows), list(canaries)])
        self.data_summary = {"rows": len(rows), "train_rows": len(train_rows), "validation_rows": len(validation_rows),
                             "columns": len(self.schema.columns), "learned_columns": len(learned),
                             "longest_row_tokens": longest}
        self._sampler = None
        return self

    # -- sample ------------------------------------------------------------------------------------------------
    def iter_sample(self, n: int, conditions: Mapping[str, Any] | None = None, seed: int = 0,
                    temperature: float = 1.0, top_p: float = 1.0, batch_size: int = 256,
                    progress: bool = True, shard: tuple[int, int] = (0, 1)) -> Iterator[pd.DataFrame]:
        """Rows in chunks of `batch_size`, for streaming writes; `shard` (i, k) keeps batches i, i + k, ... (for
        data-parallel generation: the k shards together are the unsharded output)."""
        self._require_fitted()
        return generate_rows(self._get_sampler(), self.schema, n, conditions, seed, batch_size, temperature, top_p,
                             progress, self.recipe.train.column_order, shard)

    def sample(self, n: int, conditions: Mapping[str, Any] | None = None, seed: int = 0, temperature: float = 1.0,
               top_p: float = 1.0, batch_size: int = 256, progress: bool = False) -> pd.DataFrame:
        """`n` valid rows; `conditions` fixes columns (e.g. {"is_fraud": 1}) and the rest follow from them."""
        chunks = list(self.iter_sample(n, conditions, seed, temperature, top_p, batch_size, progress))
        return pd.concat(chunks, ignore_index=True)

    def _get_sampler(self) -> ConstrainedSampler:
        if self._sampler is None:
            self._ready_model()
            encoder = RowEncoder(self.tokenizer, [c.name for c in self.schema.learned])
            self._sampler = ConstrainedSampler(self.model, encoder, self.schema.learned)
        return self._sampler

    # -- canaries ----------------------------------------------------------------------------------------------
    def _canary_template(self, records: list) -> dict[str, Any]:
        """The canary row: each column's commonest value, the secret in the first free-text column, else in the
        categorical column with the most categories."""
        learned = self.schema.learned
        text = [i for i, c in enumerate(learned) if isinstance(c, TextColumn)]
        categorical = sorted((len(c.categories), i) for i, c in enumerate(learned) if isinstance(c, CategoricalColumn))
        if not text and not categorical:
            raise DataError("canaries need a free-text or categorical column to carry the secret; this table has "
                            "only numbers and dates")
        column = text[0] if text else categorical[-1][1]
        values = [Counter(row[j] for row in records).most_common(1)[0][0] for j in range(len(learned))]
        return {"values": values, "column": column, "free_text": bool(text)}

    def _canary_values(self, canaries: CanarySet, secret: str | None) -> list[str]:
        template = canaries.template
        values = list(template["values"])
        prefix = canaries.prefix if template["free_text"] else ""
        values[template["column"]] = " ".join(part for part in (prefix, secret) if part)
        return values

    def _canary_record(self, records: list, number: int, secret: str) -> list[str]:
        return self._canary_values(self.canaries, secret)

    def canary_ids(self, canaries: CanarySet, secret: str | None) -> list[int]:
        column = canaries.template["column"]
        order = [i for i in range(len(self.schema.learned)) if i != column] + [column]
        encoder = RowEncoder(self.tokenizer, [c.name for c in self.schema.learned])
        return encoder.encode(self._canary_values(canaries, secret), order)[0][:-1]

    def _manifest(self) -> dict[str, Any]:
        return {"schema": self.schema.model_dump(mode="json"),
                "serialization": {"style": "great", "field": " {name} is {value}", "separator": ",",
                                  "column_order": self.recipe.train.column_order, "null": "empty value",
                                  "end_of_row": self.tokenizer.eos_token}}

    def _restore(self, manifest: dict[str, Any]) -> None:
        self.schema = Schema.model_validate(manifest["schema"])


def new_synthesizer(kind: str, recipe: str | None = None, base_model: str | None = None,
                    column_kinds: dict[str, str] | None = None, loss_on: str = "all",
                    **train_overrides: Any) -> Synthesizer:
    """An untrained synthesizer of `kind` ('tabular' or 'chat') from a recipe name or file (default by kind), with
    the recipe's training settings overridden where a value is given (epochs, max_minutes, seed...)."""
    from llmsynth.chat_synthesizer import DEFAULT_CHAT_RECIPE, ChatSynthesizer

    config = load_recipe(recipe or (DEFAULT_LORA_RECIPE if base_model else DEFAULT_CHAT_RECIPE if kind == "chat"
                                    else None))
    overrides = {k: v for k, v in train_overrides.items() if v is not None}
    config = config.model_copy(update={"train": config.train.model_copy(update=overrides)})
    if kind == "chat":
        return ChatSynthesizer(config, base_model=base_model, loss_on=loss_on)
    return TabularSynthesizer(config, base_model=base_model, column_kinds=column_kinds)


def read_manifest(directory: str | os.PathLike, kind: str) -> dict:
    """The manifest of a complete synthesizer directory of the given kind, or a ModelError saying why not."""
    path = Path(directory) / MANIFEST
    if not path.is_file():
        raise ModelError(f"{directory}: not a synthesizer directory (no {MANIFEST}); train one with `llmsynth train`")
    try:
        manifest = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise ModelError(f"{path}: corrupt manifest ({exc})") from exc
    if manifest.get("format") != "llmsynth-synthesizer":
        raise ModelError(f"{path}: not an llmsynth manifest")
    if manifest.get("format_version", 0) > FORMAT_VERSION:
        raise ModelError(f"{directory} was written by a newer llmsynth (format {manifest['format_version']}, this "
                         f"version reads up to {FORMAT_VERSION}); upgrade llmsynth")
    if manifest.get("kind") != kind:
        raise ModelError(f"{directory} holds a {manifest.get('kind')!r} synthesizer, not a {kind!r} one")
    return manifest
