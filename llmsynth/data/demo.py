"""Deterministic demo data a bank would hold: customers with direct identifiers and correlated finances.

income -> credit score -> default/fraud, so a synthesizer that keeps correlations shows it.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from faker import Faker

STATES = ["CA", "TX", "NY", "FL", "IL", "PA", "OH", "GA", "NC", "WA"]
STATE_WEIGHTS = [0.2, 0.15, 0.12, 0.11, 0.08, 0.08, 0.07, 0.07, 0.06, 0.06]
EMPLOYMENT = ["employed", "self-employed", "unemployed", "retired", "student"]
LOAN_PURPOSES = ["car", "home improvement", "debt consolidation", "education", "medical", "business"]


def customers(n: int = 4000, seed: int = 0) -> pd.DataFrame:
    """A customers table with PII columns, a few missing values and a ~4% `is_fraud` class."""
    rng = np.random.default_rng(seed)
    fake = Faker("en_US")
    fake.seed_instance(seed)

    age = rng.integers(18, 86, n)
    employment = np.where(
        age >= 65,
        rng.choice(EMPLOYMENT, n, p=[0.15, 0.05, 0.02, 0.78, 0.0]),
        np.where(age < 24, rng.choice(EMPLOYMENT, n, p=[0.45, 0.03, 0.12, 0.0, 0.40]),
                 rng.choice(EMPLOYMENT, n, p=[0.72, 0.14, 0.08, 0.02, 0.04])),
    )
    base = {"employed": 62000, "self-employed": 70000, "unemployed": 18000, "retired": 38000, "student": 14000}
    income = np.array([base[e] for e in employment]) * np.exp(rng.normal(0, 0.45, n))
    income *= 1 + np.clip(age - 22, 0, 30) * 0.012
    income = np.round(income, -2).astype(int)

    credit = 560 + 90 * np.log(income / 20000) + rng.normal(0, 45, n)
    credit = np.clip(np.round(credit), 300, 850).astype(int)
    home = np.where(age + rng.normal(0, 10, n) > 40, rng.choice(["own", "mortgage"], n, p=[0.4, 0.6]),
                    rng.choice(["rent", "mortgage"], n, p=[0.75, 0.25]))
    purpose = rng.choice(LOAN_PURPOSES, n, p=[0.25, 0.15, 0.3, 0.1, 0.1, 0.1])
    loan = np.round(income * rng.uniform(0.05, 0.6, n), -2).astype(int)
    loan = np.maximum(loan, 500)
    rate = np.clip(0.32 - (credit - 300) * 0.00045 + rng.normal(0, 0.01, n), 0.03, 0.35).round(4) * 100
    risk = -4.2 - (credit - 650) / 45 + (loan / income - 0.3) * 2.5
    is_fraud = (rng.random(n) < 1 / (1 + np.exp(-risk))).astype(int)
    opened = pd.Timestamp("2012-01-01") + pd.to_timedelta(rng.integers(0, 12 * 365, n), unit="D")

    names = [fake.name() for _ in range(n)]
    table = pd.DataFrame({
        "customer_id": [f"C{100000 + i}" for i in rng.permutation(n)],
        "name": names,
        "email": [_email(fake, name) for name in names],
        "phone": [fake.numerify("(###) ###-####") for _ in range(n)],
        "ssn": [fake.ssn() for _ in range(n)],
        "street_address": [fake.street_address() for _ in range(n)],
        "state": rng.choice(STATES, n, p=STATE_WEIGHTS),
        "age": age,
        "employment": employment,
        "home_ownership": home,
        "annual_income": income,
        "credit_score": pd.array(credit, dtype="Int64"),
        "loan_purpose": purpose,
        "loan_amount": loan,
        "interest_rate": rate.round(2),
        "account_opened": opened.strftime("%Y-%m-%d"),
        "is_fraud": is_fraud,
    })
    thin_file = rng.random(n) < 0.03  # no credit history: missing score
    table.loc[thin_file, "credit_score"] = pd.NA
    return table


def _email(fake: Faker, name: str) -> str:
    first, *_, last = name.lower().replace(".", "").split()
    return f"{first}.{last}{fake.random_int(1, 99)}@{fake.free_email_domain()}"
