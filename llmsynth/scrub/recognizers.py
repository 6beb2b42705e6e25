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

# ASCII and the Latin supplements and extensions: "Acuña", "Müller", "Perković", "Šťastná", "Miłosław"
_LATIN = [chr(c) for c in range(0xC0, 0x250) if chr(c).isalpha()]
_UPPER = "A-Z" + "".join(c for c in _LATIN if c.isupper())
_LOWER = "a-z" + "".join(c for c in _LATIN if c.islower())
_CAPITALIZED = rf"[{_UPPER}][{_LOWER}]+(?:['’-][{_UPPER}{_LOWER}][{_LOWER}]+)?"
_INITIAL = r"[A-Z]\.?"
_MONTHS_AND_DAYS = {"january", "february", "march", "april", "may", "june", "july", "august", "september",
                    "october", "november", "december", "monday", "tuesday", "wednesday", "thursday", "friday",
                    "saturday", "sunday"}
# Given names that are also everyday words: a name only when a list surname follows.
_AMBIGUOUS_GIVEN_NAMES = {"bill", "chase", "christian", "crystal", "dawn", "destiny", "faith", "frank", "grace",
                          "hope", "hunter", "joy", "mark", "max", "miles", "page", "paris", "ray", "rich", "summer",
                          "will", "austin", "jordan", "dakota", "sterling", "angel", "autumn", "brandy", "misty",
                          "ruby", "jade", "amber", "april", "june", "heather", "holly", "olive", "penny", "lane",
                          "love"}
# Listed given names that, after "hey" or "thanks", address anyone ("hey buddy").
_TERMS_OF_ADDRESS = {"babe", "baby", "buddy", "mate", "doc", "captain", "chip", "bro", "dude", "honey", "darling",
                     "sweetie", "boss", "chief", "champ", "pal", "sunshine", "sugar", "king", "queen", "prince",
                     "princess"}
# Tags a word in a name never gets ("love snow", "martial arts", "brain hurt", "said jesus").
_NOT_IN_NAMES = {"VERB", "AUX", "ADJ", "ADV", "ADP", "DET", "PRON", "CCONJ", "SCONJ", "PART", "NUM", "INTJ"}
# Informal spellings that Webster's lacks but that are also listed names ("talk hella sht", "no mayo", "ima go").
_INFORMAL_WORDS = {"hella", "neva", "telly", "mayo", "ima", "lil", "gurl", "bae"}
_ORGANIZATION_WORDS = {"bank", "inc", "llc", "ltd", "corp", "company", "co", "support", "team", "services", "service",
                       "insurance", "group", "department", "desk", "center", "centre", "credit", "union", "card"}
# A cue phrase outscores spaCy (0.85), so Presidio keeps its finding of the same name: "Mr Ehrlich" is backed by
# its title even where spaCy alone would be doubted (WordNet lists "ehrlich").
NAME_SCORE, CUE_SCORE, LONE_GIVEN_NAME_SCORE, VOCATIVE_SCORE, UNLISTED_NAME_SCORE = 0.7, 0.9, 0.5, 0.5, 0.6
# The words before a place ("moved to Denver"), which a person seldom follows.
PLACE_PREPOSITION = re.compile(r"\b(?i:in|at|to|from|near|around|outside|across|via|visit|visited|visiting)\s+$")
_LATIN_NAME = re.compile(rf"[{_UPPER}][{_LOWER}]{{2,}}(?:['-][{_UPPER}{_LOWER}][{_LOWER}]+)?")


@lru_cache(maxsize=1)
def common_words() -> frozenset[str]:
    """Everyday English words (lower case), which a capitalized word must not be to count as a name by itself."""
    from faker.providers.lorem.en_US import Provider as EnglishWords
    from spacy.lang.en.stop_words import STOP_WORDS

    return frozenset(STOP_WORDS | _MONTHS_AND_DAYS | _ORGANIZATION_WORDS | _INFORMAL_WORDS
                     | {w.lower() for w in EnglishWords.word_list})


@lru_cache(maxsize=1)
def dictionary_words() -> frozenset[str]:
    """The lower-case words of Webster's Second (english-words' web2, 210,000): a listed given name that is none of
    them ("cody", "charlene", not "rose" or "penny") is a name in whatever case and wherever the tagger puts it."""
    from english_words import get_english_words_set

    return frozenset(w for w in get_english_words_set(["web2"], lower=False, alpha=True) if w.islower())


