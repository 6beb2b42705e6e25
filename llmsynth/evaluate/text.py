"""Text figures for synthetic conversations: diversity, copying, conditioning and PII replay."""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence

_WORD = re.compile(r"\w+|[^\w\s]")


def conversation_text(conversation: dict) -> str:
    return "\n".join(m["content"] for m in conversation["messages"])


def distinct_n(texts: Iterable[str], n: int = 2) -> float:
    """Distinct n-grams over all n-grams of lower-cased words (Li et al., 2016); higher is more diverse."""
    seen, total = set(), 0
    for text in texts:
        words = _WORD.findall(text.lower())
        grams = list(zip(*(words[i:] for i in range(n))))
        seen.update(grams)
        total += len(grams)
    return len(seen) / total if total else 0.0


def verbatim_share(turns: Sequence[str], training_turns: Iterable[str], min_chars: int = 40) -> float:
    """Share of turns longer than `min_chars` that repeat a training turn word for word (0 when none is long)."""
    known = {t.strip() for t in training_turns}
    long_turns = [t.strip() for t in turns if len(t.strip()) > min_chars]
    return sum(t in known for t in long_turns) / len(long_turns) if long_turns else 0.0


def label_agreement(real: Sequence[dict], synthetic: Sequence[dict], field: str = "intent") -> float:
    """Share of synthetic conversations whose `field` a TF-IDF + logistic-regression classifier, trained on the
    real conversations' text, predicts as the value in their metadata: does the text follow the conditioning?"""
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline

    classifier = make_pipeline(TfidfVectorizer(ngram_range=(1, 2), min_df=2, sublinear_tf=True),
                               LogisticRegression(max_iter=2000))
    classifier.fit([conversation_text(c) for c in real], [str(c["metadata"][field]) for c in real])
    predicted = classifier.predict([conversation_text(c) for c in synthetic])
    return float((predicted == [str(c["metadata"][field]) for c in synthetic]).mean())


def replayed_values(texts: Iterable[str], values: Iterable[str]) -> set[str]:
    """The values (e.g. a source's raw PII) found in any text as whole words, ignoring case: "Ella" inside
    "umbrella" is no replay, "Ella" or "ella.rossi@mail.com" is."""
    corpus = "\n".join(texts).lower()
    return {v for v in values if v and v.lower() in corpus
            and re.search(rf"(?<!\w){re.escape(v.lower())}(?!\w)", corpus)}
