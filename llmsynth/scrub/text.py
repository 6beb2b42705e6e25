"""Span scrubbing of free text: detect (Presidio, batched), add the values already known to be PII, replace."""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from llmsynth.scrub.engine import Analyzer, ScrubConfig
from llmsynth.scrub.pseudonyms import NAME_PARTICLES, TITLES, Pseudonymizer
from llmsynth.scrub.recognizers import (
    PLACE_PREPOSITION, NameListRecognizer, common_words, coordinated_names, english_word, gazetteer, name_lists,
    place_names,
)

MAX_PIECE_CHARS = 100_000  # spaCy refuses texts over 1,000,000 characters and slows down well before
MAX_EXAMPLES = 5
# Text exported through JSON or logs often holds line breaks as a backslash and a letter ("Name\\nPhone"), which
# glues words together for every recognizer; the analyzer sees a space and a real break instead (same length).
_ESCAPED_BREAK = re.compile(r"\\[nrt]")
_NAMED_ENTITIES = {"PERSON", "LOCATION"}  # spaCy sometimes tags a bare date as a person; names have letters
MIN_PHONE_DIGITS = 7  # Presidio's phone recognizer, with many regions, takes 5-digit zip codes for numbers
_GROUPED_SIX_DIGITS = re.compile(r"\d\d[ .-]\d\d[ .-]\d\d|\d{3}[ .-]\d{3}")  # a short local number: "33 66 18"
_DECIMAL = re.compile(r"\d+\.\d+")
# What Presidio's phone recognizer (many regions) also takes for a number: a date, a ZIP+4 code.
_DATE_OR_ZIP = re.compile(r"(?:19|20)\d\d-\d\d-\d\d|\d\d?[./-]\d\d?[./-](?:19|20)?\d\d|\d{5}-\d{4}")
_NAME_STOP = re.compile(r"\n|\\[nr]|[:\"“”|]")  # a line break, a colon, a quote mark or a bar ends a name
_PARTICLE_PATTERN = "|".join(sorted(NAME_PARTICLES, key=len, reverse=True))
# Words in lower case before a capitalized name ("ex-Zombie "), not its particles ("de la Cruz").
_LOWER_CASE_WORDS = re.compile(rf"(?:(?!(?:{_PARTICLE_PATTERN})\s)[a-z][\w'-]*\s+)+(?=[^\W\d_])")
_WORDS = re.compile(r"[^\W\d_]+")
_TOKENS = re.compile(r"\S+")
_GREETINGS = {"hi", "hey", "hello", "thanks", "thx", "dear", "rt", "lol", "omg", "ff", "yo", "congrats"}
_TIME_WORDS = {"tonight", "today", "tomorrow", "yesterday", "now"}
_PARTICLE_SURNAME = re.compile(rf"(?:[ \t]+(?:{_PARTICLE_PATTERN}))+[ \t]+[A-Z][^\W\d_]+(?:['-][^\W\d_]+)?")
_NAMES = NameListRecognizer()
_ME_AND = re.compile(r"(?i:\bme and)[ \t]+$")
_AND_ME = re.compile(r"[ \t]+and[ \t]+(?:I|me)\b")


@dataclass
class Findings:
    """What was found and replaced; raw values are kept only in memory unless the user asks for them."""

    counts: Counter = field(default_factory=Counter)
    examples: list[str] = field(default_factory=list)
    raw_values: set[tuple[str, str]] = field(default_factory=set)

    def merge(self, other: "Findings") -> None:
        self.counts.update(other.counts)
        self.examples += other.examples[: MAX_EXAMPLES - len(self.examples)]
        self.raw_values |= other.raw_values


def replacement(entity: str, value: str, config: ScrubConfig, pseudonyms: Pseudonymizer) -> str:
    """What a found value becomes, by the configured mode."""
    if config.mode == "tag":
        return f"<{entity}>"
    if config.mode == "redact":
        return ""
    return pseudonyms.surrogate(entity, value)


@dataclass(frozen=True)
class Span:
    start: int
    end: int
    entity_type: str