def english_word(word: str) -> bool:
    """`word` (lower case) or the word it inflects is in the dictionary, which lists no plurals ("ants", "ties") and
    no dropped g ("sayin")."""
    words = dictionary_words()
    return (word in words or word + "g" in words or word.endswith("ies") and word[:-3] + "y" in words
            or any(word.endswith(ending) and word[:-len(ending)] in words for ending in ("s", "es", "ed", "d")))


@lru_cache(maxsize=1)
def name_lists() -> tuple[frozenset[str], frozenset[str]]:
    """Given names and surnames (lower case) from every Latin-script locale Faker ships, minus everyday English
    words: customers of a US bank are named Tuomo, Nayla and Frederiksen too."""
    import importlib
    import pkgutil

    import faker.providers.person as people

    given, surnames = set(), set()
    for locale in pkgutil.iter_modules(people.__path__):
        provider = importlib.import_module(f"{people.__name__}.{locale.name}").Provider
        for attribute, found in (("first_names", given), ("first_names_male", given),
                                 ("first_names_female", given), ("last_names", surnames)):
            names = getattr(provider, attribute, ())
            found.update(n.lower() for n in (names if isinstance(names, (list, tuple, dict)) else ())
                         if isinstance(n, str) and _LATIN_NAME.fullmatch(n))
    return frozenset(given - common_words()), frozenset(surnames - common_words())


@lru_cache(maxsize=1)
def gazetteer() -> frozenset[str]:
    """Cities, countries, states and provinces (lower case) from every locale Faker ships."""
    import importlib
    import pkgutil

    import faker.providers.address as addresses

    places = set()
    for locale in pkgutil.iter_modules(addresses.__path__):
        provider = importlib.import_module(f"{addresses.__name__}.{locale.name}").Provider
        for attribute in ("cities", "city_names", "real_city_names", "countries", "states", "provinces"):
            places.update(p.lower() for p in getattr(provider, attribute, ()) if isinstance(p, str))
    return frozenset(places)


@lru_cache(maxsize=1)
def place_names() -> frozenset[str]:
    """The gazetteer's places that are no given name or surname: they tell "Rotterdam" or "Warszawa" from a person
    where spaCy alone calls them one."""
    given, surnames = name_lists()
    return gazetteer() - given - surnames


# A comma or "and" between the names of a list: "Kleist and Arnold", "Floyd, Hernandez and White", "sarah , jo".
_COORDINATION = r"(?:[ \t]*,[ \t]*(?P<also>and[ \t]+)?|[ \t]+(?P<and>and|&|&amp;)[ \t]+)"
# The word after or before a name in a list; in lower case where the name is ("mariaelena , sarah , and brittany").
_LISTED = {case: (re.compile(rf"{_COORDINATION}(?P<name>{word})\b(?!['’]t\b)"),
                  re.compile(rf"(?<![\w@#])(?P<name>{word}){_COORDINATION}$"))
           for case, word in ((False, _CAPITALIZED), (True, rf"[{_LOWER}]{{3,}}"))}
# After a name in a list, what makes it a street or a company: "Jennifer and Dunajska 56", "Walker & Dunlop Inc."
_NO_PERSON_AFTER = re.compile(r"[ \t]+(?:\d|(?i:inc|ltd|llc|corp|co|company|plc|ag|sa|gmbh|group)\b)")
_CAPITALIZED_AFTER = re.compile(r"[ \t]+[A-Z]")  # "Lindis Pass and Arthurs Pass", "Latin Music And More"


@lru_cache(maxsize=1)
def _unambiguous_names() -> frozenset[str]:
    given, surnames = name_lists()
    return (given | surnames) - _AMBIGUOUS_GIVEN_NAMES


def coordinated_names(text: str, people: list[tuple[int, int]]) -> list[tuple[int, int]]:
    """The names listed with a person found ("Nadal and Novak", "Egede, Curry and Rodriguez", "sarah , and brittany"):
    a word joined to a person by a comma or "and" is a name where the lists know it; a word they do not know must be
    no English word, alone, and joined by "and" or to a person already in a list of names ("Levin , Hien" is not
    enough); never a place, an everyday word, a street or a company ("Paris", "Dunajska 56", "Dunlop Inc.")."""
    known = _unambiguous_names()
    names = set(people)

    def neighbours(start: int, end: int) -> list[re.Match]:
        after, before = _LISTED[text[start:end].islower()]
        return [m for m in (after.match(text, end), before.search(text, max(0, start - 64), start)) if m]

    pending = list(people)
    while pending:
        beside = neighbours(*pending.pop())
        in_a_list = any(m.span("name") in names for m in beside)
        for match in beside:
            word, after = match.group("name").lower(), match.end("name")
            if (match.span("name") in names or word in common_words() or word in gazetteer()
                    or _NO_PERSON_AFTER.match(text, after) or match.group("name").islower() and english_word(word)
                    or word not in known and (english_word(word) or _CAPITALIZED_AFTER.match(text, after)
                                              or not (match.group("and") or match.group("also") or in_a_list))):
                continue
            names.add(match.span("name"))
            pending.append(match.span("name"))
    return sorted(names - set(people))


