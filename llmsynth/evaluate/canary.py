"""Canaries (Carlini et al. 2019, "The Secret Sharer"): what the model memorized, measured. The secrets and how
they go into training: `llmsynth.data.canaries`.

- Exposure = log2 |R| - log2 rank of a canary's likelihood among the |R| secrets of its format. |R| = 10^8 is too
  many to score, so the rank comes from a skew-normal fitted to the negative log-likelihoods of a random sample of
  candidates (the paper's extrapolation); the empirical rank among that sample is reported beside it.
- Extraction: prompt the model with the canary's own prefix, sample, look for the secret; and look for every secret
  in a bulk synthetic sample. The model's probability p of the secret after the prefix gives the chance of emitting
  it at least once in N prompted samples, 1 - (1 - p)^N.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from llmsynth.data.canaries import CanarySet, random_secret
from llmsynth.evaluate.dp_audit import dp_audit

CANDIDATES = 2000
EXTRACTION_SAMPLES = 64


class CanaryHost(Protocol):
    """What the test needs of a fitted synthesizer, and no more: its causal LM ready to score, its tokenizer, and the
    token ids of a canary's record (the kinds differ in where the secret goes) with their position ids (None: the
    usual ones)."""

    tokenizer: Any

    def ready_model(self) -> Any: ...

    def canary_ids(self, canaries: CanarySet, secret: str | None) -> list[int]: ...

    def canary_positions(self, canaries: CanarySet, secret: str | None) -> list[int] | None: ...


@dataclass
class CanaryTest:
    """A trained synthesizer and the canaries that went into it: what the evaluation measures."""

    synthesizer: CanaryHost
    canaries: CanarySet
    temperature: float = 1.0  # of the prompted extraction: the production sampling temperature

    def figures(self, synthetic_texts: Sequence[str], seed: int = 0) -> dict:
        return canary_figures(self.synthesizer, self.canaries, synthetic_texts, temperature=self.temperature,
                              seed=seed)


# -- measuring ----------------------------------------------------------------------------------------------------
def _common_length(a: Sequence[int], b: Sequence[int]) -> int:
    length = 0
    for x, y in zip(a, b):
        if x != y:
            break
        length += 1
    return length


def secret_log_likelihoods(model, sequences: Sequence[Sequence[int]], start: int, pad_id: int,
                           batch_size: int = 128, positions: Sequence[Sequence[int]] | None = None) -> np.ndarray:
    """Per sequence, the summed log-probability of its tokens from position `start` on, given those before (at
    `positions`, where the model was trained with position ids of its own)."""
    import torch

    device = next(model.parameters()).device
    results = []
    with torch.inference_mode():
        for first in range(0, len(sequences), batch_size):
            batch = sequences[first:first + batch_size]
            width = max(len(s) for s in batch)
            ids = torch.full((len(batch), width), pad_id, dtype=torch.long)
            mask = torch.zeros((len(batch), width), dtype=torch.long)
            position_ids = torch.arange(width).repeat(len(batch), 1)
            for row, sequence in enumerate(batch):
                ids[row, :len(sequence)] = torch.tensor(sequence)
                mask[row, :len(sequence)] = 1
                if positions is not None:
                    position_ids[row, :len(sequence)] = torch.tensor(positions[first + row])
            ids, mask = ids.to(device), mask.to(device)
            logits = model(input_ids=ids, attention_mask=mask, position_ids=position_ids.to(device)).logits.float()
            log_probs = torch.log_softmax(logits[:, :-1], dim=-1).gather(-1, ids[:, 1:, None])[..., 0]
            scored = mask[:, 1:].clone()
            scored[:, :start - 1] = 0
            results.append((log_probs * scored).sum(dim=1).cpu().numpy())
    return np.concatenate(results)


def secret_scores(synthesizer: CanaryHost, canaries: CanarySet, secrets: Sequence[str]
                  ) -> tuple[np.ndarray, tuple[list[int], list[list[int]], int]]:
    """The model's log-likelihood of each secret right after the canary's prefix; with the prefix's token ids, each
    secret's record ids and where the secrets start (the first position any of them differs from the prefix)."""
    prompt = synthesizer.canary_ids(canaries, None)
    sequences = [synthesizer.canary_ids(canaries, secret) for secret in secrets]
    positions = [synthesizer.canary_positions(canaries, secret) for secret in secrets]
    start = min(_common_length(prompt, s) for s in sequences)
    pad_id = synthesizer.tokenizer.pad_token_id
    scores = secret_log_likelihoods(synthesizer.ready_model(), sequences, start,
                                    synthesizer.tokenizer.eos_token_id if pad_id is None else pad_id,
                                    positions=None if positions[0] is None else positions)
    return scores, (prompt, sequences, start)


def _exposures(nll: np.ndarray, candidate_nll: np.ndarray, digits: int) -> tuple[np.ndarray, np.ndarray]:
    """Extrapolated (skew-normal) and empirical exposure of each negative log-likelihood in `nll`."""
    from scipy.stats import skewnorm

    shape, loc, scale = skewnorm.fit(candidate_nll)
    space_bits = digits * math.log2(10)
    extrapolated = np.clip(-skewnorm.logcdf(nll, shape, loc, scale) / math.log(2), 0, space_bits)
    ranks = 1 + (candidate_nll[None, :] < nll[:, None]).sum(axis=1)
    empirical = math.log2(len(candidate_nll) + 1) - np.log2(ranks)
    return extrapolated, empirical


