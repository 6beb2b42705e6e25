"""Recognizers beyond Presidio's own: names from a name list and from cue phrases, street addresses, and the
user's regex recognizers with context words.

Presidio's pattern recognizers match case-insensitively; names and addresses are told apart from ordinary
words by their capitals, so those two are plain `EntityRecognizer`s with their own case-sensitive regexes.
"""

from __future__ import annotations

import re
from functools import lru_cache

from pydantic import BaseModel, ConfigDict, Field, field_validator
from presidio_analyzer import EntityRecognizer, Pattern, PatternRecognizer, RecognizerResult

_UPPER, _LOWER = "A-ZÀ-ÖØ-Þ", "a-zß-öø-ÿ"  # ASCII and Latin-1 letters: "Acuña", "Müller", "Dubois"
_CAPITALIZED = rf"[{_UPPER}][{_LOWER}]+(?:['’-][{_UPPER}{_LOWER}][{_LOWER}]+)?"
_INITIAL = r"[A-Z]\.?"
_MONTHS_AND_DAYS = {"january", "february", "march", "april", "may", "june", "july", "august", "september",
                    "october", "november", "december", "monday", "tuesday", "wednesday", "thursday", "friday",
                    "saturday", "sunday"}
# Given names that are also everyday words: a name only when a list surname follows.
_AMBIGUOUS_GIVEN_NAMES = {"bill", "chase", "christian", "crystal", "dawn", "destiny", "faith", "frank", "grace",
                          "hope", "hunter", "joy", "mark", "max", "miles", "page", "paris", "ray", "rich", "summer",
                          "will", "austin", "jordan", "dakota", "sterling", "angel", "autumn", "brandy", "misty",
                          "ruby", "jade", "amber", "april", "june", "heather", "holly", "olive", "penny", "lane"}
_ORGANIZATION_WORDS = {"bank", "inc", "llc", "ltd", "corp", "company", "co", "support", "team", "services", "service",
                       "insurance", "group", "department", "desk", "center", "centre", "credit", "union", "card"}
NAME_SCORE, CUE_SCORE, LONE_GIVEN_NAME_SCORE, VOCATIVE_SCORE = 0.7, 0.85, 0.5, 0.5


@lru_cache(maxsize=1)
def name_lists() -> tuple[frozenset[str], frozenset[str]]:
    """Given names and surnames (lower case) from Faker's en_US lists, minus everyday words."""
    from faker.providers.person.en_US import Provider
    from spacy.lang.en.stop_words import STOP_WORDS

    common = STOP_WORDS | _MONTHS_AND_DAYS
    given = frozenset(n.lower() for n in Provider.first_names) - common
    surnames = frozenset(n.lower() for n in Provider.last_names) - common
    return given, surnames


class _TextRecognizer(EntityRecognizer):
    """One entity found by our own code; results carry the ids Presidio's context enhancer looks for."""

    def __init__(self, entity: str):
        super().__init__(supported_entities=[entity], name=type(self).__name__)

    def load(self) -> None:
        pass

    def _result(self, start: int, end: int, score: float) -> RecognizerResult:
        return RecognizerResult(self.supported_entities[0], start, end, score,
                                recognition_metadata={RecognizerResult.RECOGNIZER_NAME_KEY: self.name,
                                                      RecognizerResult.RECOGNIZER_IDENTIFIER_KEY: self.id})


class NameListRecognizer(_TextRecognizer):
    """A capitalized given name from the list, with the capitalized surname and middle initial after it."""

    _CANDIDATE = re.compile(rf"\b({_CAPITALIZED})(?:[ \t]+({_INITIAL}))?(?:[ \t]+({_CAPITALIZED}))?\b")

    def __init__(self):
        super().__init__("PERSON")

    def analyze(self, text, entities, nlp_artifacts=None):
        given, surnames = name_lists()
        results = []
        for match in self._CANDIDATE.finditer(text):
            first, middle, last = match.group(1), match.group(2), match.group(3)
            if first.lower() not in given:
                continue
            if last and (last.lower() in surnames or first.lower() not in _AMBIGUOUS_GIVEN_NAMES):
                results.append(self._result(match.start(), match.end(), NAME_SCORE))
            elif first.lower() not in _AMBIGUOUS_GIVEN_NAMES:
                results.append(self._result(match.start(1), match.end(1), LONE_GIVEN_NAME_SCORE))
        return results


