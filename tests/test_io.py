import pandas as pd
import pytest

from llmsynth.data import TableWriter, read_table, write_table
from llmsynth.errors import DataError


def write(tmp_path, name, content: bytes | str):
    path = tmp_path / name
    path.write_bytes(content.encode() if isinstance(content, str) else content)
    return path


@pytest.mark.parametrize("suffix", [".csv", ".parquet", ".jsonl"])
def test_round_trip_keeps_values_and_missing(tmp_path, suffix):
    table = pd.DataFrame({"age": [31, None, 45], "state": ["CA", "NY", None]})
    path = write_table(table, tmp_path / f"t{suffix}")
    back = read_table(path)
    assert list(back.columns) == ["age", "state"]
    assert back["state"].isna().tolist() == [False, False, True]
    assert back["age"].isna().tolist() == [False, True, False]
    assert float(back["age"].iloc[2]) == 45


def test_csv_is_read_as_written(tmp_path):
    back = read_table(write(tmp_path, "t.csv", "zip,amount\n02134,10.50\n"))
    assert back.loc[0, "zip"] == "02134" and back.loc[0, "amount"] == "10.50"


def test_empty_file(tmp_path):
    with pytest.raises(DataError, match="empty"):
        read_table(write(tmp_path, "t.csv", ""))


def test_header_only(tmp_path):
    with pytest.raises(DataError, match="header but no rows"):
        read_table(write(tmp_path, "t.csv", "a,b\n"))


def test_ragged_row_names_the_line(tmp_path):
    with pytest.raises(DataError, match=r"t.csv: line 3: expected 2 fields like the header, found 3"):
        read_table(write(tmp_path, "t.csv", "a,b\n1,2\n3,4,5\n"))


def test_non_utf8_names_line_and_column(tmp_path):
    with pytest.raises(DataError, match=r"line 2, column 3: byte 0xe9 is not valid UTF-8"):
        read_table(write(tmp_path, "t.csv", b"a,b\n1,\xe9t\xe9\n"))


def test_duplicate_column_names(tmp_path):
    with pytest.raises(DataError, match=r"duplicate column names \['a'\]"):
        read_table(write(tmp_path, "t.csv", "a,b,a\n1,2,3\n"))


def test_bad_jsonl_line(tmp_path):
    with pytest.raises(DataError, match=r"line 2, column 2: invalid JSON"):
        read_table(write(tmp_path, "t.jsonl", '{"a": 1}\n{oops\n'))


def test_unsupported_suffix(tmp_path):
    with pytest.raises(DataError, match="unsupported file type '.xlsx'"):
        read_table(write(tmp_path, "t.xlsx", "x"))


@pytest.mark.parametrize("suffix", [".csv", ".parquet", ".jsonl"])
def test_writer_leaves_nothing_under_the_final_name_on_failure(tmp_path, suffix):
    path = tmp_path / f"out{suffix}"
    with pytest.raises(KeyboardInterrupt):
        with TableWriter(path) as writer:
            writer.write(pd.DataFrame({"a": [1, 2]}))
            raise KeyboardInterrupt
    assert list(tmp_path.iterdir()) == []


def test_writer_streams_chunks(tmp_path):
    path = tmp_path / "out.jsonl"
    with TableWriter(path) as writer:
        writer.write(pd.DataFrame({"a": [1, 2]}))
        writer.write(pd.DataFrame({"a": [3]}))
    assert read_table(path)["a"].tolist() == [1, 2, 3]
