"""One exception type per pipeline stage; the CLI turns any of them into a message and an exit code."""


class LlmsynthError(Exception):
    """Base class: an error a user can fix, with a message that says how."""


class DataError(LlmsynthError):
    """Bad input data: unreadable file, malformed rows, unusable columns."""


class ScrubError(LlmsynthError):
    """The scrubber cannot be configured as asked."""


class ModelError(LlmsynthError):
    """A base model or synthesizer directory that cannot be used."""


class TrainError(LlmsynthError):
    """Training cannot start or resume."""


class GenerateError(LlmsynthError):
    """Sampling cannot honour the request (bad condition, bad count)."""
