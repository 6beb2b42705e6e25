"""An empirical lower bound on epsilon from canaries, in one training run (Steinke, Nasr and Jagielski 2023,
"Privacy auditing with one (1) training run").

m audit canaries each went into training once or not at all by a fair coin. The auditor ranks them by the model's
likelihood of their secret, guesses "in" for the k likeliest and "out" for the k least likely, and counts its correct
guesses. Under (epsilon, delta)-DP the count of correct guesses out of r is at most Binomial(r, e^eps / (1 + e^eps))
in the tail, up to 2 m delta (their Theorem 3, its delta term bounded by 2 m delta); every epsilon under which the
observed count would be rarer than 1 - confidence is ruled out, and the largest such epsilon is the lower bound. A
few k are tried, each at a Bonferroni share of the confidence, so that picking the best one keeps the guarantee.

With DP on, the bound must stay below the accountant's epsilon (above it, the implementation or the accounting is
wrong); without DP it says how much privacy the run demonstrably lacks. m canaries cap what can be shown: every guess
right gives 3.05 with 100, 3.76 with 200. The delta term costs power: it must stay well under 0.01 (2 m delta), which
DP's default delta of 1/n^1.2 allows from some 5,000 training records for 100 canaries; below that the bound is 0.
"""

from __future__ import annotations

import math

import numpy as np

CONFIDENCE = 0.95
GUESS_SHARES = (0.05, 0.1, 0.2, 0.3, 0.5)  # guesses on each side, as shares of the audit canaries
EPSILON_CAP = 100.0


def largest_rejected_epsilon(guesses: int, correct: int, level: float) -> float:
    """The largest epsilon under which `correct` or more right guesses out of `guesses` have probability at most
    `level` (0 when even a coin, epsilon 0, explains them)."""
    from scipy.optimize import brentq
    from scipy.stats import binom

    def excess(epsilon: float) -> float:
        return float(binom.sf(correct - 1, guesses, 1 / (1 + math.exp(-epsilon)))) - level

    if guesses == 0 or level <= 0 or excess(0.0) > 0:
        return 0.0
    high = 1.0
    while excess(high) <= 0:
        if high >= EPSILON_CAP:
            return EPSILON_CAP
        high *= 2
    return float(brentq(excess, 0.0, high))


def dp_audit(scores: np.ndarray, inserted: np.ndarray, delta: float = 0.0,
             accountant_epsilon: float | None = None) -> dict:
    """The audit from each canary's score (its secret's log-likelihood) and whether it went in; `delta` of the DP
    run (0 without DP)."""
    scores, inserted = np.asarray(scores, float), np.asarray(inserted, bool)
    count = len(scores)
    ranked = inserted[np.argsort(-scores, kind="stable")]
    sides = sorted({max(1, int(count * share)) for share in GUESS_SHARES if int(count * share) * 2 <= count} or {0})
    level = (1 - CONFIDENCE) / len(sides) - 2 * count * delta
    best = {"guesses": 0, "correct": 0, "epsilon_lower_bound": 0.0}
    for k in sides:
        correct = int(ranked[:k].sum() + (~ranked[count - k:]).sum()) if k else 0
        bound = largest_rejected_epsilon(2 * k, correct, level)
        if bound > best["epsilon_lower_bound"] or not best["guesses"]:
            best = {"guesses": 2 * k, "correct": correct, "epsilon_lower_bound": bound}
    over = None if accountant_epsilon is None else best["epsilon_lower_bound"] - accountant_epsilon
    return {"canaries": count, "inserted": int(inserted.sum()), "confidence": CONFIDENCE, "delta": delta, **best,
            "accountant_epsilon": accountant_epsilon, "bound_over_accountant": over}