def _tagged(nlp_artifacts, tags: set[str]) -> set[int]:
    """Where the words the tagger gave one of `tags` start (none without a tagger)."""
    return {token.idx for token in getattr(nlp_artifacts, "tokens", None) or () if token.pos_ in tags}


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
    """A capitalized given name from the list, with the capitalized surname and middle initial after it; or an
    unlisted first word, tagged a proper noun, that a middle initial or a listed surname marks as a name ("Teake R
    Tuininga", not "Yesterday Dubois"). A listed given name alone that the tagger reads as a common word is none
    ("Loan account 0012..." starts a sentence with a noun, not the Vietnamese name)."""

    # The words after the first are looked at ahead, not consumed: "Call Daniel Fischer" and "With Kirsten" are
    # candidates at "Call" and "With", which are no names, and again at "Daniel" and "Kirsten".
    _CANDIDATE = re.compile(rf"\b({_CAPITALIZED})(?=(?:[ \t]+({_INITIAL}))?(?:[ \t]+({_CAPITALIZED}))?\b(?!['’]t\b))")
    # Overlapping pairs ("IS MARIA", "MARIA ROSSI"): the second word is looked at ahead, not consumed.
    _UNCASED = re.compile(rf"(?<![\w@])(?:([{_LOWER}]{{2,}})(?=[ \t]+([{_LOWER}]{{2,}})\b)"
                          rf"|([{_UPPER}]{{2,}})(?=[ \t]+([{_UPPER}]{{2,}})\b))\b")

    def __init__(self):
        super().__init__("PERSON")

    def analyze(self, text, entities, nlp_artifacts=None):
        given, surnames = name_lists()
        proper_nouns = _tagged(nlp_artifacts, {"PROPN"})  # none without a tagger
        entities = {token.idx: token.ent_type_ for token in getattr(nlp_artifacts, "tokens", None) or ()
                    if token.ent_type_}  # what spaCy's NER calls each word it names
        named_otherwise = {i for i, kind in entities.items() if kind != "PERSON"}  # a language, a company...
        places_named = {i for i, kind in entities.items() if kind in ("GPE", "LOC")}
        known_places = gazetteer()
        common_use = _tagged(nlp_artifacts, {"NOUN", "VERB", "ADJ", "ADV"})
        results: list[RecognizerResult] = []
        for match in self._CANDIDATE.finditer(text):
            first, middle, last = (group and group.lower() for group in match.groups())
            if results and match.start() < results[-1].end:
                continue  # a word of the name found before
            if first not in given:
                if (last and (middle or last in surnames) and match.start() in proper_nouns
                        and not {first, last} & common_words()):
                    results.append(self._result(match.start(), match.end(3), UNLISTED_NAME_SCORE))
                elif (not last and first in surnames and match.start() in proper_nouns - named_otherwise
                      and first not in known_places):  # "Schröder began writing", not "studying English"
                    results.append(self._result(match.start(1), match.end(1), LONE_GIVEN_NAME_SCORE))
            elif last and (last in surnames or first not in _AMBIGUOUS_GIVEN_NAMES):
                results.append(self._result(match.start(), match.end(3), NAME_SCORE))
            elif (first not in _AMBIGUOUS_GIVEN_NAMES
                  and (match.start() not in common_use  # "Charlene ; it's weird": no English word, whatever the tag
                       or not english_word(first) and match.start() not in named_otherwise)
                  and not (match.start() in places_named  # spaCy's place, known or after "in": "to Denver"
                           and (first in known_places or PLACE_PREPOSITION.search(text, 0, match.start())))):
                results.append(self._result(match.start(1), match.end(1), LONE_GIVEN_NAME_SCORE))
        return results + self._uncased(text, nlp_artifacts, given, surnames)

    def _uncased(self, text: str, nlp_artifacts, given: frozenset[str],
                 surnames: frozenset[str]) -> list[RecognizerResult]:
        """A full name in lower case or capitals, as informal text writes it ("maria rossi", "MARIA ROSSI"): a
        listed given name and surname, neither an everyday word nor tagged as no name takes it (needs the tagger);
        a listed given name alone, in capitals where the tagger calls it a proper noun, in lower case also where it
        is no English word ("we got cody 's ipod", tagged a noun; not "a rose")."""
        if not any(token.pos_ for token in getattr(nlp_artifacts, "tokens", None) or ()):
            return []
        not_names = _tagged(nlp_artifacts, _NOT_IN_NAMES)
        results = []
        for match in self._UNCASED.finditer(text):
            groups = (1, 2) if match.group(1) else (3, 4)
            first, last = (match.group(g).lower() for g in groups)
            if (first in given and first not in _AMBIGUOUS_GIVEN_NAMES and last in surnames
                    and not {first, last} & common_words() and not {match.start(g) for g in groups} & not_names):
                results.append(self._result(match.start(), match.end(groups[1]), NAME_SCORE))
        places = gazetteer()  # "texas", "china": places, though also given names
        for token in nlp_artifacts.tokens:  # "we got cody's ipod", "RACHELLE im gonna"
            word = token.text.lower()
            if (len(word) >= 4 and word in given and word not in _AMBIGUOUS_GIVEN_NAMES
                    and word not in _TERMS_OF_ADDRESS and word not in places and word not in common_words()
                    and (token.pos_ == "PROPN" and token.text.isupper()
                         or token.text.islower() and (token.pos_ == "PROPN" or not english_word(word)))):
                end = token.idx + len(token.text)
                following = token.nbor() if token.i + 1 < len(token.doc) else None  # "justin bieber", "emily rodriguez"
                if (following is not None and following.text.isalpha()
                        and (following.pos_ == "PROPN"  # in capitals the tagger guesses: "SCOTT WEILAND"
                             or (following.lower_ in surnames or following.text.isupper())
                             and not english_word(following.lower_))
                        and following.text.islower() == token.text.islower()
                        and following.lower_ not in common_words()):
                    end = following.idx + len(following.text)
                results.append(self._result(token.idx, end, LONE_GIVEN_NAME_SCORE))
        return results


