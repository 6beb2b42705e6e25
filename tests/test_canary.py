"""Canaries: insertion after scrubbing, secrets kept beside the model, exposure with power and a control, extraction
by prompted and bulk sampling, the command line; real tiny models (network blocked by conftest)."""

import json

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner
from conftest import tiny_recipe
from test_chat import chat_recipe

from llmsynth import TabularSynthesizer
from llmsynth.synthesizers.chat import ChatSynthesizer
from llmsynth.cli import main
from llmsynth.data.chats import write_chats
from llmsynth.data.demo import customers, support_chats
from llmsynth.errors import DataError
from llmsynth.data.canaries import canary_path, make_canaries, parse_counts, read_canaries
from llmsynth.evaluate.canary import canary_figures
from llmsynth.evaluate.checks import TABLE_CHECKS, run_checks
from llmsynth.evaluate.dp_audit import dp_audit


@pytest.fixture(scope="module")
def memorizer(tmp_path_factory):
    """A tiny chat model trained long enough on little data to memorize a canary put in 32 times."""
    synth = ChatSynthesizer(chat_recipe(epochs=20)).fit(support_chats(80, seed=3).conversations, scrub=False,
                                                        canaries=[2, 32], progress=False)
    directory = synth.save(tmp_path_factory.mktemp("canary") / "model")
    return synth, directory


def _groups(figures: dict) -> dict[int, dict]:
    return {group["inserted"]: group for group in figures["by_insertions"]}


def test_counts_and_secrets():
    assert parse_counts("1, 4,16,64") == [1, 4, 16, 64]
    for bad in ("", "0,4", "a,b", "4,-1"):
        with pytest.raises(DataError, match="canary counts"):
            parse_counts(bad)
    canaries = make_canaries("chat", [1, 64], seed=3)
    assert [c.inserted for c in canaries.canaries] == [1, 64] + [0] * 8
    secrets = [c.secret for c in canaries.canaries]
    assert len(set(secrets)) == 10 and all(len(s.split()) == 8 for s in secrets)
    assert secrets == [c.secret for c in make_canaries("chat", [1, 64], seed=3).canaries]
    assert canaries.copies.count(secrets[1]) == 64 and secrets[2] not in canaries.copies


def test_secrets_stay_beside_the_model_not_inside(memorizer):
    synth, directory = memorizer
    canaries = read_canaries(canary_path(directory))
    assert canary_path(directory).parent == directory.parent and [c.inserted for c in canaries.inserted] == [2, 32]
    inside = "".join(p.read_bytes().decode("latin-1") for p in directory.rglob("*") if p.is_file())
    assert not any(c.secret in inside or c.secret.replace(" ", "") in inside for c in canaries.canaries)
    manifest = json.loads((directory / "manifest.json").read_text())
    assert manifest["canaries"] == {"inserted": [2, 32], "references": 8, "file": canary_path(directory).name}


def test_exposure_shows_memorization_and_sampling_finds_the_secret_in_bulk(memorizer):
    synth, _ = memorizer
    most = synth.canaries.inserted[-1].secret
    bulk = ["no secret here", f"my reference number is {most.replace(' ', '')}, thanks", "1 2 3"]
    figures = canary_figures(synth, synth.canaries, bulk, candidates=500, samples=16)
    groups = _groups(figures)
    assert groups[32]["exposure"] > groups[0]["exposure"] + 5  # the test has power
    assert figures["exposure_excess"] == pytest.approx(groups[32]["exposure"] - groups[0]["exposure"])
    assert groups[32]["p_secret"] > 100 * groups[0]["p_secret"]  # the likeliest reference
    assert groups[32]["bulk_hits"] == 1 and groups[2]["bulk_hits"] == 0 and groups[0]["bulk_hits"] == 0
    assert figures["extracted"] >= 1 and figures["bulk_records"] == 3
    assert 0 <= groups[32]["emission_probability_1m"] <= 1


def test_canaries_never_inserted_score_at_chance(memorizer):
    """The control: the same model, secrets of the same format that it never saw."""
    synth, _ = memorizer
    unseen = make_canaries("chat", [2, 32], seed=99)
    unseen.template = synth.canaries.template
    figures = canary_figures(synth, unseen, candidates=500, samples=8)
    assert all(group["exposure"] < 5 for group in figures["by_insertions"])
    assert abs(figures["exposure_excess"]) < 4 and figures["extracted"] == 0


