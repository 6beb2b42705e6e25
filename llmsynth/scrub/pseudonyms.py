"""Consistent replacements: a keyed hash of the real value seeds Faker, so equal values get equal surrogates.

The key comes from an environment variable and is never written anywhere. Person names are mapped word
by word (a listed given name to a given name, any other word to a surname), so "John Smith", "Mr. Smith" and
"John" stay consistent; case is kept.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import re

from faker import Faker

from llmsynth.scrub.recognizers import name_lists

SURROGATES = {
    "EMAIL_ADDRESS": lambda fake: fake.free_email(),
    "PHONE_NUMBER": lambda fake: fake.numerify("(###) ###-####"),
    "US_SSN": lambda fake: fake.ssn(),
    "CREDIT_CARD": lambda fake: fake.credit_card_number(),
    "IBAN_CODE": lambda fake: fake.iban(),
    "IP_ADDRESS": lambda fake: fake.ipv4(),
    "US_BANK_NUMBER": lambda fake: fake.bban(),
    # Places are built from surnames: Faker's own cities and streets contain given names ("Lake Joshua").
    "LOCATION": lambda fake: fake.last_name() + fake.city_suffix(),
    "ADDRESS": lambda fake: f"{fake.building_number()} {fake.last_name()} {fake.street_suffix()}",
    "id": lambda fake: fake.bothify("??######"),
}
_NAME_WORD = re.compile(r"[^\W\d_](?:[^\W\d_]|['’-])*")  # letters of any script: "Jürgen" is one word, not "J", "rgen"
TITLES = {"mr", "mrs", "ms", "miss", "dr", "prof", "sir"}
DEFAULT_KEY = "llmsynth-default-key"


class Pseudonymizer:
    def __init__(self, secret_env: str = "LLMSYNTH_SCRUB_SECRET"):
        self._key = os.environ.get(secret_env, DEFAULT_KEY).encode()
        self.keyed = secret_env in os.environ
        self._fake = Faker("en_US")

    def _draw(self, kind: str, value: str, make) -> str:
        """A surrogate seeded by the keyed hash of the value, redrawn while it contains the value or vice versa
        ("William" must not become "Williams")."""
        for attempt in range(100):
            digest = hmac.new(self._key, f"{kind}\x00{attempt}\x00{value.lower()}".encode(), hashlib.sha256).digest()
            self._fake.seed_instance(int.from_bytes(digest[:8], "big"))
            surrogate = make(self._fake)
            if value.lower() not in surrogate.lower() and surrogate.lower() not in value.lower():
                break
        return _keep_case(value, surrogate)

    def surrogate(self, entity: str, value: str) -> str:
        if entity == "PERSON":
            return _NAME_WORD.sub(lambda m: self._name_word(m.group(0)), value)
        return self._draw(entity, value, SURROGATES.get(entity, SURROGATES["id"]))

    def _name_word(self, word: str) -> str:
        if word.lower().rstrip(".") in TITLES:
            return word
        if word.lower() in name_lists()[0]:
            return self._draw("PERSON", word, lambda fake: fake.first_name())
        return self._draw("PERSON", word, lambda fake: fake.last_name())


def _keep_case(original: str, replacement: str) -> str:
    if original.isupper() and len(original) > 1:
        return replacement.upper()
    if original.islower():
        return replacement.lower()
    return replacement
