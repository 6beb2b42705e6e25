"""Consistent replacements: a keyed hash of the real value seeds Faker, so equal values get equal surrogates.

The key comes from an environment variable and is never written anywhere. Person names are mapped word
by word, so "John Smith", "Mr. Smith" and "John" stay consistent; case is kept.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import re

from faker import Faker

SURROGATES = {
    "EMAIL_ADDRESS": lambda fake: fake.free_email(),
    "PHONE_NUMBER": lambda fake: fake.numerify("(###) ###-####"),
    "US_SSN": lambda fake: fake.ssn(),
    "CREDIT_CARD": lambda fake: fake.credit_card_number(),
    "IBAN_CODE": lambda fake: fake.iban(),
    "IP_ADDRESS": lambda fake: fake.ipv4(),
    "US_BANK_NUMBER": lambda fake: fake.bban(),
    "LOCATION": lambda fake: fake.city(),
    "ADDRESS": lambda fake: fake.street_address(),
    "id": lambda fake: fake.bothify("??######"),
}
_NAME_WORD = re.compile(r"[A-Za-z][A-Za-z'-]*")
_TITLES = {"mr", "mrs", "ms", "miss", "dr", "prof", "sir"}
DEFAULT_KEY = "llmsynth-default-key"


class Pseudonymizer:
    def __init__(self, secret_env: str = "LLMSYNTH_SCRUB_SECRET"):
        self._key = os.environ.get(secret_env, DEFAULT_KEY).encode()
        self.keyed = secret_env in os.environ
        self._fake = Faker("en_US")

    def _seeded(self, kind: str, value: str) -> Faker:
        digest = hmac.new(self._key, f"{kind}\x00{value.lower()}".encode(), hashlib.sha256).digest()
        self._fake.seed_instance(int.from_bytes(digest[:8], "big"))
        return self._fake

    def surrogate(self, entity: str, value: str) -> str:
        if entity == "PERSON":
            return _NAME_WORD.sub(lambda m: self._name_word(m.group(0)), value)
        make = SURROGATES.get(entity, SURROGATES["id"])
        return _keep_case(value, make(self._seeded(entity, value)))

    def _name_word(self, word: str) -> str:
        if word.lower().rstrip(".") in _TITLES:
            return word
        return _keep_case(word, self._seeded("PERSON", word).last_name())


def _keep_case(original: str, replacement: str) -> str:
    if original.isupper() and len(original) > 1:
        return replacement.upper()
    if original.islower():
        return replacement.lower()
    return replacement