def test_table_canary_goes_into_the_categorical_column_with_most_categories(demo_table):
    synth = TabularSynthesizer(tiny_recipe(epochs=1)).fit(demo_table.head(300), scrub=False, canaries=[3],
                                                          progress=False)
    column = synth.schema.learned[synth.canaries.template["column"]]
    most = max((c for c in synth.schema.learned if hasattr(c, "categories")), key=lambda c: len(c.categories))
    assert column.name == most.name
    secret = synth.canaries.inserted[0].secret
    assert synth.tokenizer.decode(synth.canary_ids(synth.canaries, secret)).endswith(f"{column.name} is {secret}")
    figures = canary_figures(synth, synth.canaries, candidates=200, samples=4)
    assert set(_groups(figures)) == {3, 0}
    numbers = pd.DataFrame({"a": range(300), "b": [x * 0.5 for x in range(300)]})
    with pytest.raises(DataError, match="free-text or categorical column"):
        TabularSynthesizer(tiny_recipe(epochs=1)).fit(numbers, scrub=False, canaries=[1], progress=False)


def test_a_table_canary_is_scored_and_prompted_at_its_column_slot(demo_table):
    """A table model reads each column at its slot's positions; the canary test scores the secret and prompts for it
    at the positions training gave them, and finds a secret put in 32 times (read at 0, 1, 2... instead, its exposure
    halved, 25.6 -> 12.7 bits, and prompting found it no more)."""
    synth = TabularSynthesizer(tiny_recipe(epochs=30, learning_rate=0.01)).fit(demo_table.head(200), scrub=False,
                                                                               canaries=[32], progress=False)
    secret = synth.canaries.inserted[0].secret
    ids, positions = synth.canary_ids(synth.canaries, secret), synth.canary_positions(synth.canaries, secret)
    column = synth.canaries.template["column"]
    secret_ids, slot = synth.encoder.value_ids(secret, column), synth.encoder.slots[column]
    assert ids[-len(secret_ids):] == secret_ids and positions[-len(secret_ids):][0] > slot
    assert positions[-len(secret_ids):] == list(range(positions[-len(secret_ids)], positions[-1] + 1))
    groups = _groups(canary_figures(synth, synth.canaries, candidates=300, samples=16))
    assert groups[32]["exposure"] > groups[0]["exposure"] + 18 and groups[32]["prompted_hits"] >= 1


def test_cli_trains_with_canaries_and_eval_reports_them(tmp_path):
    demo = support_chats(70, seed=5)
    write_chats(tmp_path / "train.jsonl", demo.conversations[:56])
    write_chats(tmp_path / "holdout.jsonl", demo.conversations[56:])
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(json.dumps(chat_recipe(epochs=1).model_dump()))
    runner = CliRunner()
    train = ["train", str(tmp_path / "train.jsonl"), "--kind", "chat", "-o", str(tmp_path / "m"), "--recipe",
             str(recipe), "--no-scrub"]
    bad = runner.invoke(main, [*train, "--canaries", "4,zero"])
    assert bad.exit_code == 2 and "whole numbers separated by commas" in bad.output
    trained = runner.invoke(main, [*train, "--canaries", "1,8"])
    assert trained.exit_code == 0, trained.output
    assert "m.canaries.json" in trained.output and (tmp_path / "m.canaries.json").is_file()
    evaluated = runner.invoke(main, ["eval", "--real", str(tmp_path / "train.jsonl"), "--holdout",
                                     str(tmp_path / "holdout.jsonl"), "--synthetic", str(tmp_path / "holdout.jsonl"),
                                     "--model", str(tmp_path / "m"), "-o", str(tmp_path / "report")])
    assert evaluated.exit_code == 0, evaluated.output
    assert "canaries.exposure_excess" in evaluated.output and "canaries.extracted" in evaluated.output
    metrics = json.loads((tmp_path / "report" / "metrics.json").read_text())
    assert [g["inserted"] for g in metrics["canaries"]["by_insertions"]] == [8, 1, 0]
    assert "Canaries: what the model memorized" in (tmp_path / "report" / "report.html").read_text()
    orphan = runner.invoke(main, ["eval", "--real", str(tmp_path / "train.jsonl"), "--holdout",
                                  str(tmp_path / "holdout.jsonl"), "--synthetic", str(tmp_path / "holdout.jsonl"),
                                  "--canaries", str(tmp_path / "m.canaries.json"), "-o", str(tmp_path / "r2")])
    assert orphan.exit_code == 2 and "--canaries needs --model" in orphan.output


