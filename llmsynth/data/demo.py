"""Deterministic demo data a bank would hold: customers with direct identifiers and correlated finances.

income -> credit score -> default/fraud, so a synthesizer that keeps correlations shows it.
"""

from __future__ import annotations

import importlib
import unicodedata
from dataclasses import dataclass
from string import Formatter

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


# --- support chats ------------------------------------------------------------------------------------------------

BANK_LAYOUT = {"tables": {
    "customers": {"file": "customers.csv", "primary_key": "customer_id"},
    "accounts": {"file": "accounts.csv", "primary_key": "account_id", "parent": "customers", "foreign_key": "customer_id"},
    "transactions": {"file": "transactions.csv", "parent": "accounts", "foreign_key": "account_id",
                     "order_by": "booked_at"},
}}
CITIES = ["Austin", "Boston", "Chicago", "Denver", "Miami", "Seattle"]


def bank(n: int = 400, seed: int = 0) -> tuple[dict, dict[str, pd.DataFrame]]:
    """Related demo tables (the layout and the tables): customers with PII -> accounts -> transactions, ordered by
    time. Private customers hold more accounts; savings see few, large transfers; some card accounts show fraud in
    the sequence: a burst of tiny card-not-present payments minutes apart, then a large one (marked is_fraud)."""
    rng = np.random.default_rng(seed)
    fake = Faker("en_US")
    fake.seed_instance(seed)
    names = [fake.name() for _ in range(n)]
    segment = rng.choice(["retail", "private"], n, p=[0.75, 0.25])
    customers = pd.DataFrame({"customer_id": [f"C{100000 + i}" for i in range(n)], "name": names,
                              "email": [_email(fake, name) for name in names], "segment": segment,
                              "age": rng.integers(18, 86, n), "city": rng.choice(CITIES, n)})
    accounts, transactions = [], []
    for customer, kind_of_customer in zip(customers.customer_id, segment):
        for _ in range(rng.integers(2, 5) if kind_of_customer == "private" else rng.integers(1, 3)):
            kind = rng.choice(["checking", "savings", "credit_card"], p=[0.5, 0.25, 0.25])
            account = f"A{200000 + len(accounts)}"
            accounts.append((account, customer, kind))
            transactions += _account_history(account, kind, kind_of_customer, rng)
    return BANK_LAYOUT, {"customers": customers,
                         "accounts": pd.DataFrame(accounts, columns=["account_id", "customer_id", "kind"]),
                         "transactions": pd.DataFrame(transactions, columns=["account_id", "booked_at", "amount",
                                                                             "channel", "is_fraud"])}


def _account_history(account: str, kind: str, segment: str, rng: np.random.Generator) -> list[tuple]:
    scale = 3.0 if segment == "private" else 1.0
    time = pd.Timestamp("2026-01-01") + pd.Timedelta(minutes=int(rng.integers(0, 60 * 24 * 30)))
    count = rng.integers(1, 5) if kind == "savings" else rng.integers(3, 10)
    fraud_at = rng.integers(0, count) if kind != "savings" and rng.random() < 0.08 else None
    rows = []
    for number in range(count):
        if number == fraud_at:
            for _ in range(rng.integers(3, 5)):
                time += pd.Timedelta(minutes=int(rng.integers(1, 10)))
                rows.append((account, time, round(float(rng.uniform(1, 5)), 2), "card_not_present", 1))
            time += pd.Timedelta(minutes=int(rng.integers(2, 30)))
            rows.append((account, time, round(float(rng.uniform(800, 3000)), 2), "card_not_present", 1))
        time += pd.Timedelta(minutes=int(rng.exponential(60 * 24 * 2)) + 1)
        if kind == "savings":
            rows.append((account, time, round(float(rng.lognormal(6.5, 0.8) * scale), 2), "transfer", 0))
        else:
            channel = rng.choice(["card_present", "card_not_present", "transfer"], p=[0.55, 0.3, 0.15])
            rows.append((account, time, round(float(rng.lognormal(3.5, 0.9) * scale), 2), channel, 0))
    return [(a, t.strftime("%Y-%m-%d %H:%M:%S"), amount, channel, fraud) for a, t, amount, channel, fraud in rows]


