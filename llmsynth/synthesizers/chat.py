"""Conversations (JSONL in the messages format, with metadata): the metadata header, then turn by turn in the tiny
preset's markers or a base's own chat template; sampled with the turn structure enforced token by token."""

from __future__ import annotations

import json
import logging
import os
from collections import Counter
from collections.abc import Iterator, Mapping
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from llmsynth.data.canaries import CanarySet
from llmsynth.data.chats import conversation_problem, read_chats, turn_problem
from llmsynth.data.io import write_text
from llmsynth.data.schema import MIN_ROWS, Schema, infer_column
from llmsynth.errors import DataError, GenerateError
from llmsynth.generate.chats import Novelty, TurnRules, generate_chats
from llmsynth.scrub import ScrubConfig, scrub_chats
from llmsynth.scrub.pseudonyms import Pseudonymizer
from llmsynth.serialize.chat import MARKERS, ChatEncoder, ChatRecord, Windowing, context_length, turn_texts, windows
from llmsynth.serialize.codecs import TextColumn
from llmsynth.serialize.tabular import row_text, segment_texts, value_texts
from llmsynth.synthesizers.base import Synthesizer
from llmsynth.train.config import Recipe

log = logging.getLogger(__name__)

GUIDANCE = 2.0  # classifier-free guidance by default: the requested metadata holds far more often (docs/benchmarks.md)
SURROGATES = "surrogates.json"
TURN_DIGESTS = "turn_digests.json"


