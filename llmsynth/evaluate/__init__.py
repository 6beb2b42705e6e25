"""Evaluation: fidelity, utility and privacy of synthetic tables and conversations against a holdout.

`evaluate_tables` / `evaluate_chats` compute the figures and verdicts; `write_report` writes metrics.json and a
self-contained report.html; `valid_rows` checks any generator's rows against a schema's codecs.
"""

__all__ = ["Evaluation", "evaluate_chats", "evaluate_files", "evaluate_records", "evaluate_tables", "valid_rows",
           "write_report"]


def __getattr__(name: str):
    # Imported on first use, so that the command line's help (which lists the checks) does not load pandas and sklearn.
    if name == "write_report":
        from llmsynth.evaluate.report import write_report

        return write_report
    if name == "valid_rows":
        from llmsynth.evaluate.validity import valid_rows

        return valid_rows
    if name in __all__:
        from llmsynth.evaluate import suite

        return getattr(suite, name)
    raise AttributeError(f"module 'llmsynth.evaluate' has no attribute {name!r}")
