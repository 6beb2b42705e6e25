"""Tables: a row is a GReaT-style text (" age is 42, city is Lyon"), sampled value by value under constraints."""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import pandas as pd

from llmsynth.data.canaries import CanarySet
from llmsynth.data.io import check_table, read_table
from llmsynth.data.schema import Schema, infer_schema, with_number_places
from llmsynth.errors import DataError, GenerateError, TrainError
from llmsynth.generate.calibration import category_offsets
from llmsynth.generate.fair import fair_rows
from llmsynth.generate.rows import generate_rows
from llmsynth.generate.sampler import ConstrainedSampler
from llmsynth.scrub import ScrubConfig, scrub_table
from llmsynth.serialize.codecs import CategoricalColumn, TextColumn
from llmsynth.serialize.tabular import (RowEncoder, joined_token, joined_values, row_text, segment_texts, value_texts,
                                        whole_values)
from llmsynth.synthesizers.base import Synthesizer
from llmsynth.train.config import Recipe


class TabularSynthesizer(Synthesizer):
    """Learns a table's rows with a small causal LM and samples new, always-valid rows.

    >>> synth = TabularSynthesizer().fit(table)              # tiny offline preset
    >>> synth.sample(1000, conditions={"is_fraud": 1})
    """

    KIND = "tabular"
    UNSCRUBBED_WARNING = "training on unscrubbed data: PII in free-text columns can be memorized and replayed"

    def __init__(self, recipe: Recipe | str | None = None, base_model: str | None = None,
                 column_kinds: Mapping[str, str] | None = None):
        super().__init__(recipe, base_model)
        self.column_kinds = dict(column_kinds or {})
        self.schema: Schema | None = None
        self._source = "the DataFrame"
        self._sampler: ConstrainedSampler | None = None
        self._slots: list[int] | None = None  # the column slots of a loaded model (see RowEncoder)
        self.first_token_bias: dict[int, dict[int, float]] = {}  # per categorical column (generate.calibration)

    # -- fit: a DataFrame or a table file (CSV, Parquet, JSONL) -------------------------------------------------
    def _read(self, data: pd.DataFrame | str | os.PathLike) -> pd.DataFrame:
        self._source = "the DataFrame" if isinstance(data, pd.DataFrame) else str(data)
        table = data if isinstance(data, pd.DataFrame) else read_table(data)
        check_table(table, self._source)
        return table.rename(columns=str)

    def _scrub(self, table: pd.DataFrame, config: ScrubConfig, progress: bool) -> tuple[pd.DataFrame, dict, set]:
        return scrub_table(table, config, self.column_kinds, progress=progress)

    def _learn_records(self, table: pd.DataFrame) -> list[list[str]]:
        try:
            self.schema = infer_schema(table, self.column_kinds)
        except DataError as exc:
            raise DataError(f"{self._source}: {exc}") from exc
        if self.base_model is None:  # a pretrained base reads numbers in its own tokens
            self.schema = with_number_places(self.schema, self.recipe.tiny.number_places)
        self._sampler = None
        self._slots = None
        self.first_token_bias = {}
        return value_texts(table, self.schema.learned)

    def _names(self) -> list[str]:
        return [c.name for c in self.schema.learned]

    def _tokenizer_texts(self, records: list[list[str]]) -> Iterator[str]:
        """The rows without the values written by places, which take no tokenizer's ids."""
        names, by_places = self._names(), [column.place_count > 0 for column in self.schema.learned]
        return (row_text(names, ["" if places else value for value, places in zip(r, by_places)]) for r in records)

    def _whole_tokens(self) -> list[str]:
        segments = [text for name in self._names() for text in segment_texts(name)]
        return segments + [joined_token(name, text) for name, texts in zip(self._names(), self._joined())
                           for text in texts]

    def _whole_values(self) -> list[str]:
        return [] if self.recipe.tiny.joined_values else whole_values(self.schema.learned)

    def _joined(self) -> list[list[str]]:
        if self.base_model is not None or not self.recipe.tiny.joined_values:  # a base's tokenizer has no such tokens
            return [[] for _ in self.schema.learned]
        return joined_values(self.schema.learned)

    def _new_encoder(self) -> RowEncoder:
        return RowEncoder(self.tokenizer, self._names(), slots=self._slots,
                          places=[column.place_count for column in self.schema.learned], joined=self._joined())

    def _extra_token_sources(self) -> list[int]:
        return self._new_encoder().place_sources()

    def _examples(self, records: list, canaries: list, train: list, validation: list) -> tuple[list, list, dict]:
        if self.base_model is None and self.recipe.tiny.column_slots:  # a pretrained base keeps its own positions
            if self.recipe.train.packing:
                raise TrainError("packing reads where position ids restart as where records begin, and column slots "
                                 "give a row's tokens positions of their own: set train.packing or "
                                 "tiny.column_slots to false in the recipe")
            self._slots = self.encoder.lay_out_slots(records + canaries)
        columns = range(len(self.schema.learned))
        longest = max(len(self.encoder.encode(r, columns)[0]) for r in records + canaries)
        if self.base_model is None and longest > self.recipe.tiny.max_length:
            raise DataError(f"a row takes {longest} tokens, more than the model's max_length "
                            f"{self.recipe.tiny.max_length}; raise tiny.max_length in the recipe")
        return train + canaries, validation, {"longest_row_tokens": longest}

    def _calibrate(self, records: list, progress: bool) -> None:
        if self.recipe.train.dp_epsilon is not None:  # the offsets are read off the rows as they are, without noise
            return
        # a pretrained base reads 1,000 rows in about a minute on a 2-core CPU (the tiny model 5,000 in 2 s)
        contexts = 5000 if self.base_model is None else 1000
        self.first_token_bias = category_offsets(self._get_sampler(), records, self.recipe.train.seed, contexts,
                                                 progress)
        self._sampler = None

    def _identity(self, records: list) -> list:
        return [self.schema.model_dump(mode="json"), records[:1000], len(records)]

    def _counts(self, records: list, train: list, validation: list) -> dict[str, Any]:
        return {"rows": len(records), "train_rows": len(train), "validation_rows": len(validation),
                "columns": len(self.schema.columns), "learned_columns": len(self.schema.learned)}

    # -- sample ------------------------------------------------------------------------------------------------
    def iter_sample(self, n: int, conditions: Mapping[str, Any] | None = None, seed: int = 0,
                    temperature: float = 1.0, top_p: float = 1.0, batch_size: int | None = None,
                    progress: bool = True, shard: tuple[int, int] = (0, 1), fair: Sequence[str] = (),
                    target: str | None = None, **options: Any) -> Iterator[pd.DataFrame]:
        """Rows in chunks of `batch_size`, for streaming writes; `conditions` fixes columns; `fair` columns with a
        `target`: the target's rate the same in every group of them (`llmsynth.generate.fair`). By default 1,024
        rows are sampled together with the tiny preset (its key/value cache is ~4 kB a token: 1.4x the rows/s of 256
        on Adult), 256 with a pretrained base (whose cache and 49k-token logits take ~50x the memory a row)."""
        if options:
            raise GenerateError(f"{', '.join(sorted(options))}: options for conversations; condition a table's rows "
                                "with conditions (--condition)")
        self._require_fitted()
        batch_size = batch_size or (256 if self.base_model else 1024)
        if fair:
            if shard != (0, 1):
                raise GenerateError("fair generation runs in one process: it balances every group against the rest")
            return fair_rows(self.iter_sample, self.schema, n, fair, target, conditions, seed, batch_size, progress,
                             temperature=temperature, top_p=top_p)
        return generate_rows(self._get_sampler(), self.schema, n, conditions, seed, batch_size, temperature, top_p,
                             progress, self.recipe.train.sampling_order, shard)

    def sample(self, n: int, conditions: Mapping[str, Any] | None = None, seed: int = 0, temperature: float = 1.0,
               top_p: float = 1.0, batch_size: int | None = None, progress: bool = False, fair: Sequence[str] = (),
               target: str | None = None) -> pd.DataFrame:
        """`n` valid rows; `conditions` fixes columns (e.g. {"is_fraud": 1}) and the rest follow from them; `fair`
        (e.g. ["sex"]) with a `target` ("income"): the target's rate the same in every group."""
        chunks = list(self.iter_sample(n, conditions, seed, temperature, top_p, batch_size, progress, fair=fair,
                                       target=target))
        return pd.concat(chunks, ignore_index=True)

    def _get_sampler(self) -> ConstrainedSampler:
        if self._sampler is None:
            self._sampler = ConstrainedSampler(self.ready_model(), self.encoder, self.schema.learned,
                                               self.first_token_bias)
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
        return self._canary_encoding(canaries, secret)[0][:-1]

    def canary_positions(self, canaries: CanarySet, secret: str | None) -> list[int] | None:
        encoding = self._canary_encoding(canaries, secret)
        return encoding[2][:-1] if len(encoding) == 3 else None

    def _canary_encoding(self, canaries: CanarySet, secret: str | None) -> tuple[list[int], ...]:
        """The canary's row with the secret's column last, so that its record up to the secret is a prompt."""
        column = canaries.template["column"]
        order = [i for i in range(len(self.schema.learned)) if i != column] + [column]
        return self.encoder.encode(self._canary_values(canaries, secret), order)

    # -- save / load -------------------------------------------------------------------------------------------
    def _manifest(self) -> dict[str, Any]:
        return {"schema": self.schema.model_dump(mode="json"),
                "serialization": {"style": "great", "field": " {name} is {value}", "separator": ",",
                                  "column_order": self.recipe.train.column_order, "null": "empty value",
                                  "end_of_row": self.tokenizer.eos_token, "column_slots": self.encoder.slots},
                "first_token_bias": {self.schema.learned[column].name: offsets
                                     for column, offsets in self.first_token_bias.items()}}

    def _restore(self, manifest: dict[str, Any]) -> None:
        self.schema = Schema.model_validate(manifest["schema"])
        self._slots = manifest["serialization"].get("column_slots")
        names = [column.name for column in self.schema.learned]  # JSON keys are strings
        self.first_token_bias = {names.index(name): {int(token): offset for token, offset in offsets.items()}
                                 for name, offsets in manifest.get("first_token_bias", {}).items()}