class CuePhraseRecognizer(_TextRecognizer):
    """Names announced by the words before them: "my name is …", "this is …", "thanks, …", "Mrs. …"."""

    _NAME = rf"{_CAPITALIZED}(?:[ \t]+{_INITIAL})?(?:[ \t]+{_CAPITALIZED}){{0,2}}"
    _CUES = re.compile(
        r"(?i:\b(?:my name is|my name's|name is|name:|name\?|this is|i am|i'm|call me|calls me|called|speaking with|you're talking to"
        r"|thanks|thank you|thx|hi|hello|hey|dear|regards|cheers|sincerely|best|signed)),?[ \t]*\n?[ \t]*"
        rf"(?P<name>{_NAME})\b"
        rf"|\b(?i:Mr|Mrs|Ms|Miss|Dr|Prof)\.?\s+(?P<titled>{_NAME})\b"
    )
    _DAY = re.compile(r"\s*\d")  # "this is August 5": a date, not August
    _LOWER_CASE_NAME = re.compile(r"(?i:\bmy name is)\s+(?P<name>[a-z]+(?:\s+[a-z]+)?)\b")
    # Weaker cues before a name in lower case ("hey maria", "i'm jonas"): the list must know it as a given name.
    _LOWER_CASE_GIVEN = re.compile(r"(?i:\b(?:this is|i'm|im|i am|call me|thanks|thank you|thx|hi|hey|hello|dear"
                                   r"|bye)),?[ \t]+(?P<name>[a-z]{3,})\b")
    # Someone with the writer or whose birthday it is ("me and pete", "happy birthday florence"): a listed given name
    # whatever the tagger makes of it, as long as it is no everyday word.
    _COMPANION = re.compile(r"(?i:\b(?:me and|birthday|bday|b-day))[ \t]+(?P<name>[a-z]{3,})\b")
    # Family and friends named after the word for them ("my son dakota", "my wife Grace"): a listed name even where it
    # is also an everyday word, unless the tagger reads no name there ("my son will call", "my wife just").
    _KIN = re.compile(r"(?i:\bmy[ \t]+(?:wife|husband|son|daughter|mom|mum|mother|dad|father|brother|sister|partner"
                      r"|friend|boyfriend|girlfriend|bf|gf|fianc[eé]e?|grandson|granddaughter|niece|nephew|cousin))"
                      r"[ \t]+(?P<name>[^\W\d_]{3,})\b")
    # Who said or was told something, or whose age is told ("says Dolgorukova.", "said Maika to Chloe", "3 year old
    # Penny"), unless a place ("says Ohio State").
    _REPORTED = re.compile(rf"(?:\b(?:said|says|asked|asks|told|tells|replied|replies)|\b\d{{1,3}}[ -]years?[ -]old)"
                           rf"[ \t]+(?P<name>{_NAME})\b")

    def __init__(self):
        super().__init__("PERSON")

    def analyze(self, text, entities, nlp_artifacts=None):
        from spacy.lang.en.stop_words import STOP_WORDS

        given, surnames = name_lists()
        results = []
        for match in self._CUES.finditer(text):
            group = "titled" if match.groupdict().get("titled") else "name"
            words = match.group(group).lower().split()
            date = words[0] in _MONTHS_AND_DAYS and self._DAY.match(text, match.end())
            if words[0] not in STOP_WORDS and not date and words[-1] not in _ORGANIZATION_WORDS:
                results.append(self._result(match.start(group), match.end(group), CUE_SCORE))
        for match in self._LOWER_CASE_NAME.finditer(text):  # "my name is john smith", when the list knows them
            words = match.group("name").split()
            known = [w for w in words if w in given or w in surnames]
            if known and words[0] in known:
                end = match.start("name") + len(" ".join(words[:len(known)]))
                results.append(self._result(match.start("name"), end, CUE_SCORE))
        not_names = _tagged(nlp_artifacts, _NOT_IN_NAMES)
        for match in self._REPORTED.finditer(text):  # "a 19-year-old Syrian woman": the tagger's adjective
            words = match.group("name").lower().split()
            if (words[0] not in common_words() and words[0] not in place_names()
                    and match.start("name") not in not_names):
                results.append(self._result(match.start("name"), match.end("name"), CUE_SCORE))
        for match in self._KIN.finditer(text):
            name = match.group("name").lower()
            if (name in given or name in surnames) and match.start("name") not in not_names:
                results.append(self._result(match.start("name"), match.end("name"), CUE_SCORE))
        for pattern, tags_matter in ((self._LOWER_CASE_GIVEN, True), (self._COMPANION, False)):
            for match in pattern.finditer(text):  # "i'm lucky": the tagger's adjective is no name
                name = match.group("name")
                if (name in given and name not in _AMBIGUOUS_GIVEN_NAMES | _TERMS_OF_ADDRESS
                        and name not in common_words() and not (tags_matter and match.start("name") in not_names)):
                    results.append(self._result(match.start("name"), match.end("name"), VOCATIVE_SCORE))
        return results


