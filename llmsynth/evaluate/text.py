"""Text figures for synthetic conversations: diversity, copying, conditioning and PII replay."""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence

import numpy as np

_WORD = re.compile(r"\w+|[^\w\s]")


def conversation_text(conversation: dict) -> str:
    return "\n".join(m["content"] for m in conversation["messages"])


def _ngrams(text: str, n: int) -> list[tuple[str, ...]]:
    words = _WORD.findall(text.lower())
    return list(zip(*(words[i:] for i in range(n))))


def distinct_n(texts: Iterable[str], n: int = 2, limit: int | None = None) -> float:
    """Distinct n-grams over all n-grams of lower-cased words (Li et al., 2016); higher is more diverse. With
    `limit`, only the first `limit` n-grams count: the share falls as a corpus grows, so two corpora are only
    comparable on equal numbers of n-grams."""
    seen, total = set(), 0
    for text in texts:
        grams = _ngrams(text, n)[: None if limit is None else limit - total]
        seen.update(grams)
        total += len(grams)
        if limit is not None and total >= limit:
            break
    return len(seen) / total if total else 0.0


def distinct_n_matched(real: Sequence[str], synthetic: Sequence[str], n: int = 2, seed: int = 0) -> dict:
    """distinct-n of both corpora on the same number of n-grams (the smaller corpus's count), each corpus read in
    a random order so that the cut falls on no particular kind of text."""
    rng = np.random.default_rng(seed)
    real, synthetic = ([texts[i] for i in rng.permutation(len(texts))] for texts in (real, synthetic))
    limit = min(sum(len(_ngrams(t, n)) for t in texts) for texts in (real, synthetic))
    return {"real": distinct_n(real, n, limit), "synthetic": distinct_n(synthetic, n, limit), "ngrams": limit}


def verbatim_share(turns: Sequence[str], training_turns: Iterable[str], min_chars: int = 40) -> float:
    """Share of turns longer than `min_chars` that repeat a training turn word for word (0 when none is long)."""
    known = {t.strip() for t in training_turns}
    long_turns = [t.strip() for t in turns if len(t.strip()) > min_chars]
    return sum(t in known for t in long_turns) / len(long_turns) if long_turns else 0.0


def rare_verbatim_share(turns: Sequence[str], training: Sequence[dict]) -> float:
    """Share of turns longer than 40 characters that repeat a training turn fewer than 5 training conversations
    hold: what the generation's novelty filter forbids (stock phrases aside, see `Novelty`)."""
    from llmsynth.serialize.chat import rare_turns

    return verbatim_share(turns, rare_turns([m["content"] for m in c["messages"]] for c in training))


def _vectorizer():
    """Word uni- and bigrams seen at least twice, log-scaled: the text features every text metric shares."""
    from sklearn.feature_extraction.text import TfidfVectorizer

    return TfidfVectorizer(ngram_range=(1, 2), min_df=2, sublinear_tf=True)


def label_agreement(real: Sequence[dict], synthetic: Sequence[dict], field: str = "intent") -> float:
    """Share of `synthetic` conversations whose `field` a TF-IDF + logistic-regression classifier, trained on the
    `real` conversations' text, predicts as the value in their metadata: does the text follow the conditioning?
    (With the roles swapped, trained on synthetic and tested on real, it measures utility.)"""
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline

    classifier = make_pipeline(_vectorizer(), LogisticRegression(max_iter=2000))
    classifier.fit([conversation_text(c) for c in real], [str(c["metadata"][field]) for c in real])
    predicted = classifier.predict([conversation_text(c) for c in synthetic])
    return float((predicted == [str(c["metadata"][field]) for c in synthetic]).mean())


def replayed_values(texts: Iterable[str], values: Iterable[str]) -> set[str]:
    """The values (e.g. a source's raw PII) found in any text as whole words, ignoring case: "Ella" inside
    "umbrella" is no replay, "Ella" or "ella.rossi@mail.com" is."""
    corpus = "\n".join(texts).lower()
    return {v for v in values if v and v.lower() in corpus
            and re.search(rf"(?<!\w){re.escape(v.lower())}(?!\w)", corpus)}


def tfidf(real: Sequence[dict]):
    return _vectorizer().fit([conversation_text(c) for c in real])


def nearest_similarity(train: Sequence[dict], queries: Sequence[dict], vectorizer=None) -> list[float]:
    """Each query conversation's TF-IDF cosine similarity to its most similar training conversation (1 = a copy)."""
    vectorizer = vectorizer or tfidf(train)
    similarity, _ = most_similar(vectorizer.transform([conversation_text(c) for c in train]),
                                 vectorizer.transform([conversation_text(c) for c in queries]))
    return similarity.tolist()


def most_similar(reference, queries, chunk: int = 1000) -> tuple[np.ndarray, np.ndarray]:
    """For each query row of L2-normalized (TF-IDF) vectors, the cosine similarity of the most similar reference row
    and its index, in chunks so that no queries x reference matrix is held at once."""
    reference = reference.T.tocsr()
    similarity, index = [], []
    for start in range(0, queries.shape[0], chunk):
        block = (queries[start:start + chunk] @ reference).tocsr()
        similarity.append(block.max(axis=1).toarray().ravel())
        index.append(np.asarray(block.argmax(axis=1)).ravel())
    return np.concatenate(similarity), np.concatenate(index)