class CuePhraseRecognizer(_TextRecognizer):
    """Names announced by the words around them: "my name is …", "this is …", "thanks, …", "Mrs. …", and the
    person addressed: "Glad I could help, Gülten." """

    _NAME = rf"{_CAPITALIZED}(?:[ \t]+{_INITIAL})?(?:[ \t]+{_CAPITALIZED}){{0,2}}"
    _CUES = re.compile(
        r"(?i:\b(?:my name is|my name's|name is|name:|this is|i am|i'm|call me|speaking with|you're talking to"
        r"|thanks|thank you|thx|hi|hello|hey|dear|regards|cheers|sincerely|best|signed)),?[ \t]*\n?[ \t]*"
        rf"(?P<name>{_NAME})\b"
        rf"|\b(?i:Mr|Mrs|Ms|Miss|Dr|Prof)\.?\s+(?P<titled>{_NAME})\b"
    )
    _DAY = re.compile(r"\s*\d")  # "this is August 5": a date, not August
    _VOCATIVE = re.compile(rf"(?<=\w, )(?P<name>{_CAPITALIZED}(?:[ \t]+{_CAPITALIZED})?)(?=[.!?,;:])")
    _LOWER_CASE_NAME = re.compile(r"(?i:\bmy name is)\s+(?P<name>[a-z]+(?:\s+[a-z]+)?)\b")

    def __init__(self):
        super().__init__("PERSON")

    def analyze(self, text, entities, nlp_artifacts=None):
        from spacy.lang.en.stop_words import STOP_WORDS

        given, surnames = name_lists()
        results = []
        for pattern, score in ((self._CUES, CUE_SCORE), (self._VOCATIVE, VOCATIVE_SCORE)):
            for match in pattern.finditer(text):
                group = "titled" if match.groupdict().get("titled") else "name"
                words = match.group(group).lower().split()
                date = words[0] in _MONTHS_AND_DAYS and (pattern is self._VOCATIVE or self._DAY.match(text, match.end()))
                if words[0] not in STOP_WORDS and not date and words[-1] not in _ORGANIZATION_WORDS:
                    results.append(self._result(match.start(group), match.end(group), score))
        for match in self._LOWER_CASE_NAME.finditer(text):  # "my name is john smith", when the list knows them
            words = match.group("name").split()
            known = [w for w in words if w in given or w in surnames]
            if known and words[0] in known:
                end = match.start("name") + len(" ".join(words[:len(known)]))
                results.append(self._result(match.start("name"), end, CUE_SCORE))
        return results


class StreetAddressRecognizer(_TextRecognizer):
    """A US street address: number, capitalized street name, a street suffix, and an optional unit."""

    def __init__(self):
        from faker.providers.address.en_US import Provider

        super().__init__("ADDRESS")
        suffixes = sorted(set(Provider.street_suffixes) | {"St", "Ave", "Rd", "Blvd", "Ln", "Dr", "Ct", "Pl", "Hwy",
                                                             "Pkwy", "Cir", "Ter", "Sq", "Way"}, key=len, reverse=True)
        self._pattern = re.compile(
            rf"\b\d{{1,6}}\s+(?:[NSEW]\.?\s+)?(?:{_CAPITALIZED}\s+){{1,3}}(?:{'|'.join(suffixes)})\b\.?"
            r"(?:,?\s+(?:Apt\.?|Apartment|Suite|Ste\.?|Unit|#)\s*[\dA-Z]+\b)?"
        )

    def analyze(self, text, entities, nlp_artifacts=None):
        return [self._result(m.start(), m.end(), NAME_SCORE) for m in self._pattern.finditer(text)]