def detect(texts: Sequence[str], analyzer: Analyzer, config: ScrubConfig, progress: str | None = None,
           batch_size: int = 64) -> list[list[Span]]:
    """Presidio's findings for many texts in one spaCy pass; long texts are cut at whitespace into pieces. A
    person's name found once in a text is also found where the text repeats it or a word of it. `progress` is the
    label of a progress bar, or None for none."""
    from presidio_analyzer import BatchAnalyzerEngine
    from tqdm.auto import tqdm

    pieces, owners = [], []  # (text index, offset) of each piece
    for index, text in enumerate(texts):
        for offset, piece in _pieces(text):
            pieces.append(piece)
            owners.append((index, offset))
    batches = BatchAnalyzerEngine(analyzer.engine)
    results = []  # the batch engine returns a list, so batches are fed one by one for the progress bar
    with tqdm(total=len(pieces), desc=progress, unit="text", disable=progress is None) as bar:
        for start in range(0, len(pieces), batch_size):
            batch = [_ESCAPED_BREAK.sub(" \n", piece) for piece in pieces[start:start + batch_size]]
            results += batches.analyze_iterator(batch, language="en", batch_size=batch_size,
                                                entities=list(analyzer.entities))
            bar.update(len(batch))
    places = "LOCATION" in config.wanted_entities()
    spans: list[list[Span]] = [[] for _ in texts]
    for piece, (index, offset), found in zip(pieces, owners, results):
        for r in sorted(found, key=_precedence):
            start, end = _name_bounds(r, piece)
            if _plausible(r, piece, start, end, analyzer.dictionary):
                spans[index].append(Span(offset + start, offset + end, _named_kind(r, piece, start, end, places)))
            # Presidio dropped the listed names inside a person cut short here ('Jana:"I'm James's'): found again.
            if r.entity_type == "PERSON" and end < r.end:
                for name in _NAMES.analyze(piece[end:r.end], ["PERSON"]):
                    spans[index].append(Span(offset + end + name.start, offset + end + name.end, "PERSON"))
    for text, found in zip(texts, spans):  # "Anne-Lise Frederiksen ... Ms. Frederiksen": the second on no evidence
        # Bounds moved ("#AskEllen Hi Ellen" -> "Ellen"): of the findings at one start, the longer comes first again.
        found.sort(key=lambda s: (s.entity_type != "ADDRESS", s.start, s.start - s.end))
        people = [(s.start, s.end) for s in resolve(text, found) if s.entity_type == "PERSON"]
        listed = people + coordinated_names(text, people)  # "Kleist and Arnold": Kleist by his list
        names = known_spans(text, {("PERSON", text[start:end]) for start, end in listed})
        named = {(s.start, s.end) for s in names}  # "Kouhei Itou ... Itou": spaCy's place is the person's name
        found[:] = [s for s in found if s.entity_type != "LOCATION" or (s.start, s.end) not in named] + names
    return spans


def _named_kind(result, piece: str, start: int, end: int, places: bool) -> str:
    """What spaCy's person or place at piece[start:end] is: a known city or country it calls a person is a place
    ("Aartselaar"), a listed name it calls a place is a person ("Rebecca is kind", "Hedlund"), unless the gazetteer
    knows it too ("Jordan") or a place's preposition comes before it ("I live in Denver"); either is a person in
    the writer's company ("When Lari and I went", "left me and BB")."""
    value = piece[start:end].lower()
    words = value.split()
    with_the_writer = _with_the_writer(piece, start, end)
    if places and _weak_person(result) and value in place_names() and not with_the_writer:
        return "LOCATION"
    if (result.entity_type == "LOCATION" and words and value not in gazetteer()
            and not PLACE_PREPOSITION.search(piece, 0, start)):
        given, surnames = name_lists()
        if with_the_writer or all(w in given or w in surnames for w in words):
            return "PERSON"
    return result.entity_type


def _with_the_writer(piece: str, start: int, end: int) -> bool:
    return bool(_ME_AND.search(piece, max(0, start - 64), start) or _AND_ME.match(piece, end))


def _weak_person(result) -> bool:
    """A person found by spaCy alone or as the one addressed (", Comedy,"): no name list or cue phrase backs it."""
    return result.entity_type == "PERSON" and result.recognition_metadata.get(
        result.RECOGNIZER_NAME_KEY) in ("SpacyRecognizer", "VocativeRecognizer", "SpeakerRecognizer")