def embedding_distances(real: Sequence[dict], others: dict[str, Sequence[dict]], dimensions: int = 64,
                        max_items: int = 2000, seed: int = 0) -> dict[str, dict[str, float]]:
    """Fréchet distance and MMD (RBF kernel, bandwidth by the median heuristic on the real set) between the real
    conversations' embeddings and each other set's, on TF-IDF + SVD embeddings fitted on the real set."""
    from sklearn.decomposition import TruncatedSVD
    from sklearn.metrics.pairwise import euclidean_distances, rbf_kernel

    rng = np.random.default_rng(seed)

    def subset(items: Sequence[dict]) -> list[dict]:
        chosen = rng.choice(len(items), min(max_items, len(items)), replace=False)
        return [items[i] for i in sorted(chosen)]

    real = subset(real)
    vectorizer = tfidf(real)
    matrix = vectorizer.transform([conversation_text(c) for c in real])
    svd = TruncatedSVD(n_components=min(dimensions, matrix.shape[1] - 1), random_state=seed).fit(matrix)
    reference = svd.transform(matrix)
    pairwise = euclidean_distances(reference, squared=True)
    gamma = 1 / np.median(pairwise[pairwise > 0]) if (pairwise > 0).any() else 1.0
    figures = {}
    for name, items in others.items():
        embedded = svd.transform(vectorizer.transform([conversation_text(c) for c in subset(items)]))
        mmd = (rbf_kernel(reference, reference, gamma=gamma).mean() + rbf_kernel(embedded, embedded, gamma=gamma).mean()
               - 2 * rbf_kernel(reference, embedded, gamma=gamma).mean())
        figures[name] = {"frechet": frechet_distance(reference, embedded), "mmd": float(max(mmd, 0.0))}
    return figures


def frechet_distance(reference: np.ndarray, other: np.ndarray) -> float:
    """Fréchet distance between Gaussians fitted to two sets of embeddings (as FID)."""
    from scipy.linalg import sqrtm

    mean_r, mean_o = reference.mean(0), other.mean(0)
    cov_r, cov_o = np.cov(reference, rowvar=False), np.cov(other, rowvar=False)
    return float(max(((mean_r - mean_o) ** 2).sum() + np.trace(cov_r + cov_o - 2 * sqrtm(cov_r @ cov_o).real), 0.0))



def _words(text: str) -> list[str]:
    return _WORD.findall(text.lower())


def ngram_overlap(texts: Iterable[str], training_texts: Iterable[str], n: int = 8) -> float:
    """Share of the word n-grams of `texts` that also occur in the training texts (0 when none is that long)."""
    known = {gram for text in training_texts for gram in zip(*(_words(text)[i:] for i in range(n)))}
    grams = [gram for text in texts for gram in zip(*(_words(text)[i:] for i in range(n)))]
    return sum(gram in known for gram in grams) / len(grams) if grams else 0.0


class _SuffixAutomaton:
    """All substrings of the training word sequences (each text ends in a separator of its own, so no match spans
    two texts), for the longest match of a query in time linear in its length."""

    def __init__(self, sequences: Iterable[Sequence[int]]):
        self.next: list[dict[int, int]] = [{}]
        self.link, self.length, self.last = [-1], [0], 0
        for number, sequence in enumerate(sequences):
            for token in (*sequence, -1 - number):
                self._extend(token)

    def _extend(self, token: int) -> None:
        current = len(self.length)
        self.next.append({})
        self.length.append(self.length[self.last] + 1)
        self.link.append(0)
        state = self.last
        while state != -1 and token not in self.next[state]:
            self.next[state][token] = current
            state = self.link[state]
        if state != -1:
            following = self.next[state][token]
            if self.length[state] + 1 == self.length[following]:
                self.link[current] = following
            else:
                clone = len(self.length)
                self.next.append(dict(self.next[following]))
                self.length.append(self.length[state] + 1)
                self.link.append(self.link[following])
                while state != -1 and self.next[state].get(token) == following:
                    self.next[state][token] = clone
                    state = self.link[state]
                self.link[following] = self.link[current] = clone
        self.last = current

    def longest_match(self, sequence: Sequence[int]) -> int:
        state, length, best = 0, 0, 0
        for token in sequence:
            while state and token not in self.next[state]:
                state = self.link[state]
                length = self.length[state]
            if token in self.next[state]:
                state, length = self.next[state][token], length + 1
            best = max(best, length)
        return best


def longest_common_words(texts: Sequence[str], training_texts: Iterable[str]) -> list[int]:
    """Per text, the length in words of its longest run of words that also occurs, in order, in a training text."""
    vocabulary: dict[str, int] = {}
    automaton = _SuffixAutomaton([vocabulary.setdefault(w, len(vocabulary)) for w in _words(t)]
                                 for t in training_texts)
    return [automaton.longest_match([vocabulary.get(w, -1 - 2**40) for w in _words(t)]) for t in texts]
