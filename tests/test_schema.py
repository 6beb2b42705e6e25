import pandas as pd
import pytest

from llmsynth.data.schema import infer_schema
from llmsynth.errors import DataError


def kinds(schema):
    return {c.name: c.kind for c in schema.columns}


def test_demo_table_kinds(demo_table):
    schema = infer_schema(demo_table)
    assert kinds(schema) == {
        "customer_id": "identifier", "name": "identifier", "email": "identifier", "phone": "identifier",
        "ssn": "identifier", "street_address": "identifier", "state": "categorical", "age": "integer",
        "employment": "categorical", "home_ownership": "categorical", "annual_income": "integer",
        "credit_score": "integer", "loan_purpose": "categorical", "loan_amount": "integer",
        "interest_rate": "float", "account_opened": "datetime", "is_fraud": "boolean",
    }
    types = {c.name: getattr(c, "identifier_type", None) for c in schema.columns}
    assert types["email"] == "email" and types["ssn"] == "ssn" and types["phone"] == "phone"
    assert types["name"] == "name" and types["street_address"] == "address"


def test_precision_range_and_nulls_from_text():
    table = pd.DataFrame({"amount": ["1.5", "20.25", None, "3.10"] * 5})
    column = infer_schema(table).column("amount")
    assert (column.kind, column.decimals, column.minimum, column.maximum) == ("float", 2, 1.5, 20.25)
    assert column.null_fraction == 0.25


def test_leading_zeros_are_not_numbers():
    table = pd.DataFrame({"zip": ["02134", "10001", "02134", "94105"] * 5})
    assert infer_schema(table).column("zip").kind == "categorical"


def test_dates_with_and_without_time():
    table = pd.DataFrame({"day": ["2020-01-02", "2021-03-04"] * 5, "at": ["2020-01-02 10:11:12", "2020-01-03 00:00:00"] * 5})
    schema = infer_schema(table)
    assert schema.column("day").kind == "datetime" and not schema.column("day").with_time
    assert schema.column("at").with_time


def test_free_text():
    notes = [f"customer called about statement number {i} and asked for a refund" for i in range(20)]
    assert infer_schema(pd.DataFrame({"notes": notes})).column("notes").kind == "text"


def test_all_null_column_is_an_error():
    with pytest.raises(DataError, match="column 'empty' is empty"):
        infer_schema(pd.DataFrame({"a": range(20), "empty": [None] * 20}))


def test_one_row_table_is_an_error():
    with pytest.raises(DataError, match="1 row"):
        infer_schema(pd.DataFrame({"a": [1]}))


def test_override_kind():
    table = pd.DataFrame({"code": list(range(20))})
    assert infer_schema(table, {"code": "categorical"}).column("code").kind == "categorical"
    with pytest.raises(DataError, match="unknown column"):
        infer_schema(table, {"nope": "categorical"})