def fraud_burst_share(accounts: pd.DataFrame, transactions: pd.DataFrame) -> float:
    """Share of card accounts (not savings) whose history holds the demo's fraud pattern: three or more
    card-not-present payments under 10 in a row, then a card-not-present payment over 500."""
    found, cards = fraud_burst_counts(accounts, transactions)
    return found / max(1, cards)


def fraud_burst_counts(accounts: pd.DataFrame, transactions: pd.DataFrame) -> tuple[int, int]:
    """fraud_burst_share as (card accounts with the pattern, card accounts)."""
    cards = accounts.loc[accounts.kind != "savings", "account_id"]
    found = set()
    for account, history in transactions[transactions.account_id.isin(set(cards))].groupby("account_id", sort=False):
        run = 0
        for amount, channel in zip(pd.to_numeric(history.amount), history.channel):
            if channel == "card_not_present" and amount < 10:
                run += 1
            elif channel == "card_not_present" and amount > 500 and run >= 3:
                found.add(account)
                break
            else:
                run = 0
    return len(found), len(cards)


CHAT_INTENTS = ["card_lost", "refund", "dispute_charge", "address_change", "account_locked", "loan_question",
                "update_contact"]
_NAME_LOCALES = ["es_MX", "fr_FR", "de_DE", "it_IT", "nl_NL"]
_MERCHANTS = ["an online electronics store", "a gas station", "a hotel booking site", "a streaming service",
              "a grocery delivery app", "an airline", "a furniture store", "a coffee shop"]


@dataclass(frozen=True)
class PiiSpan:
    """Ground truth: `value` sits at content[start:end] of message `message` of conversation `conversation`."""

    conversation: int
    message: int
    start: int
    end: int
    entity: str
    value: str


@dataclass
class DemoChats:
    conversations: list[dict]
    pii: list[PiiSpan]


