"""Related tables: a root table and the tables that hang off it by keys (customers -> accounts -> transactions),
learned by one model with every row after its family's text (serialize/relational.py) and sampled family by family."""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Iterator, Mapping
from dataclasses import replace
from typing import Any

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from llmsynth.data.relational import (
    Database, Layout, check_database, read_related, with_entity_table, with_order,
)
from llmsynth.errors import DataError, GenerateError
from llmsynth.generate.families import Settings, calibrated, generate_families, number_keys
from llmsynth.scrub import ScrubConfig, scrub_table
from llmsynth.data.families import TablePlan, family_records, learned_frames, ordered, table_plans
from llmsynth.serialize.relational import RelationalEncoder, RelationalRecord
from llmsynth.serialize.tabular import segment_texts, whole_values
from llmsynth.synthesizers.base import Synthesizer
from llmsynth.train.config import Recipe


# On the bench's bank (223 customers, ~445 accounts, ~2,400 transactions: 11 and 5 repeats) accounts per customer
# came out at KS complement 0.922 and 0.908 (two runs) vs 0.831 and 0.792 with at most 4 repeats.
MAX_REPEATS = 16
# A sequence's rows with a rare event again, this many times more (see _event_rows). Demo bank, 2,000 families from
# each of three trainings (seeds 0/1/2): fraud pattern 4.6/2.7/2.1% of card accounts without, 5.5/4.4/4.1% with 4
# (training data 8.4/7.2/7.3%); 12 did worse (seed 0: 2.9%, fewer epochs in the demo's budget).
EVENT_REPEATS = 4


