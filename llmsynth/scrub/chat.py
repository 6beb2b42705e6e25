"""Scrubbing conversations: every turn, with what was found anywhere in a conversation replaced everywhere in it.

A name the customer gives once ("this is Maria Lopez") is also replaced where the agent later writes
"Maria" alone, which no recognizer would flag by itself. Work goes in chunks, each analyzed in one spaCy
batch, optionally over several processes; pseudonyms come from a keyed hash, so they agree across processes.
"""

from __future__ import annotations

import multiprocessing
from collections import Counter
from concurrent.futures import ProcessPoolExecutor

from tqdm.auto import tqdm

from llmsynth.scrub.engine import Analyzer, ScrubConfig, build_analyzer, check_config
from llmsynth.scrub.pseudonyms import Pseudonymizer
from llmsynth.scrub.text import Findings, Span, detect, resolve, scrub_spans

CHUNK_CONVERSATIONS = 32
_worker: dict = {}  # this process's analyzer, pseudonymizer and config


def scrub_chats(conversations: list[dict], config: ScrubConfig | None = None, processes: int = 1,
                progress: bool = True,
                keep: frozenset[str] = frozenset()) -> tuple[list[dict], dict, set[tuple[str, str]]]:
    """Scrub every message of every conversation; metadata is kept as is. Values in `keep` (lower case: the
    surrogates a model learned from scrubbed data) are left alone, as are names made only of their words.

    Returns the scrubbed conversations (same order), a JSON-ready report, and the raw (entity, value) pairs
    found, which the caller may keep privately for PII-replay tests and must never put next to the output.
    """
    config = config or ScrubConfig()
    check_config(config)  # unknown entity names, a missing NER model: here, before any worker starts
    chunks = [conversations[i:i + CHUNK_CONVERSATIONS] for i in range(0, len(conversations), CHUNK_CONVERSATIONS)]
    bar = tqdm(total=len(conversations), desc="scrubbing", unit="conversation", disable=not progress)
    scrubbed: list[dict] = []
    findings, by_role = Findings(), Counter()
    with bar:
        if processes > 1:
            # fork where there is one: it needs no `if __name__ == "__main__"` guard in the user's script
            methods = multiprocessing.get_all_start_methods()
            context = multiprocessing.get_context("fork" if "fork" in methods else "spawn")
            with ProcessPoolExecutor(processes, mp_context=context, initializer=_start_worker,
                                     initargs=(config, keep)) as pool:
                results = pool.map(_scrub_chunk, chunks)
                analyzer_info = _collect(results, scrubbed, findings, by_role, bar)
        else:
            _start_worker(config, keep)
            analyzer_info = _collect(map(_scrub_chunk, chunks), scrubbed, findings, by_role, bar)
    report = {
        "conversations": len(conversations),
        "messages": sum(len(c["messages"]) for c in conversations),
        "characters": sum(len(m["content"]) for c in conversations for m in c["messages"]),
        "mode": config.mode,
        **analyzer_info,
        "keyed_pseudonyms": Pseudonymizer(config.secret_env).keyed,
        "entities": dict(findings.counts.most_common()),
        "by_role": {role: {e: n for (r, e), n in sorted(by_role.items()) if r == role}
                    for role in sorted({r for r, _ in by_role})},
        "examples": findings.examples,
    }
    return scrubbed, report, findings.raw_values


def _collect(results, scrubbed: list[dict], findings: Findings, by_role: Counter, bar) -> dict:
    """Gather the chunks' results in order; returns what the workers' analyzer was (NER on, which model)."""
    analyzer = {"ner": None, "spacy_model": None}
    for chunk, chunk_findings, chunk_roles, analyzer in results:
        scrubbed += chunk
        findings.merge(chunk_findings)
        by_role.update(chunk_roles)
        bar.update(len(chunk))
    return analyzer


def known_values(messages: list[dict], detected: list[list[Span]]) -> set[tuple[str, str]]:
    """Every (entity, value) found anywhere in a conversation, to be replaced everywhere in it; a value found as
    several entities keeps the one its own message resolved to."""
    return {(s.entity_type, m["content"][s.start:s.end])
            for m, turn in zip(messages, detected) for s in resolve(m["content"], turn)}


def conversation_spans(messages: list[dict], detected: list[list[Span]]) -> list[list[Span]]:
    """The spans replaced in each message: its own findings and the conversation's known values."""
    values = known_values(messages, detected)
    return [resolve(m["content"], turn, values) for m, turn in zip(messages, detected)]


def _kept(value: str, keep: frozenset[str]) -> bool:
    return bool(keep) and (value.lower() in keep or all(word in keep for word in value.lower().split()))


def _start_worker(config: ScrubConfig, keep: frozenset[str] = frozenset()) -> None:
    """Set up this process; the analyzer (seconds to build: spaCy) is reused while the config stays the same, so
    scrubbing batch after batch, as generation does, builds it once."""
    if _worker.get("config") != config:
        _worker.update(config=config, analyzer=build_analyzer(config))
    _worker.update(pseudonyms=Pseudonymizer(config.secret_env), keep=keep)


def _scrub_chunk(conversations: list[dict]) -> tuple[list[dict], Findings, Counter, dict]:
    config: ScrubConfig = _worker["config"]
    analyzer: Analyzer = _worker["analyzer"]
    texts = [m["content"] for c in conversations for m in c["messages"]]
    detected = iter(detect(texts, analyzer, config))
    findings, by_role, scrubbed = Findings(), Counter(), []
    for conversation in conversations:
        spans = [next(detected) for _ in conversation["messages"]]
        spans = [[s for s in turn if not _kept(m["content"][s.start:s.end], _worker["keep"])]
                 for m, turn in zip(conversation["messages"], spans)]
        values = known_values(conversation["messages"], spans)
        messages = []
        for message, turn in zip(conversation["messages"], spans):
            turn_findings = Findings()
            content = scrub_spans(message["content"], turn, config, _worker["pseudonyms"], turn_findings, values)
            by_role.update({(message["role"], entity): n for entity, n in turn_findings.counts.items()})
            findings.merge(turn_findings)
            messages.append({**message, "content": content})
        scrubbed.append({**conversation, "messages": messages})
    return scrubbed, findings, by_role, {"ner": analyzer.ner_enabled, "spacy_model": analyzer.spacy_model}