class VocativeRecognizer(_TextRecognizer):
    """The person addressed at the end of a clause ("Glad I could help, Gülten.") or first ("Nobuto, can I ...").
    Weak evidence (a list of places or genres looks the same), so its findings are checked like spaCy's against the
    dictionary and the places."""

    _VOCATIVE = re.compile(rf"(?<=\w, )(?P<name>{_CAPITALIZED}(?:[ \t]+{_CAPITALIZED})?)(?=[.!?,;:])"
                           rf"|^[ \t]*(?P<opening>{_CAPITALIZED}),[ \t]+(?=(?:can|could|would|will|please|I|we|you)\b)",
                           re.MULTILINE)

    def __init__(self):
        super().__init__("PERSON")

    def analyze(self, text, entities, nlp_artifacts=None):
        from spacy.lang.en.stop_words import STOP_WORDS

        results = []
        for match in self._VOCATIVE.finditer(text):
            group = "name" if match.group("name") else "opening"
            words = match.group(group).lower().split()
            if words[0] not in STOP_WORDS and words[0] not in _MONTHS_AND_DAYS and words[-1] not in _ORGANIZATION_WORDS:
                results.append(self._result(match.start(group), match.end(group), VOCATIVE_SCORE))
        return results


class SpeakerRecognizer(_TextRecognizer):
    """A speaker's name that opens a line of a transcript: "Yakha: Who are you?", 'Thilda:"I'm here"'. Weak evidence
    ("Note: Call back" looks the same), so its findings are checked like spaCy's against the dictionary."""

    _SPEAKER = re.compile(rf"^[ \t]*(?P<name>{_CAPITALIZED}(?:[ \t]+{_CAPITALIZED})?)[ \t]*:"
                          rf"(?=[ \t]*[\"“]|[ \t]+[^\W\d_])", re.MULTILINE)

    def __init__(self):
        from spacy.lang.en.stop_words import STOP_WORDS

        super().__init__("PERSON")
        self._no_name_words = STOP_WORDS | _MONTHS_AND_DAYS | _ORGANIZATION_WORDS

    def analyze(self, text, entities, nlp_artifacts=None):
        return [self._result(m.start("name"), m.end("name"), VOCATIVE_SCORE) for m in self._SPEAKER.finditer(text)
                if self._no_name_words.isdisjoint(m.group("name").lower().split())]