class RelationalSynthesizer(Synthesizer):
    """Learns a database of related tables and samples new families, every key consistent.

    >>> synth = RelationalSynthesizer().fit("bank/")          # bank/relations.yaml, or sqlite:///bank.db
    >>> database = synth.sample(500)                          # 500 customers with their accounts and transactions
    """

    KIND = "relational"
    DEFAULT_RECIPE = "tiny-relational"
    UNSCRUBBED_WARNING = "training on unscrubbed tables: PII in their free-text columns can be memorized and replayed"

    def __init__(self, recipe: Recipe | str | None = None, base_model: str | None = None,
                 column_kinds: Mapping[str, Mapping[str, str]] | None = None,
                 order_by: Mapping[str, str] | None = None):
        """`column_kinds`: per table, column kind overrides (as for one table). `order_by`: table -> the column that
        orders its rows within a parent (a database's catalog does not say; a folder's relations.yaml may)."""
        super().__init__(recipe, base_model)
        self.column_kinds = {table: dict(kinds) for table, kinds in (column_kinds or {}).items()}
        self.order_by = dict(order_by or {})
        self.plans: list[TablePlan] = []
        self.layout = None

    # -- fit: a folder with relations.yaml, a database URL, or a Database ----------------------------------------
    def _read(self, data: Database | str | os.PathLike) -> Database:
        if isinstance(data, Database):
            data = with_order(data, self.order_by, "the database")
            check_database(data)
            return data
        return read_related(data, self.order_by)

    def _scrub(self, database: Database, config: ScrubConfig, progress: bool) -> tuple[Database, dict, set]:
        """Every table but its keys (never learned, and the links between tables until the records are built)."""
        tables, summary, raw = {}, {}, set()
        for name, spec in database.layout.tables.items():
            keys = spec.keys
            table = database.tables[name]
            if len(table.columns) == len(keys):  # nothing but keys
                tables[name], summary[name] = table, {"rows": len(table), "columns": {}}
                continue
            scrubbed, summary[name], found = scrub_table(table.drop(columns=keys), config,
                                                         self.column_kinds.get(name), progress=progress)
            tables[name] = pd.concat([table[keys], scrubbed], axis=1)[list(table.columns)]
            raw |= found
        return Database(database.layout, tables), {"tables": summary}, raw

    def _learn_records(self, database: Database) -> list[RelationalRecord]:
        """The layout is kept as given (what generation writes); a table of events is learned under its entities."""
        self.layout = database.layout
        database = ordered(with_entity_table(database))
        frames = learned_frames(database)
        self.plans = table_plans(database, frames, self.column_kinds)
        return family_records(database, frames, self.plans)

    def _tokenizer_texts(self, records: list[RelationalRecord]) -> Iterator[str]:
        return (r.context + " " + " ".join(r.values) for r in records)

    def _whole_tokens(self) -> list[str]:
        return [text for plan in self.plans for name in plan.learned_names for text in segment_texts(name)]

    def _whole_values(self) -> list[str]:
        return whole_values([column for plan in self.plans for column in plan.table_schema.learned])

    def _new_encoder(self) -> RelationalEncoder:
        return RelationalEncoder(self.tokenizer, [plan.learned_names for plan in self.plans])

    def _split(self, records: list[RelationalRecord]) -> tuple[list, list]:
        """Validation by whole families, as the holdout is."""
        families = sorted({r.family for r in records})
        rng = np.random.default_rng(self.recipe.train.seed)
        count = max(1, round(len(families) * self.recipe.train.validation_fraction))
        validation = set(rng.permutation(families)[:count].tolist())
        return [r for r in records if r.family not in validation], [r for r in records if r.family in validation]

    def _examples(self, records: list, canaries: list, train: list, validation: list) -> tuple[list, list, dict]:
        longest = max(len(self.encoder.encode(r, range(self.encoder.column_count))[0]) for r in records)
        if self.base_model is None and longest > self.recipe.tiny.max_length:
            raise DataError(f"a row with its family's text takes {longest} tokens, more than the model's max_length "
                            f"{self.recipe.tiny.max_length}; raise tiny.max_length in the recipe")
        return _balanced(train) + _event_rows(train, self.plans) + canaries, validation, {"longest_row_tokens": longest}

    def _identity(self, records: list) -> list:
        return [[plan.model_dump(mode="json") for plan in self.plans], len(records)]

    def _counts(self, records: list, train: list, validation: list) -> dict[str, Any]:
        rows = {plan.name: sum(r.table == i for r in records) for i, plan in enumerate(self.plans)}
        return {"tables": len(self.plans), "rows": rows, "families": len({r.family for r in records}),
                "validation_families": len({r.family for r in validation})}

    def _calibrate(self, records: list[RelationalRecord], progress: bool) -> None:
        if self.recipe.train.dp_epsilon is not None:  # the offsets are read off the rows as they are, without noise
            return
        self.plans = calibrated(self.ready_model(), self.encoder, records, self.plans, self.recipe.train.seed,
                                self.recipe.train.sampling_order, progress)

    def _canary_template(self, records: list) -> dict[str, Any]:
        raise DataError("canaries are not supported for related tables yet; train without --canaries and --audit-canaries")

    # -- sample ------------------------------------------------------------------------------------------------
    def iter_sample(self, n: int, conditions: Mapping[str, Any] | None = None, seed: int = 0,
                    temperature: float = 1.0, top_p: float = 1.0, batch_size: int | None = None,
                    progress: bool = True, shard: tuple[int, int] = (0, 1), **options: Any) -> Iterator[Database]:
        """`n` root rows with their families, as databases of up to `batch_size` (default 256) families each; keys
        number on across them. `conditions` fix root columns."""
        if shard != (0, 1):
            raise GenerateError("a share of related tables' batches: sample_parts, then join_parts")
        offsets: dict[str, int] = {}
        for _, tables in self.sample_parts(n, conditions, seed, temperature, top_p, batch_size, progress, **options):
            yield self._database([number_keys(tables, self.plans, offsets)])

    def sample_parts(self, n: int, conditions: Mapping[str, Any] | None = None, seed: int = 0,
                     temperature: float = 1.0, top_p: float = 1.0, batch_size: int | None = None,
                     progress: bool = True, shard: tuple[int, int] = (0, 1), **options: Any
                     ) -> Iterator[tuple[int, dict[str, pd.DataFrame]]]:
        """The batches of families (numbered; every table's keys from 1) that process i of k samples for
        `shard` (i, k): the i-th, (i+k)-th... Each batch is seeded by its number alone, so k processes sample what
        one does; `join_parts` puts them together."""
        if options:
            raise GenerateError(f"{', '.join(sorted(options))}: options for conversations")
        if n < 1:
            raise GenerateError(f"the number of root rows must be at least 1, got {n}")
        self._require_fitted()
        model, families = self.ready_model(), batch_size or 256
        index, count = shard
        mine = [(number, start) for number, start in enumerate(range(0, n, families)) if number % count == index]
        with tqdm(total=sum(min(families, n - start) for _, start in mine), desc="generating", unit="family",
                  disable=not progress) as bar:
            for number, start in mine:
                size = min(families, n - start)
                settings = Settings(seed * 1_000_003 + number, 256, temperature, top_p,
                                    self.recipe.train.sampling_order)
                yield number, generate_families(model, self.encoder, self.plans, size, conditions, settings)
                bar.update(size)

    def join_parts(self, parts: list[tuple[int, dict[str, pd.DataFrame]]]) -> Database:
        """Batches from `sample_parts` (of one process or several) as one database, in batch order, keys numbered on."""
        offsets: dict[str, int] = {}
        in_order = sorted(parts, key=lambda part: part[0])
        return self._database([number_keys(tables, self.plans, offsets) for _, tables in in_order])

    def _database(self, parts: list[dict[str, pd.DataFrame]]) -> Database:
        """The layout's tables (a table of events without its entities' table, as given) of the parts, joined."""
        return Database(self.layout, {name: pd.concat([p[name] for p in parts], ignore_index=True)
                                      for name in self.layout.tables})

    def sample(self, n: int, conditions: Mapping[str, Any] | None = None, seed: int = 0, temperature: float = 1.0,
               top_p: float = 1.0, batch_size: int = 256, progress: bool = False) -> Database:
        """`n` root rows with everything below them; every row valid, every foreign key its parent's."""
        return self.join_parts(list(self.sample_parts(n, conditions, seed, temperature, top_p, batch_size, progress)))

    # -- save / load -------------------------------------------------------------------------------------------
    def _manifest(self) -> dict[str, Any]:
        return {"layout": self.layout.model_dump(mode="json"),
                "tables": [plan.model_dump(mode="json") for plan in self.plans]}

    def _restore(self, manifest: dict[str, Any]) -> None:
        self.layout = Layout.model_validate(manifest["layout"])
        self.plans = [TablePlan.model_validate(plan) for plan in manifest["tables"]]


def _balanced(records: list[RelationalRecord]) -> list[RelationalRecord]:
    """Parent tables' rows repeated (up to MAX_REPEATS times) where the rows below outnumber them: without it a few
    hundred customers are a few percent of what the model sees, and their own columns (and their children's counts)
    are learned last. A parent's record is short (its family's text is above its children), so this costs little."""
    counts = Counter(r.table for r in records)
    most = max(counts.values())
    return [r for r in records for _ in range(min(MAX_REPEATS, max(1, round(most / counts[r.table]))))]


def _event_rows(records: list[RelationalRecord], plans: list[TablePlan]) -> list[RelationalRecord]:
    """A sequence's rows with a rare event, EVENT_REPEATS more times, each copy's loss on what follows its event
    columns (a row's first): what goes with an event (the large payment that ends a burst of fraud) is seen in a
    few dozen rows and was learned last, while how often an event comes stays learned from the rows as they are."""
    event_columns = [len(dict.fromkeys(column for column, _ in plan.events)) for plan in plans]
    return [replace(record, unlearned=event_columns[record.table]) for record in records if record.has_event
            for _ in range(EVENT_REPEATS)]
