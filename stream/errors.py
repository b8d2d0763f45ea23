"""The stream worker's exceptions: each subclass says what the caller must do with it."""

from __future__ import annotations

from model.errors import AnomalyBertError


class StreamError(AnomalyBertError):
    """Root of the worker's own errors."""


class InvalidRecord(StreamError, ValueError):
    """A telemetry message cannot be used: send it to the dead-letter topic with `code` and the reason."""

    def __init__(self, code: str, reason: str) -> None:
        super().__init__(reason)
        self.code = code
        self.reason = reason


class StartupError(StreamError):
    """The broker, Redis or the bundle is unusable at start-up: fail fast with this message."""


class StateConflict(StreamError):
    """Another worker wrote the series first (compare-and-set lost): reload the state and redo the batch."""


class CorruptState(StreamError):
    """A stored series state is undecodable or of another geometry: log it and start the series anew."""