class ChatSynthesizer(Synthesizer):
    """Learns support-chat conversations and their metadata; samples new, structurally valid conversations.

    >>> synth = ChatSynthesizer().fit("chats.jsonl")          # tiny offline preset, scrubbed first
    >>> synth.sample(100, conditions={"intent": "refund"})
    """

    KIND = "chat"
    DEFAULT_RECIPE = "tiny-chat"
    MARKERS = MARKERS
    UNSCRUBBED_WARNING = "training on unscrubbed conversations: PII in them can be memorized and replayed"

    def __init__(self, recipe: Recipe | str | None = None, base_model: str | None = None, loss_on: str = "all"):
        super().__init__(recipe, base_model)
        if loss_on not in ("all", "assistant"):
            raise ValueError(f"loss_on must be 'all' or 'assistant', got {loss_on!r}")
        self.loss_on = loss_on
        self.style = "markers" if self.base_model is None else "template"  # a pretrained base: its own chat template
        self.metadata_schema: Schema | None = None
        self.rules: TurnRules | None = None
        self.surrogates: frozenset[str] = frozenset()
        self.novelty: Novelty | None = None
        self.rescrub_counts: Counter = Counter()
        self.copy_counts: Counter = Counter()

    # -- fit: conversations in the messages format, a list or a JSONL file -------------------------------------
    def _read(self, data: list[dict] | str | os.PathLike) -> list[dict]:
        if not isinstance(data, list):
            return read_chats(data, dialogues=True).conversations
        for number, record in enumerate(data, start=1):
            problem = conversation_problem(record) or turn_problem(record)
            if problem:
                raise DataError(f"conversation {number}: {problem}")
        return [{"messages": c["messages"], "metadata": c.get("metadata", {})} for c in data]

    def _scrub(self, conversations: list[dict], config: ScrubConfig, progress: bool) -> tuple[list[dict], dict, set]:
        return scrub_chats(conversations, config, progress=progress)

    def _remember_surrogates(self, config: ScrubConfig, raw: set) -> None:
        if config.mode == "pseudonymize":  # what the model will learn instead of the PII: left alone later
            pseudonyms = Pseudonymizer(config.secret_env)
            self.surrogates = _words_and_values(pseudonyms.surrogate(entity, value) for entity, value in raw)

    def _learn_records(self, conversations: list[dict]) -> list[ChatRecord]:
        self.metadata_schema = metadata_schema([c["metadata"] for c in conversations])
        learned = self.metadata_schema.learned
        frame = pd.DataFrame([c["metadata"] for c in conversations], columns=self.metadata_schema.names)
        headers = value_texts(frame, learned) if learned else [[] for _ in conversations]
        records = [ChatRecord(tuple(header), tuple((m["role"], m["content"]) for m in c["messages"]))
                   for header, c in zip(headers, conversations)]
        if self.style == "template" and any(role == "system" for r in records for role, _ in r.turns):
            raise DataError("conversations with a system turn cannot be learned in a chat template: its system turn "
                            "holds the metadata; drop the system turns or train the tiny preset")
        return records

    def _names(self) -> list[str]:
        return [c.name for c in self.metadata_schema.learned]

    def _tokenizer_texts(self, records: list[ChatRecord]) -> Iterator[str]:
        names = self._names()
        return iter([row_text(names, r.metadata) for r in records] + turn_texts(records))

    def _whole_tokens(self) -> list[str]:
        return [t for name in self._names() for t in segment_texts(name)]

    def _new_encoder(self) -> ChatEncoder:
        return ChatEncoder(self.tokenizer, self._names(), self.loss_on, self.style)

    def _examples(self, records: list, canaries: list, train: list, validation: list) -> tuple[list, list, dict]:
        """Conversations longer than the context (from the data, see `context_length`) are learned as windows of
        whole turns; the turn rules and the novelty filter are learned from the records (not the canaries)."""
        columns = range(len(self._names()))
        lengths = {id(r): len(self.encoder.encode(r, columns)[0]) for r in records + canaries}
        windowing = Windowing(self.recipe.train.context_tokens or context_length(list(lengths.values()),
                                                                                 self._context_limit()))

        def fitted(part: list[ChatRecord]) -> list[ChatRecord]:
            return [w for r in part for w in ([r] if lengths[id(r)] <= windowing.context
                                              else windows(r, self.encoder, windowing.context, windowing))]

        train_windows, validation_windows = fitted(train + canaries), fitted(validation)
        if windowing.windowed_conversations and self.recipe.train.dp_epsilon is not None:
            raise DataError(f"{windowing.windowed_conversations} conversations are longer than the context of "
                            f"{windowing.context} tokens; differential privacy protects whole records, and windows "
                            "of one conversation would be several: raise train.context_tokens in the recipe (up to "
                            f"{self._context_limit()}) or leave the longest conversations out")
        if windowing.windowed_conversations:
            log.warning("%d conversations longer than the context of %d tokens are learned as %d windows of whole "
                        "turns (%d turns longer than a window cut to fit)", windowing.windowed_conversations,
                        windowing.context, windowing.windows, windowing.cut_turns)
        self.rules = TurnRules.learn(records, self.encoder)
        self.novelty = Novelty.learn([content for _, content in r.turns] for r in records)  # not the canaries'
        return train_windows, validation_windows, {"longest_conversation_tokens": max(lengths.values()),
                                                   **asdict(windowing)}

    def _identity(self, records: list) -> list:
        return [self.metadata_schema.model_dump(mode="json"), self.loss_on, records[:500], len(records)]

    def _counts(self, records: list, train: list, validation: list) -> dict[str, Any]:
        return {"conversations": len(records), "train_conversations": len(train),
                "validation_conversations": len(validation), "messages": sum(len(r.turns) for r in records),
                "metadata_fields": self._names()}

    def _context_limit(self) -> int:
        """The longest sequence the model takes: the tiny preset's `max_length`, a base's position limit."""
        if self.base_model is None:
            return self.recipe.tiny.max_length
        return int(getattr(self.model.config, "max_position_embeddings", None) or 2048)

    # -- sample ------------------------------------------------------------------------------------------------
    def iter_sample(self, n: int, conditions: Mapping[str, Any] | None = None, seed: int = 0,
                    temperature: float = 1.0, top_p: float = 1.0, batch_size: int | None = None,
                    progress: bool = True, shard: tuple[int, int] = (0, 1),
                    mix: Mapping[str, Mapping[Any, float]] | None = None, rescrub: bool = True,
                    allow_copies: bool = False, guidance: float = GUIDANCE) -> Iterator[list[dict]]:
        """Conversations in batches (default 64), for streaming writes. With `rescrub`, PII the scrubber finds in them that is
        not one of the training surrogates is replaced; `rescrub_counts` says how much, by entity. `shard` (i, k)
        keeps batches i, i + k, ... (for data-parallel generation). Unless `allow_copies`, a turn longer than 40
        characters never repeats a training turn word for word (but stock phrases, see `Novelty`); `copy_counts`
        says how often a turn was sampled again, and how many conversations the re-scrub made into a copy were
        written anew ("regenerated").
        `guidance` > 1 pushes every token towards the conversation's metadata (classifier-free guidance: each
        conversation is also run without its metadata, which doubles the compute); 1 turns it off."""
        self._require_fitted()
        if guidance < 1:
            raise GenerateError(f"guidance must be at least 1 (1 is off), got {guidance:g}")
        novelty = None if allow_copies else self.novelty
        self.rescrub_counts, self.copy_counts = Counter(), Counter()
        options = dict(schema=self.metadata_schema, rules=self.rules, temperature=temperature, top_p=top_p,
                       column_order=self.recipe.train.sampling_order, novelty=novelty, counts=self.copy_counts,
                       guidance=guidance, context=self.data_summary.get("context"))
        model, encoder = self.ready_model(), self.encoder
        batches = generate_chats(model, encoder, n=n, conditions=conditions, mix=mix, seed=seed,
                                 batch_size=batch_size or 64, progress=progress, shard=shard, **options)
        if not rescrub:
            yield from batches
            return
        learned_fields = {c.name for c in self.metadata_schema.learned}
        for number, batch in enumerate(batches):
            cleaned = self._rescrubbed(batch)
            for attempt in range(Novelty.RETRIES if novelty is not None else 0):
                # The re-scrub can turn a novel turn into a copy: "Ms. Davidson" written by the model becomes the
                # surrogate "Ms. Davis" of a training turn. Such conversations are written anew, same metadata, in
                # one batch.
                copies = [i for i, c in enumerate(cleaned) if any(novelty.copies(m["content"].encode())
                                                                  for m in c["messages"])]
                if not copies:
                    break
                requests = [{k: v for k, v in cleaned[i]["metadata"].items() if k in learned_fields} for i in copies]
                key = [seed, shard[0] + number * shard[1], attempt]
                fresh = generate_chats(model, encoder, n=len(copies), requests=requests, batch_size=len(copies),
                                       seed=int(np.random.default_rng(key).integers(2**31)), progress=False,
                                       **options)
                for index, conversation in zip(copies, self._rescrubbed(next(fresh))):
                    cleaned[index] = conversation
                self.copy_counts["regenerated"] += len(copies)
            yield cleaned

    def _rescrubbed(self, batch: list[dict]) -> list[dict]:
        from llmsynth.scrub import ScrubConfig, scrub_chats

        cleaned, report, _ = scrub_chats(batch, ScrubConfig(), progress=False, keep=self.surrogates)
        self.rescrub_counts.update(report["entities"])
        return cleaned

    def sample(self, n: int, conditions: Mapping[str, Any] | None = None,
               mix: Mapping[str, Mapping[Any, float]] | None = None, seed: int = 0, temperature: float = 1.0,
               top_p: float = 1.0, batch_size: int = 64, rescrub: bool = True, progress: bool = False,
               allow_copies: bool = False, guidance: float = GUIDANCE) -> list[dict]:
        """`n` conversations; `conditions` fixes metadata fields ({"intent": "refund"}), `mix` asks for shares of
        values ({"intent": {"refund": 0.3}}), and the rest is drawn as in training."""
        return [c for batch in self.iter_sample(n, conditions, seed, temperature, top_p, batch_size, progress,
                                                mix=mix, rescrub=rescrub, allow_copies=allow_copies, guidance=guidance)
                for c in batch]

    # -- canaries ----------------------------------------------------------------------------------------------
    def _canary_template(self, records: list[ChatRecord]) -> dict[str, Any]:
        """The canary opens a conversation in the commonest opening role; it is scored under the commonest
        metadata (all fields together)."""
        role = Counter(r.turns[0][0] for r in records).most_common(1)[0][0]
        metadata = Counter(r.metadata for r in records if r.turns[0][0] == role).most_common(1)[0][0]
        return {"metadata": list(metadata), "role": role}

    def _canary_record(self, records: list[ChatRecord], number: int, secret: str) -> ChatRecord:
        """A training conversation (a different one for each copy, as far as there are enough) with the canary
        put in front of its opening turn: the copies keep the data's metadata and wording, so that the test
        changes what the model learns as little as it can."""
        hosts = [r for r in records if r.turns[0][0] == self.canaries.template["role"]]
        host = hosts[number % len(hosts)]
        (role, opening), *rest = host.turns
        return ChatRecord(host.metadata, ((role, f"{self.canaries.prefix} {secret}. {opening}"), *rest))

    def canary_ids(self, canaries: CanarySet, secret: str | None) -> list[int]:
        template = canaries.template
        text = f"{canaries.prefix} {secret}" if secret else canaries.prefix
        record = ChatRecord(tuple(template["metadata"]), ((template["role"], text),))
        return self.encoder.encode(record, range(len(template["metadata"])), closed=False)[0]

    # -- save / load -------------------------------------------------------------------------------------------
    def _manifest(self) -> dict[str, Any]:
        return {"metadata_schema": self.metadata_schema.model_dump(mode="json"),
                "serialization": {"style": f"chat-{self.style}", "loss_on": self.loss_on,
                                  **({"markers": MARKERS} if self.style == "markers" else {}),
                                  "header": " {field} is {value}", "column_order": self.recipe.train.column_order,
                                  "end_of_conversation": self.tokenizer.convert_ids_to_tokens(self.encoder.end_id)},
                "turn_rules": self.rules.model_dump()}

    def _write_files(self, directory: Path) -> None:
        write_text(directory / SURROGATES, json.dumps(sorted(self.surrogates)))
        write_text(directory / TURN_DIGESTS, json.dumps(self.novelty.to_json()))

    def _restore(self, manifest: dict[str, Any]) -> None:
        self.metadata_schema = Schema.model_validate(manifest["metadata_schema"])
        self.loss_on = manifest["serialization"]["loss_on"]
        self.rules = TurnRules.model_validate(manifest["turn_rules"])

    def _restore_files(self, directory: Path) -> None:
        path = directory / SURROGATES
        self.surrogates = frozenset(json.loads(path.read_text())) if path.is_file() else frozenset()
        path = directory / TURN_DIGESTS  # a model saved before the filter has none: it generates as it did
        self.novelty = Novelty.from_json(json.loads(path.read_text())) if path.is_file() else None


def copy_summary(counts: Counter) -> str:
    """What the novelty filter did, for the command line."""
    return (f"{counts['resampled']} turns that closed as copies of a training turn were sampled again"
            + (f"; {counts['regenerated']} conversations the re-scrub made into a copy written anew"
               if counts["regenerated"] else "")
            + (f"; {counts['kept']} kept at their length limit" if counts["kept"] else ""))


def metadata_schema(metadata: list[dict]) -> Schema:
    """Codecs of the metadata fields: categories, numbers and dates are learned; free text and identifiers get
    surrogates at output. No metadata at all is fine."""
    frame = pd.DataFrame(metadata)
    if frame.empty or not len(frame.columns):
        return Schema(columns=[])
    if len(frame) < MIN_ROWS:
        raise DataError(f"{len(frame)} conversation(s); at least {MIN_ROWS} are needed to learn from")
    columns = []
    for name in frame.columns:
        column = infer_column(str(name), frame[name])
        columns.append(infer_column(str(name), frame[name], "identifier") if isinstance(column, TextColumn) else column)
    return Schema(columns=columns)


def _words_and_values(surrogates) -> frozenset[str]:
    values = {s.lower() for s in surrogates if s}
    return frozenset(values | {word for value in values for word in value.split()})