class RegexRecognizer(BaseModel):
    """A user's recognizer: regexes for one entity, and words that, within five words before a match, add 0.35
    to its score. A base score below the threshold makes the context words required."""

    model_config = ConfigDict(extra="forbid")

    entity: str = Field(pattern=r"^[A-Z][A-Z0-9_]*$", description="Entity name, e.g. POLICY_NUMBER.")
    patterns: list[str] = Field(min_length=1, description="Python regular expressions (matched ignoring case).")
    context: list[str] = Field(default_factory=list, description="Words that make a match likely.")
    score: float = Field(0.5, ge=0, le=1, description="Score of a match without context.")

    @field_validator("patterns")
    @classmethod
    def _compiles(cls, patterns: list[str]) -> list[str]:
        for pattern in patterns:
            try:
                re.compile(pattern)
            except re.error as exc:
                raise ValueError(f"invalid regular expression {pattern!r}: {exc}") from None
        return patterns

    def build(self) -> PatternRecognizer:
        return PatternRecognizer(
            supported_entity=self.entity, name=f"{self.entity}_regex",
            patterns=[Pattern(f"{self.entity}_{i}", p, self.score) for i, p in enumerate(self.patterns)],
            context=self.context)


_PHONE_WORDS = ["phone", "call", "text", "cell", "mobile", "number", "tel", "fax", "reach", "contact", "answer",
                "office", "registered", "whatsapp", "dial"]
_NUMBER = r"\b(?:[A-Z]{1,4}-?)?\d{6,14}\b"
# "bear" because the context words are compared with spaCy's lemmas, and the lemma of "born" is "bear".
_DATE = (r"\b(?:\d{1,2}[/.-]\d{1,2}[/.-](?:19|20)?\d{2}|(?:19|20)\d{2}-\d{2}-\d{2}"
         r"|(?:jan|feb|mar|apr|may|jun|jul|aug|sep|sept|oct|nov|dec)[a-z]*\.? \d{1,2}(?:st|nd|rd|th)?,? (?:19|20)\d{2}"
         r"|\d{1,2}(?:st|nd|rd|th)? (?:jan|feb|mar|apr|may|jun|jul|aug|sep|sept|oct|nov|dec)[a-z]*,? (?:19|20)\d{2})\b")
DEFAULT_RECOGNIZERS = [
    # Presidio's phone recognizer checks numbering-plan validity; a written-down number need not be valid to be PII.
    RegexRecognizer(entity="PHONE_NUMBER", patterns=[r"(?<![\w.])(?:\+?1[-. ]?)?\(?\d{3}\)?[-. ]?\d{3}[-. ]\d{4}(?!\w)"],
                    context=_PHONE_WORDS, score=0.4),
    # Other countries' numbers as people write them: groups of digits, found only next to a phone word.
    RegexRecognizer(entity="PHONE_NUMBER", patterns=[r"(?<![\w.+-])(?!\d{4}-\d\d-\d\d|\d\d?[./-]\d\d?[./-]\d{2,4}(?![\d.-]))(?:\+\d{1,3}[ .-]?)?(?:\(0?\d{1,5}\)[ .-]?)?\d{2,5}"
                                                     r"(?:[ .-]\d{2,5}){1,4}(?![\w-])"],
                    context=_PHONE_WORDS, score=0.1),
    RegexRecognizer(entity="ACCOUNT_NUMBER", patterns=[_NUMBER], context=["account", "acct", "a/c", "loan"],
                    score=0.1),
    RegexRecognizer(entity="POLICY_NUMBER", patterns=[_NUMBER], context=["policy"], score=0.1),
    RegexRecognizer(entity="MEMBER_ID", patterns=[_NUMBER], context=["member", "membership"], score=0.1),
    RegexRecognizer(entity="ORDER_NUMBER", patterns=[_NUMBER], context=["order", "reference", "ref", "ticket",
                                                                         "confirmation", "claim"], score=0.1),
    RegexRecognizer(entity="DATE_OF_BIRTH", patterns=[_DATE], context=["born", "bear", "birth", "dob", "d.o.b"],
                    score=0.1),
]