def _compact(text: str) -> str:
    return re.sub(r"\s+", "", text)


def _emission_probability(p: float, n: int) -> float:
    """1 - (1 - p)^n, accurate for tiny p."""
    return 0.0 if p <= 0 else float(-math.expm1(n * math.log1p(-min(p, 1 - 1e-16))))


def canary_figures(synthesizer: CanaryHost, canaries: CanarySet, synthetic_texts: Sequence[str] = (),
                   candidates: int = CANDIDATES, samples: int = EXTRACTION_SAMPLES, temperature: float = 1.0,
                   seed: int = 0) -> dict:
    """Exposure and extraction of every canary in a trained synthesizer; grouped by insertion count, references
    (never inserted) as count 0; with audit canaries, the DP audit's lower bound on epsilon (`dp_audit`; the run's
    delta and accountant epsilon from the synthesizer's training summary). `synthetic_texts`: a bulk synthetic
    sample searched for the secrets."""
    import torch

    model = synthesizer.ready_model()
    rng = np.random.default_rng([seed, 0x5EC2])
    known = {c.secret for c in canaries.canaries}
    pool = [s for s in (random_secret(rng, canaries.digits) for _ in range(candidates + len(known))) if s not in known]
    pool = pool[:candidates]
    log_likelihoods, (prompt, sequences, start) = secret_scores(synthesizer, canaries,
                                                                [c.secret for c in canaries.canaries] + pool)
    pad_id = synthesizer.tokenizer.pad_token_id
    own, candidate_ll = log_likelihoods[:len(canaries.canaries)], log_likelihoods[len(canaries.canaries):]
    extrapolated, empirical = _exposures(-own, -candidate_ll, canaries.digits)

    bulk = [_compact(text) for text in synthetic_texts]
    torch.manual_seed(seed)
    prompt_ids = torch.tensor([prompt[:start]], device=model.device)
    longest = max(len(s) - start for s in sequences[:len(canaries.canaries)])
    # the secret's tokens follow one another in its column's slot: generate counts on from the prompt's last position
    prompt_positions = synthesizer.canary_positions(canaries, None)
    positions = {} if prompt_positions is None else {
        "position_ids": torch.tensor([prompt_positions[:start]], device=model.device)}
    with torch.inference_mode():
        generated = model.generate(prompt_ids, attention_mask=torch.ones_like(prompt_ids), **positions, do_sample=True,
                                   temperature=max(temperature, 1e-3), top_k=0, max_new_tokens=longest + 2,
                                   num_return_sequences=samples, pad_token_id=pad_id or 0)
    continuations = [_compact(synthesizer.tokenizer.decode(row[start:], skip_special_tokens=True))
                     for row in generated.tolist()]
    rows = []
    for canary, ll, exposure, exposure_empirical in zip(canaries.canaries, own, extrapolated, empirical):
        secret = _compact(canary.secret)
        p = float(math.exp(ll))
        rows.append({"inserted": canary.inserted, "audit": canary.audit, "exposure": float(exposure),
                     "exposure_empirical": float(exposure_empirical), "p_secret": p,
                     "prompted_hits": sum(c.startswith(secret) for c in continuations),
                     "bulk_hits": sum(secret in text for text in bulk),
                     "emission_probability_1m": _emission_probability(p, 1_000_000)})
    summary = _summary(canaries, [row for row in rows if not row["audit"]], len(pool), samples, len(bulk),
                       temperature)
    summary["extracted"] = sum(bool(r["inserted"] and r["prompted_hits"] + r["bulk_hits"]) for r in rows)
    audited = [c.audit for c in canaries.canaries]
    if any(audited):
        privacy = getattr(getattr(synthesizer, "summary", None), "privacy", None) or {}
        summary["dp_audit"] = dp_audit(own[audited], [c.inserted > 0 for c in canaries.canaries if c.audit],
                                       privacy.get("delta", 0.0), privacy.get("epsilon"))
    return summary


def _summary(canaries: CanarySet, rows: list[dict], candidates: int, samples: int, bulk: int,
             temperature: float) -> dict:
    """Per insertion count (most first, references last): mean and highest exposure, extraction hits."""
    groups = []
    for count in sorted({row["inserted"] for row in rows}, reverse=True):
        members = [row for row in rows if row["inserted"] == count]
        groups.append({
            "inserted": count,
            "canaries": len(members),
            "exposure": float(np.mean([r["exposure"] for r in members])),
            "exposure_max": float(max(r["exposure"] for r in members)),
            "exposure_empirical": float(np.mean([r["exposure_empirical"] for r in members])),
            "p_secret": float(max(r["p_secret"] for r in members)),
            "prompted_hits": sum(r["prompted_hits"] for r in members),
            "bulk_hits": sum(r["bulk_hits"] for r in members),
            "emission_probability_1m": float(max(r["emission_probability_1m"] for r in members)),
        })
    reference = next((g for g in groups if g["inserted"] == 0), None)
    most = groups[0] if groups and groups[0]["inserted"] else None
    excess = most["exposure"] - reference["exposure"] if most and reference else None
    return {
        "format": f"'{canaries.prefix}' + {canaries.digits} random digits",
        "space_bits": canaries.digits * math.log2(10),
        "candidates_scored": candidates,
        "prompted_samples": samples,
        "temperature": temperature,
        "bulk_records": bulk,
        "by_insertions": groups,
        "exposure_excess": excess,  # the most-inserted canaries' mean exposure over the references' mean
    }