# Each intent: what the customer opens with, what the agent does once the customer is verified, and a follow-up
# exchange. {first}/{name}/{agent} are people, {card} {account} {phone} {email} {address} {dob} {ssn} PII.
_INTENT_TURNS = {
    "card_lost": {
        "open": ["Hi, this is {name}. I lost my credit card yesterday and I need to block it right away.",
                 "Hello, my name is {name}. I think my debit card was stolen at the mall this afternoon.",
                 "I can't find my card anywhere, can you freeze it? The number is {card}.",
                 "My wallet was stolen this morning and my card was in it. I'm {name}."],
        "act": ["Thank you, {first}. I have blocked the card ending in {last4} and ordered a replacement. It will "
                "arrive at {address} within five business days.",
                "The card is now frozen, {first}, so no new purchases can go through. A new card is on its way "
                "to {address}.",
                "Done: the old card is cancelled and a new one will be mailed to {address} in 3 to 5 days."],
        "ask": ["Were there any purchases after I lost it?", "Can I still use my card on my phone until the new one "
                "comes?", "Will my automatic payments still work?"],
        "answer": ["I see no transactions since yesterday evening, so nothing was charged after the loss.",
                   "Your digital wallet card was also paused; it will be switched to the new number automatically.",
                   "Recurring payments move to the new card number, so you don't need to do anything."],
    },
    "refund": {
        "open": ["Hi, I returned an order to {merchant} two weeks ago and still haven't got my refund.",
                 "Hello, this is {name}. I was promised a refund for a cancelled flight and it's not on my account.",
                 "I want to ask about a refund from {merchant}. My account number is {account}.",
                 "My name is {name} and a refund I was expecting has not shown up yet."],
        "act": ["I can see a pending credit of ${amount} from {merchant}, {first}. Refunds usually post within "
                "7 to 10 business days.",
                "The merchant has not sent the refund yet, {first}. I opened a request with them and you will get "
                "an update by email at {email}.",
                "I found the refund of ${amount}; it was posted this morning to account {account}."],
        "ask": ["How long does it usually take?", "Can you speed it up?", "Will I get an email when it arrives?"],
        "answer": ["Most refunds arrive within ten business days of the return.",
                   "I can't speed up the merchant, but I set a reminder to check on it in three days.",
                   "Yes, you will get an email as soon as the credit posts."],
    },
    "dispute_charge": {
        "open": ["Hi, there's a charge of ${amount} from {merchant} on my card that I never made.",
                 "Hello, this is {name}. I want to dispute a transaction I don't recognize.",
                 "I was charged twice for the same purchase at {merchant}. Card number {card}.",
                 "My name is {name}. Someone used my card at {merchant}, I need to dispute it."],
        "act": ["I have opened a dispute for the ${amount} charge, {first}. You will see a temporary credit within "
                "two business days while we investigate.",
                "Thanks, {first}. The duplicate charge is now disputed and we'll send the outcome to {email}.",
                "I filed the dispute and issued a provisional credit of ${amount} to your account."],
        "ask": ["Do I need to send any documents?", "Should I cancel my card too?", "How long will the "
                "investigation take?"],
        "answer": ["Not now; if the merchant responds we may ask you for a receipt.",
                   "If you still have the card, I'd recommend replacing it to be safe; I can do that now.",
                   "Investigations usually close within 30 to 45 days."],
    },
    "address_change": {
        "open": ["Hi, I moved recently and need to update my mailing address. This is {name}.",
                 "Hello, can you change the address on my account? My new address is {address}.",
                 "I need to update my home address, please. My name is {name}.",
                 "Hi, my name is {name}. Please send my statements to my new place."],
        "act": ["Your address is now {address}, {first}. Statements and cards will go there from now on.",
                "I updated the mailing address to {address}. You'll get a confirmation letter there within a week.",
                "All set, {first}: the new address {address} is on file for all your accounts."],
        "ask": ["Will my card need to be reissued?", "Does this change my billing address for online shopping "
                "too?", "Can I also change my phone number?"],
        "answer": ["No, your current card keeps working.",
                   "Yes, merchants will need the new address as your billing address from today.",
                   "Of course, the new number {phone} is now on your profile."],
    },
    "account_locked": {
        "open": ["Hi, I'm locked out of online banking after too many password attempts.",
                 "Hello, this is {name}. My account says it's locked and I can't log in.",
                 "I can't sign in to the app, it says my account is locked. Account {account}.",
                 "My name is {name} and my online access was blocked this morning."],
        "act": ["Thanks, {first}. I unlocked your online access and sent a reset link to {email}.",
                "Your account is unlocked, {first}. Use the link we just texted to {phone} to set a new password.",
                "I reset the lock on account {account}. You can log in again with a new password."],
        "ask": ["Why did it get locked?", "Can I turn on two-factor authentication?", "Was anyone else trying to "
                "get in?"],
        "answer": ["It locks after five failed passwords in a row, to protect you.",
                   "Yes, you'll find it under security settings; I recommend it.",
                   "I see only attempts from your usual device, so it looks like it was you."],
    },
    "loan_question": {
        "open": ["Hi, I have a question about my personal loan payment. This is {name}.",
                 "Hello, I'd like to know my loan payoff amount. Loan account {account}.",
                 "My name is {name}. Can I pay off my car loan early without a penalty?",
                 "Hi, what is the interest rate on my loan? I'm {name}."],
        "act": ["Your payoff amount today is ${amount}, {first}, and there is no prepayment penalty.",
                "The rate on loan {account} is fixed at {rate}% and your next payment is due on the 15th.",
                "You can pay it off at any time, {first}; the current balance is ${amount}."],
        "ask": ["Can I change my payment date?", "Could I get a lower rate?", "Can you send me a payoff letter?"],
        "answer": ["Yes, I moved your due date to the 1st of each month.",
                   "I can't change the rate, but a loan officer can review refinancing with you.",
                   "Sure, the payoff letter will be emailed to {email} today."],
    },
    "update_contact": {
        "open": ["Hi, I got a new phone number and need to update it. This is {name}.",
                 "Hello, please change the email on my account to {email}.",
                 "My name is {name}. My phone number changed, the new one is {phone}.",
                 "I need to update my contact details, I'm {name}."],
        "act": ["Done, {first}. Your phone number is now {phone} and your email is {email}.",
                "I updated your email to {email}; a confirmation was sent there.",
                "Your new number {phone} is saved, {first}. Alerts will go there from now on."],
        "ask": ["Will I still get fraud alerts?", "Do I have to update the app as well?", "Can you remove my old "
                "number completely?"],
        "answer": ["Yes, fraud alerts follow your new contact details.",
                   "No, the app uses the same profile, so it's already updated.",
                   "The old number has been removed from your profile."],
    },
}
_AGENT_GREETINGS = [  # (greeting, what the customer is asked to confirm)
    ("Hello, my name is {agent} and I'll help you with that. Can you confirm your date of birth?", "date of birth"),
    ("Hi {first}, this is {agent}. I'm sorry about that. For security, what's the phone number on the account?",
     "phone"),
    ("Thanks for reaching out, I'm {agent}. Could you verify the email address on file?", "email"),
    ("Hi, {agent} here. Before I look into it, can you give me your account number?", "account"),
    ("Good afternoon, you're talking to {agent}. Please confirm the last four digits of your SSN.", "SSN"),
]
_VERIFICATIONS = {"date of birth": ["Sure, I was born on {dob}.", "My date of birth is {dob}.", "DOB {dob}."],
                  "phone": ["It's {phone}.", "The number on file should be {phone}.", "Sure, {phone}."],
                  "email": ["It's {email}.", "My email is {email}.", "Sure: {email}"],
                  "account": ["My account number is {account}.", "Account number {account}.", "It's account "
                              "{account}."],
                  "SSN": ["The last four are {ssn4}. My full SSN is {ssn} if you need it.", "My SSN ends in {ssn4}."]}
