"""Evaluation: fidelity, utility and privacy of synthetic tables and conversations against a holdout.

`evaluate_tables` / `evaluate_chats` compute the figures and verdicts; `write_report` writes metrics.json and a
self-contained report.html; `valid_rows` checks any generator's rows against a schema's codecs.
"""

from llmsynth.evaluate.report import write_report
from llmsynth.evaluate.suite import (
    Evaluation, evaluate_chats, evaluate_files, evaluate_records, evaluate_tables,
)
from llmsynth.evaluate.validity import valid_rows

__all__ = ["Evaluation", "evaluate_chats", "evaluate_files", "evaluate_records", "evaluate_tables", "valid_rows",
           "write_report"]