def test_the_audit_bound_is_the_largest_epsilon_the_binomial_tail_rejects():
    from scipy.stats import binom

    from llmsynth.evaluate.dp_audit import largest_rejected_epsilon

    assert largest_rejected_epsilon(100, 50, 0.01) == 0.0  # a coin's score
    bound = largest_rejected_epsilon(100, 90, 0.01)
    p = 1 / (1 + np.exp(-bound))
    assert binom.sf(89, 100, p) == pytest.approx(0.01, rel=1e-6)
    assert largest_rejected_epsilon(100, 100, 0.01) == pytest.approx(np.log(0.01 ** 0.01 / (1 - 0.01 ** 0.01)))
    with_delta = largest_rejected_epsilon(100, 90, 0.01, delta=1e-5, canaries=200)
    assert 0 < with_delta < bound  # delta's slack weakens what the same guesses show
    assert largest_rejected_epsilon(100, 90, 0.01, delta=1e-2, canaries=200) == 0.0


def _audited(epochs: int, **train) -> TabularSynthesizer:
    """200 rows trained long enough to memorize a secret seen once per epoch; 200 audit canaries."""
    table = customers(200, seed=1)
    return TabularSynthesizer(tiny_recipe(epochs=epochs, **train)).fit(table, scrub=False, audit_canaries=200,
                                                                     progress=False)


def test_a_run_without_dp_shows_a_lower_bound_on_epsilon_above_zero(tmp_path):
    synth = _audited(60, patience=60)  # all 60 epochs: early stopping ended one such run at 35, the secrets unlearned
    audit_canaries = [c for c in synth.canaries.canaries if c.audit]
    assert len(audit_canaries) == 200 and 70 < sum(c.inserted for c in audit_canaries) < 130  # coin flips
    assert all(c.inserted in (0, 1) for c in audit_canaries)
    figures = canary_figures(synth, synth.canaries, candidates=200, samples=2)
    audit = figures["dp_audit"]
    assert audit["epsilon_lower_bound"] > 0.5 and audit["accountant_epsilon"] is None and audit["delta"] == 0
    assert audit["correct"] > 0.75 * audit["guesses"]
    assert figures["by_insertions"] == []  # audit canaries are not exposure groups
    directory = synth.save(tmp_path / "model")
    assert json.loads((directory / "manifest.json").read_text())["canaries"]["audit"] == 200
    # Had an accountant claimed epsilon 0.1 for this run, the check would call DP broken:
    claimed = dp_audit(*_scores(synth), accountant_epsilon=0.1)
    assert claimed["bound_over_accountant"] > 0.4
    verdicts = {c["metric"]: c["verdict"] for c in run_checks({"canaries": {"dp_audit": claimed}}, TABLE_CHECKS)}
    assert verdicts == {"canaries.dp_audit.bound_over_accountant": "fail"}


def _scores(synth) -> tuple[np.ndarray, np.ndarray]:
    """Each audit canary's secret log-likelihood, and whether it went in."""
    from llmsynth.evaluate.canary import secret_scores

    audit = [c for c in synth.canaries.canaries if c.audit]
    scores, _ = secret_scores(synth, synth.canaries, [c.secret for c in audit])
    return scores, np.array([c.inserted > 0 for c in audit])


def test_a_dp_run_stays_below_its_accountant_even_with_delta_taken_as_zero():
    synth = _audited(60, dp_epsilon=2.0)
    privacy = synth.summary.privacy
    audit = canary_figures(synth, synth.canaries, candidates=200, samples=2)["dp_audit"]
    assert audit["accountant_epsilon"] == privacy["epsilon"] and audit["delta"] == privacy["delta"]
    assert audit["epsilon_lower_bound"] <= privacy["epsilon"] and audit["bound_over_accountant"] <= 0
    strict = dp_audit(*_scores(synth), delta=0.0, accountant_epsilon=privacy["epsilon"])  # ignoring delta's slack
    assert strict["epsilon_lower_bound"] <= privacy["epsilon"]