def _name_bounds(result, piece: str) -> tuple[int, int]:
    """Where a name starts and ends: spaCy runs a person on over a line break ("Giovana Barros\\nBurnaby"), a colon,
    a bar or a quote ('Stephanie:"I'm Jose's'), starts it at words in lower case ("ex-Zombie Abramov"), a handle, a
    greeting or an everyday word ("#AskEllen Hi Ellen", "Customer Lori Jones") and ends it on a time word or one in
    lower case ("Lindsay Tonight", "Wingo tellin"); names never do."""
    if result.entity_type not in _NAMED_ENTITIES:
        return result.start, result.end
    start = result.start
    lower = _LOWER_CASE_WORDS.match(piece, start, result.end)
    if lower is not None and piece[lower.end()].isupper():  # not a name written all in lower case
        start = lower.end()
    stop = _NAME_STOP.search(piece, start + 1, result.end)
    end = result.end if stop is None else len(piece[:stop.start()].rstrip())
    if result.entity_type != "PERSON":
        return start, end
    words = list(_TOKENS.finditer(piece, start, end))
    while len(words) > 1 and _not_a_name_word(words[0], piece, leading=True):
        words.pop(0)
    lower_case_name = words and words[0].group()[0].islower()  # "trey songz": no capitals to end at
    while len(words) > 1 and _not_a_name_word(words[-1], piece, leading=False, lower_case_name=lower_case_name,
                                              long_name=len(words) > 2):
        words.pop()
    if not words:
        return start, end
    while len(words) > 1 and words[-1].group() in NAME_PARTICLES:  # "Frits van" + " den Heuvel" below
        words.pop()
    surname = _PARTICLE_SURNAME.match(piece, words[-1].end())  # "Quinn" + " van Beers"
    return words[0].start(), surname.end() if surname else words[-1].end()


def _not_a_name_word(word: re.Match, piece: str, leading: bool, lower_case_name: bool = False,
                     long_name: bool = False) -> bool:
    """A word that opens or closes a found person without being part of the name: a handle or hashtag, a greeting,
    a function or time word, an everyday word before it ("Customer Lori Jones"), a word in lower case after it, an
    English word ending a name of three words or more ("Kanye West Celebrates LAMB")."""
    from spacy.lang.en.stop_words import STOP_WORDS

    text, bare = word.group(), word.group().strip(".,!?;()'’").lower()
    if text[0] in "@#" or piece[word.start() - 1:word.start()] in ("@", "#") or (leading and bare in _GREETINGS):
        return True
    given, surnames = name_lists()
    return bare not in given and bare not in surnames and (
        bare in STOP_WORDS or bare in _TIME_WORDS or (leading and bare in common_words())
        or (not leading and not lower_case_name and text[0].islower() and bare not in NAME_PARTICLES)
        or (not leading and long_name and english_word(bare)))


def _precedence(result) -> tuple:
    """Which of two overlapping findings is kept: an address (a number and a street word are firm evidence; its
    street is often named after a person), then the earlier, the longer, a person over a place ("My name is
    Umberto"), the surer."""
    return (result.entity_type != "ADDRESS", result.start, result.start - result.end,
            result.entity_type == "LOCATION", -result.score)


def _plausible(result, piece: str, start: int, end: int, dictionary: frozenset[str] = frozenset()) -> bool:
    """Findings recognizers make that are rarely PII: a date, a handle, a hashtag or a greeting ("Lol") as a person,
    everyday words ("Comedy", "Guilty Pleasures": in the dictionary and no name list) as a weakly found person (a cue
    phrase may: "this is August", and so may the writer's company: "When Lari and I went"), a zip code, a date, a
    decimal fraction or six digits not in groups as a phone number."""
    entity, value = result.entity_type, piece[start:end]
    if entity in _NAMED_ENTITIES:  # a handle ("@paulwalk") is a USERNAME, a hashtag no name
        return (any(c.isalpha() for c in value) and value[0] not in "@#" and value.lower() not in _GREETINGS
                and not (_weak_person(result) and (_everyday_words(value, dictionary) or _unlisted_lower_case(value))
                         and not _with_the_writer(piece, start, end)))
    if entity == "PHONE_NUMBER":
        digits = sum(c.isdigit() for c in value)
        return ((digits >= MIN_PHONE_DIGITS or _GROUPED_SIX_DIGITS.fullmatch(value)) and not _DECIMAL.fullmatch(value)
                and not _DATE_OR_ZIP.fullmatch(value))
    return True


