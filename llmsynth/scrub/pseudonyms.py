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
from datetime import datetime

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
}
# How people write dates of birth; a surrogate keeps the format ("born on 05/22/1975", not "born on wYi96979").
DATE_FORMATS = ["%m/%d/%Y", "%d/%m/%Y", "%Y-%m-%d", "%m-%d-%Y", "%d.%m.%Y", "%B %d, %Y", "%b %d, %Y", "%d %B %Y",
                "%B %d %Y", "%m/%d/%y", "%d.%m.%y"]
_NAME_WORD = re.compile(r"[^\W\d_](?:[^\W\d_]|['’-])*")  # letters of any script: "Jürgen", not "J", "rgen"
TITLES = {"mr", "mrs", "ms", "miss", "dr", "prof", "sir"}
NAME_PARTICLES = {"de", "da", "di", "do", "dos", "das", "du", "del", "della", "la", "le", "van", "von", "der", "den",
                  "ten", "ter", "bin", "ibn", "al", "el", "y"}
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
        if entity == "DATE_OF_BIRTH":
            form = _date_format(value)  # another date of birth, written as this one is
            return self._draw(entity, value,
                              lambda fake: fake.date_of_birth(minimum_age=18, maximum_age=90).strftime(form))
        return self._draw(entity, value, SURROGATES.get(entity, lambda fake: _same_shape(fake, value)))

    def _name_word(self, word: str) -> str:
        if word.lower().rstrip(".") in TITLES or word in NAME_PARTICLES:  # "Oscar de la Renta": "de la" stays
            return word
        if word.lower() in name_lists()[0]:
            return self._draw("PERSON", word, lambda fake: fake.first_name())
        return self._draw("PERSON", word, lambda fake: fake.last_name())


def _date_format(value: str) -> str:
    """How `value` writes a date; for a date in no known format, 05/22/1975."""
    for form in DATE_FORMATS:
        try:
            datetime.strptime(value.strip(), form)
        except ValueError:
            continue
        return form
    return DATE_FORMATS[0]


def _same_shape(fake: Faker, value: str) -> str:
    """An identifier of the same shape: each digit and letter drawn anew, separators kept (an account number
    "0012-345678" becomes "4821-093317", not "je228242")."""
    return "".join(str(fake.random_digit()) if c.isdigit()
                   else fake.random_uppercase_letter() if c.isupper()
                   else fake.random_lowercase_letter() if c.islower() else c for c in value)


def _keep_case(original: str, replacement: str) -> str:
    if original.isupper() and len(original) > 1:
        return replacement.upper()
    if original.islower():
        return replacement.lower()
    return replacement