class StreetAddressRecognizer(_TextRecognizer):
    """A street address as written in the US ("4821 Oak Ridge Road Apt. 5") and in Europe: a street word before
    the name ("Via Tasso 21", "7 rue des Lacs", "ul. Grabowa 112"), a street ending on the name
    ("Riedbergstrasse 8", "Søndergade 87", "Tompa u. 49.") or after it ("Kieler Strasse 90"), and post office boxes.
    Street names are often people's names ("Rua Vasco Gama", "Greco Circles"): finding the whole address keeps them
    from counting as a person. A name and a street suffix without a number count only where the suffix is neither a
    name nor an everyday word ("Erik Valleys", not "Jane Park" or "Jennifer Green")."""

    _STREET_WORDS = ("Via|Viale|Piazza|Piazzale|Corso|Largo|Vicolo|Rua|Rúa|Avenida|Av|Avda|Travessa|Estrada|Praça|Calle|"
                     "Plaza|Paseo|Carrer|Camino|Rue|Avenue|Boulevard|Bd|Chemin|Place|Allée|Impasse|Quai|Route|Ul|Ulica|"
                     "Al|Aleja|Trg|Cesta|Odos|Leoforos|R")
    # Not "ring", "tie" or "tee": "Spring 2024", "Committee 3".
    _STREET_ENDINGS = ("strasse|straße|str|gasse|weg|allee|platz|damm|ufer|gade|vej|veien|vegen|vei|vägen|"
                       "gatan|gata|stigen|stræde|straat|laan|dreef|plein|kade|gracht|singel|katu|kuja|"
                       "iela|gatve|utca")
    _STREET_WORDS_AFTER = (r"u\.|út|utca|tér|sokak|cad\.|"
                           r"(?i:straße|strasse|str\.|allee|weg|gasse|platz|damm|veg|vei|vej|gate|gata|gatan|straat|laan)")

    def __init__(self, dictionary: frozenset[str] = frozenset()):
        from faker.providers.address.en_US import Provider

        super().__init__("ADDRESS")
        self._dictionary = dictionary  # English words ("Gate 12", "Chapter 5" are no streets)
        given_names, surnames = name_lists()
        self._names = given_names | surnames
        plain = self._names | common_words()  # "Jane Park", "Jennifer Green"
        alone = sorted({s for s in Provider.street_suffixes if s.lower() not in plain} | {"Street", "Road", "Drive"},
                       key=len, reverse=True)
        self._named_street = re.compile(rf"\b({_CAPITALIZED})\s+(?:{'|'.join(alone)})\b")
        suffixes = sorted(set(Provider.street_suffixes) | {"St", "Ave", "Rd", "Blvd", "Ln", "Dr", "Ct", "Pl", "Hwy",
                                                             "Pkwy", "Cir", "Ter", "Sq", "Way"}, key=len, reverse=True)
        word = rf"(?:{_CAPITALIZED}|[{_LOWER}]{{1,4}}|\d{{1,2}}\.?)"  # "rue des Lacs", "Trg revolucije", "Via 4 Novembre"
        name = rf"{_CAPITALIZED}(?:\s+{_CAPITALIZED}){{0,2}}"
        house = r"\d{1,5}(?:\s?[a-zA-Z]\b)?\.?"
        street = rf"(?i:{self._STREET_WORDS})\.?"
        self._patterns = [re.compile(pattern) for pattern in (
            rf"\b\d{{1,6}}\s+(?:[NSEW]\.?\s+)?(?:{_CAPITALIZED}\s+){{1,3}}(?:{'|'.join(suffixes)})\b\.?"
            r"(?:,?\s+(?:Apt\.?|Apartment|Suite|Ste\.?|Unit|#)\s*[\dA-Z]+\b)?",
            rf"\b{street}\s+(?:{word}\s+){{0,3}}{_CAPITALIZED}\s+{house}",  # Via Tasso 21, ul. Grabowa 112
            rf"\b\d{{1,5}},?\s+{street}\s+(?:{word}\s+){{0,3}}{_CAPITALIZED}\b",  # 7 rue des Lacs
            rf"\b[{_UPPER}][{_LOWER}]*(?:{self._STREET_ENDINGS})\b\.?\s+{house}",  # Riedbergstrasse 8
            rf"\b{name}\s+(?:{self._STREET_WORDS_AFTER})\s+{house}",  # Tompa u. 49., Kieler Strasse 90
            # Alvaro Cunqueiro 55 Apt. 440: on one line (a name above an address is no street)
            rf"\b{_CAPITALIZED}(?:[ \t]+{_CAPITALIZED}){{0,2}}[ \t]+{house}(?:,?[ \t]+|[ \t]*\n[ \t]*)"
            r"(?:Apt\.?|Apartment|Suite|Ste\.?|Unit)[ \t]*\d+\b",
            r"\b(?i:P\.?\s?O\.?\s+Box|Postfach|Apartado|Casilla)\s+\d{1,6}\b",
            # US military mail: "PSC 3412, Box 5242", "Unit 3848 Box 3726", "USS Lindqvist", then "APO AA 29282"
            rf"\b(?:(?:PSC|CMR|Unit)\s+\d{{3,5}},?\s+Box\s+\d{{3,5}}|(?:USNS|USNV|USS|USCGC)\s+{_CAPITALIZED})"
            rf"(?:,?\s+[ADF]PO\s+A[AEP]\s+\d{{5}})?",
            r"\b[ADF]PO\s+A[AEP]\s+\d{5}\b",
        )]
        place_word = rf"(?:{_CAPITALIZED}|[{_UPPER}]{{2,}})"
        postcode = r"\d{4,6}(?:-\d{4})?(?![ \t]*\d|-\d)"  # not the start of a phone number on the next line
        place = (rf"{place_word}(?:[ \t-]+(?:{place_word}|de|del|la|di|am|an|der|sur|nan)){{0,3}}"
                 rf"(?:,?[ \t]+[{_UPPER}]{{2}}\b)?(?:[ \t]+{postcode})?")
        unit = r"(?:Apt\.?|Apartment|Suite|Ste\.?|Unit|#)[ \t]*[\dA-Z]+\b"
        # What follows a street, one part per comma or line: unit, town, region, country, postcode ("Apt. 440\n
        # Sevilla\n Spain 19595", ", PARIS", "\nNicosia, NI 86465"): the address is found whole, not its first line.
        # "\n, FL\n United States 81788": a region line may start with its comma; "Apt. 046 Suite 158": units follow
        # one another on a line.
        self._tail_part = re.compile(rf"(,[ \t]*|[ \t]*\n[ \t]*,?[ \t]*)({unit}|{place}|{postcode})|([ \t]+)({unit})")
        self._given_names = given_names
        self._after_unit = re.compile(rf"[ \t]+{place}")  # on the unit's line: "Apt. 175 Egkomi NI"
        self._unit_end = re.compile(rf"{unit}$")
        # A street name and its number with no street word ("Castelao 66", "Skogarlond 53"), after a house number or
        # where an address is announced ("lives on", "is at", "sent to"), and not a count ("to Madrid 3 times").
        self._name_then_number = re.compile(
            rf"(?:\b\d{{1,6}}[ \t]+|\b(?i:on|at|to|of|in|address(?: is)?:?)[ \t]+)"
            rf"(?P<street>{_CAPITALIZED}(?:[ \t]+(?:{_CAPITALIZED}|[{_LOWER}]{{2,9}})){{0,2}})[ \t]+{house}"
            r"(?![ \t]*(?:%|[\d,:/-]|(?i:times|days|weeks|months|years|hours|minutes|percent|pm|am)\b))")
        self._lead = re.compile(r"\d{1,6}[ \t]+$")  # a number before the street: "1222 4146 Port ...", "307 Alvaro ..."
        self._corner = re.compile(r"(?i:\bcorner of)[ \t]+$")  # "the corner of Feldstrasse 61 and Marušić Brook"
        self._other_street = re.compile(rf"[ \t]+and[ \t]+{_CAPITALIZED}(?:[ \t]+{_CAPITALIZED}){{0,2}}")

    def analyze(self, text, entities, nlp_artifacts=None):
        found = [m.span() for pattern in self._patterns for m in pattern.finditer(text)]
        found += [m.span() for m in self._named_street.finditer(text) if m.group(1).lower() in self._names]
        found += [(m.start("street"), m.end()) for m in self._name_then_number.finditer(text) if self._street_name(m)]
        merged: list[list[int]] = []  # overlapping findings are parts of one address ("Rúa Olmos 55" + its tail)
        for start, end in sorted(self._whole(text, start, end) for start, end in found):
            if merged and start <= merged[-1][1]:
                merged[-1][1] = max(merged[-1][1], end)
            else:
                merged.append([start, end])
        return [self._result(start, end, NAME_SCORE) for start, end in merged]

    def _street_name(self, match: re.Match) -> bool:
        """The words before the number name a street only if none is an English word or a place and they are not a
        given name alone ("Windows 10", "Gate 12", "Berlin 2024", "Maria 5")."""
        words = match.group("street").lower().split()
        return not (any(w in common_words() or w in self._dictionary or w in place_names() for w in words)
                    or (len(words) == 1 and words[0] in self._given_names))

    def _whole(self, text: str, start: int, end: int) -> tuple[int, int]:
        """The finding with the number before its house number and the lines or comma parts after it."""
        lead = self._lead.search(text, 0, start)
        if self._corner.search(text, 0, (lead.start() if lead else start)) and (
                other := self._other_street.match(text, end)):
            end = other.end()
        if self._unit_end.search(text, start, end) and (same_line := self._after_unit.match(text, end)):
            end = same_line.end()
        for _ in range(6):
            part = self._tail_part.match(text, end)
            if part is None or (part.group(1) and part.group(1).startswith(",")
                                and part.group(2).lower() in self._given_names):
                break  # "Your address is now 337 Bruce Club, Ottomar.": the person addressed, not a town
            end = part.end()
        return (lead.start() if lead else start), end


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
                "office", "registered", "whatsapp", "dial", "message", "sms"]