def _unlisted_lower_case(value: str) -> bool:
    """Words in lower case no name list knows ("hahaha", "wel erg ziek", "u kno"): spaCy's guess alone is too weak."""
    given, surnames = name_lists()
    return value.islower() and not any(w in given or w in surnames for w in _WORDS.findall(value))


def _everyday_words(value: str, dictionary: frozenset[str]) -> bool:
    if value.lower() in common_words():
        return True
    given, surnames = name_lists()
    words = _WORDS.findall(value.lower())
    return bool(dictionary) and bool(words) and all(
        w not in given and w not in surnames and (w in dictionary or (w.endswith("s") and w[:-1] in dictionary))
        for w in words)


def _pieces(text: str) -> Iterable[tuple[int, str]]:
    start = 0
    while len(text) - start > MAX_PIECE_CHARS:
        cut = text.rfind(" ", start + MAX_PIECE_CHARS // 2, start + MAX_PIECE_CHARS)
        cut = cut if cut > 0 else start + MAX_PIECE_CHARS
        yield start, text[start:cut]
        start = cut
    yield start, text[start:]


def known_spans(text: str, known: Iterable[tuple[str, str]]) -> list[Span]:
    """Where values already known to be PII occur again: whole values ignoring case, and each word of a person's
    name as written ("John Smith" found once also catches "Mr. Smith" and "John")."""
    spans = []
    for entity, value in known:
        if len(value) >= 3:
            pattern = rf"(?<!\w){re.escape(value)}(?!\w)"
            spans += [Span(m.start(), m.end(), entity) for m in re.finditer(pattern, text, re.IGNORECASE)]
        if entity == "PERSON":
            for word in value.split():
                if len(word) >= 2 and word.lower().rstrip(".") not in TITLES and word[0].isupper():
                    spans += [Span(m.start(), m.end(), entity) for m in re.finditer(rf"\b{re.escape(word)}\b", text)]
    return spans


def resolve(text: str, detected: Sequence[Span], known: Iterable[tuple[str, str]] = ()) -> list[Span]:
    """The spans to replace, in order and without overlaps: known values, then earlier and longer findings, win."""
    kept: list[Span] = []
    ordered = sorted(known_spans(text, sorted(known)), key=lambda s: (s.start, s.start - s.end))  # deterministic
    for span in ordered + list(detected):
        if not any(span.start < other.end and other.start < span.end for other in kept):
            kept.append(span)
    return sorted(kept, key=lambda span: span.start)


def scrub_spans(text: str, detected: Sequence[Span], config: ScrubConfig, pseudonyms: Pseudonymizer,
                findings: Findings, known: Iterable[tuple[str, str]] = ()) -> str:
    """Replace the detected spans and the known values."""
    kept = resolve(text, detected, known)
    pieces, cursor = [], 0
    for span in kept:
        value = text[span.start:span.end]
        pieces += [text[cursor:span.start], replacement(span.entity_type, value, config, pseudonyms)]
        cursor = span.end
        findings.counts[span.entity_type] += 1
        findings.raw_values.add((span.entity_type, value))
    pieces.append(text[cursor:])
    if kept and len(findings.examples) < MAX_EXAMPLES:
        findings.examples.append(_masked_example(text, kept))
    return "".join(pieces)


def scrub_text(text: str, analyzer: Analyzer, config: ScrubConfig, pseudonyms: Pseudonymizer,
               findings: Findings, known: Iterable[tuple[str, str]] = ()) -> str:
    """One text: what Presidio finds, and the record's own identifier values (`known`)."""
    return scrub_spans(text, detect([text], analyzer, config)[0], config, pseudonyms, findings, known)


def _masked_example(text: str, kept: Sequence[Span]) -> str:
    """The text with each finding shown as its type, so a report never repeats the PII itself."""
    pieces, cursor = [], 0
    for span in kept:
        pieces += [text[cursor:span.start], f"<{span.entity_type}>"]
        cursor = span.end
    pieces.append(text[cursor:])
    return "".join(pieces)[:200]
