"""An empirical lower bound on epsilon from canaries, in one training run (Steinke, Nasr and Jagielski 2023,
"Privacy auditing with one (1) training run").

m audit canaries each went into training once or not at all by a fair coin. The auditor ranks them by the model's
likelihood of their secret, guesses "in" for the k likeliest and "out" for the k least likely, and counts its correct
guesses. Under (epsilon, delta)-DP the count of correct guesses out of r is at most Binomial(r, e^eps / (1 + e^eps))
in the tail, up to a delta term (their Theorem 3, computed as in their Appendix D); every epsilon under which the
observed count would be rarer than 1 - confidence is ruled out, and the largest such epsilon is the lower bound. A
few k are tried, each at a Bonferroni share of the confidence, so that picking the best one keeps the guarantee.

With DP on, the bound must stay below the accountant's epsilon (above it, the implementation or the accounting is
wrong); without DP it says how much privacy the run demonstrably lacks. m canaries cap what can be shown: every guess
right gives 3.05 with 100, 3.76 with 200 (delta 0). A large delta costs power: 2 m delta must stay well under 1.
"""

from __future__ import annotations

import math

import numpy as np

CONFIDENCE = 0.95
GUESS_SHARES = (0.05, 0.1, 0.2, 0.3, 0.5)  # guesses on each side, as shares of the audit canaries
EPSILON_CAP = 100.0


def p_value(guesses: int, correct: int, epsilon: float, delta: float = 0.0, canaries: int = 0) -> float:
    """The chance of `correct` or more right guesses out of `guesses` under (epsilon, delta)-DP, with `canaries`
    audit canaries (their Theorem 3): the Binomial(r, e^eps / (1 + e^eps)) tail, plus 2 m delta times the largest
    P[v - i <= Binomial < v] / i over i."""
    from scipy.stats import binom

    right = 1 / (1 + math.exp(-epsilon))
    tail = float(binom.sf(correct - 1, guesses, right))
    if delta == 0 or correct == 0:
        return min(tail, 1.0)
    below = np.cumsum(binom.pmf(np.arange(correct - 1, -1, -1), guesses, right))  # P[v - i <= X < v], i = 1..v
    return min(tail + 2 * canaries * delta * float(np.max(below / np.arange(1, correct + 1))), 1.0)


def largest_rejected_epsilon(guesses: int, correct: int, level: float, delta: float = 0.0,
                             canaries: int = 0) -> float:
    """The largest epsilon under which the guesses' p-value is at most `level` (0 when epsilon 0, a coin, explains
    them)."""
    from scipy.optimize import brentq

    def excess(epsilon: float) -> float:
        return p_value(guesses, correct, epsilon, delta, canaries) - level

    if guesses == 0 or excess(0.0) > 0:
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
    level = (1 - CONFIDENCE) / len(sides)
    best = {"guesses": 0, "correct": 0, "epsilon_lower_bound": 0.0}
    for k in sides:
        correct = int(ranked[:k].sum() + (~ranked[count - k:]).sum()) if k else 0
        bound = largest_rejected_epsilon(2 * k, correct, level, delta, count)
        if bound > best["epsilon_lower_bound"] or not best["guesses"]:
            best = {"guesses": 2 * k, "correct": correct, "epsilon_lower_bound": bound}
    over = None if accountant_epsilon is None else best["epsilon_lower_bound"] - accountant_epsilon
    return {"canaries": count, "inserted": int(inserted.sum()), "confidence": CONFIDENCE, "delta": delta, **best,
            "accountant_epsilon": accountant_epsilon, "bound_over_accountant": over}