_CLOSINGS = [("Thanks, {agent}, that's all I needed.", "You're welcome, {first}. Have a great day!"),
             ("Great, thank you so much.", "My pleasure, {name}. Is there anything else I can help with?"),
             ("Perfect, thanks for your help.", "Anytime! Thank you for banking with us, {title} {last}."),
             ("OK, thank you.", "Glad I could help, {first}. Take care.")]
_PII_FIELDS = {"name": "PERSON", "first": "PERSON", "last": "PERSON", "agent": "PERSON", "card": "CREDIT_CARD",
               "account": "ACCOUNT_NUMBER", "phone": "PHONE_NUMBER", "email": "EMAIL_ADDRESS",
               "address": "ADDRESS", "dob": "DATE_OF_BIRTH", "ssn": "US_SSN"}


def support_chats(n: int = 600, seed: int = 0) -> DemoChats:
    """Multi-turn customer/agent conversations with PII woven in and its ground-truth spans.

    Pseudonyms are built from Faker's US given names, surnames and street and city suffixes; demo people get
    names from other Faker locales, each kept only if no such word contains it, so that a leak test on these
    values is exact (a demo name found in scrubbed text is a leak, never a surrogate that happens to contain
    it, "Stephens" for "Stephen"), and the US name list our recognizer uses does not know them.
    """
    from faker.providers.address.en_US import Provider as UsPlaces
    from faker.providers.person.en_US import Provider as UsNames

    rng = np.random.default_rng(seed)
    fake = Faker("en_US")
    fake.seed_instance(seed)
    surrogate_words = " ".join([*UsNames.first_names, *UsNames.last_names, *UsPlaces.street_suffixes,
                                *UsPlaces.city_suffixes]).lower()
    providers = [importlib.import_module(f"faker.providers.person.{locale}").Provider for locale in _NAME_LOCALES]

    def usable(names) -> list[str]:
        return sorted({n for n in names if n.isalpha() and len(n) >= 4 and n.lower() not in surrogate_words})

    given, surnames = usable(n for p in providers for n in p.first_names), usable(n for p in providers
                                                                                    for n in p.last_names)
    female = {n for p in providers for n in p.first_names_female}
    conversations, pii = [], []
    for index in range(n):
        intent = CHAT_INTENTS[index % len(CHAT_INTENTS)] if index < len(CHAT_INTENTS) else rng.choice(CHAT_INTENTS)
        first, last = str(rng.choice(given)), str(rng.choice(surnames))
        values = {
            "first": first, "last": last, "name": f"{first} {last}", "agent": str(rng.choice(given)),
            "card": _card_number(fake, rng), "account": fake.numerify("00##########"[: rng.integers(10, 13)]),
            "phone": fake.numerify(rng.choice(["(%##) %##-####", "%##-%##-####", "%##.%##.####"])),
            "email": _email(fake, f"{_ascii(first)} {_ascii(last)}"), "address": fake.street_address(),
            "dob": fake.date_of_birth(minimum_age=19, maximum_age=85).strftime(
                rng.choice(["%m/%d/%Y", "%B %d, %Y", "%Y-%m-%d"])),
            "ssn": fake.ssn(), "merchant": str(rng.choice(_MERCHANTS)),
            "amount": f"{rng.integers(12, 2400)}.{rng.integers(0, 100):02d}",
            "rate": f"{rng.uniform(3, 14):.2f}",
        }
        values["title"] = "Ms." if first in female else "Mr."
        values["last4"] = values["card"].replace(" ", "").replace("-", "")[-4:]
        values["ssn4"] = values["ssn"][-4:]
        turns = _INTENT_TURNS[intent]
        greeting, verification = _AGENT_GREETINGS[rng.integers(len(_AGENT_GREETINGS))]
        closing = _CLOSINGS[rng.integers(len(_CLOSINGS))]
        script = [str(rng.choice(turns["open"])), greeting, str(rng.choice(_VERIFICATIONS[verification])),
                  str(rng.choice(turns["act"]))]
        if rng.random() < 0.6:
            pick = rng.integers(len(turns["ask"]))
            script += [turns["ask"][pick], turns["answer"][pick]]
        script += list(closing)
        messages = []
        for number, template in enumerate(script):
            content, spans = _render(template, values)
            messages.append({"role": "user" if number % 2 == 0 else "assistant", "content": content})
            pii += [PiiSpan(index, number, start, end, entity, value) for start, end, entity, value in spans]
        metadata = {"intent": str(intent), "channel": str(rng.choice(["chat", "email"], p=[0.7, 0.3])),
                    "resolved": bool(rng.random() < 0.85)}
        conversations.append({"messages": messages, "metadata": metadata})
    return DemoChats(conversations, pii)


def _render(template: str, values: dict) -> tuple[str, list[tuple[int, int, str, str]]]:
    """Fill a template and note where each PII value landed."""
    text, spans = "", []
    for literal, field_name, _, _ in Formatter().parse(template):
        text += literal
        if field_name is not None:
            value = values[field_name]
            if field_name in _PII_FIELDS:
                spans.append((len(text), len(text) + len(value), _PII_FIELDS[field_name], value))
            text += value
    return text, spans


def _card_number(fake: Faker, rng: np.random.Generator) -> str:
    digits = fake.credit_card_number(card_type=rng.choice(["visa16", "mastercard", "discover"]))
    separator = rng.choice(["", " ", "-"])
    return separator.join(digits[i:i + 4] for i in range(0, len(digits), 4))


def _ascii(word: str) -> str:
    return unicodedata.normalize("NFKD", word).encode("ascii", "ignore").decode()