_NUMBER = r"\b(?:[A-Z]{1,4}-?)?\d{6,14}\b"
# "bear" because the context words are compared with spaCy's lemmas, and the lemma of "born" is "bear".
_DATE = (r"\b(?:\d{1,2}[/.-]\d{1,2}[/.-](?:19|20)?\d{2}|(?:19|20)\d{2}-\d{2}-\d{2}"
         r"|(?:jan|feb|mar|apr|may|jun|jul|aug|sep|sept|oct|nov|dec)[a-z]*\.? \d{1,2}(?:st|nd|rd|th)?,? (?:19|20)\d{2}"
         r"|\d{1,2}(?:st|nd|rd|th)? (?:jan|feb|mar|apr|may|jun|jul|aug|sep|sept|oct|nov|dec)[a-z]*,? (?:19|20)\d{2})\b")
DEFAULT_RECOGNIZERS = [
    # Presidio's phone recognizer checks numbering-plan validity; a written-down number need not be valid to be PII.
    RegexRecognizer(entity="PHONE_NUMBER", patterns=[r"(?<![\w.])(?:\+?1[-. ]?)?\(?\d{3}\)?[-. ]?\d{3}[-. ]\d{4}"
                                                     r"(?:[ ]?(?:x|ext\.?)[ ]?\d{1,5})?(?!\w)"],
                    context=_PHONE_WORDS, score=0.4),
    # Other countries' numbers as people write them: groups of digits ("218-1180057", "+33 1 42 68 53 00") or one run
    # of 7-12 ("2181180057"), found only next to a phone word.
    RegexRecognizer(entity="PHONE_NUMBER", patterns=[r"(?<![\w.+-])(?!\d{4}-\d\d-\d\d|\d\d?[./-]\d\d?[./-]\d{2,4}(?![\d.-]))(?:\+\d{1,3}[ .-]?)?(?:\(0?\d{1,5}\)[ .-]?)?\d{2,5}"
                                                     r"(?:[ .-]\d{2,7}){1,4}(?!\w|-\d)",
                                                     r"(?<![\w.+-])\+?\d{7,12}(?![\w-])"],
                    context=_PHONE_WORDS, score=0.1),
    # Handles in chats and posts ("@paulwalk"), not e-mail addresses.
    RegexRecognizer(entity="USERNAME", patterns=[r"(?<![\w.@])@[A-Za-z0-9_]{2,30}\b(?!\.\w|@)"], score=0.5),
    RegexRecognizer(entity="ACCOUNT_NUMBER", patterns=[_NUMBER], context=["account", "acct", "a/c", "loan"],
                    score=0.1),
    RegexRecognizer(entity="POLICY_NUMBER", patterns=[_NUMBER], context=["policy"], score=0.1),
    RegexRecognizer(entity="MEMBER_ID", patterns=[_NUMBER], context=["member", "membership"], score=0.1),
    RegexRecognizer(entity="ORDER_NUMBER", patterns=[_NUMBER], context=["order", "reference", "ref", "ticket",
                                                                         "confirmation", "claim"], score=0.1),
    RegexRecognizer(entity="DATE_OF_BIRTH", patterns=[_DATE], context=["born", "bear", "birth", "dob", "d.o.b"],
                    score=0.1),
]
