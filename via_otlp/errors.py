"""The small exception tree of via-otlp: what happened, and what to do about it."""

from __future__ import annotations


class ViaError(Exception):
    """Base of every error via-otlp raises on purpose.

    `hint` says what the user can do about it; it is printed after the message.
    """

    def __init__(self, message: str, *, hint: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return f"{self.message} ({self.hint})" if self.hint else self.message


class ConfigError(ViaError):
    """A configuration value is missing, unknown or out of range; `path` is its key path."""

    def __init__(self, path: str, message: str, *, hint: str = "") -> None:
        self.path = path
        super().__init__(f"{path}: {message}" if path else message, hint=hint)


class InputError(ViaError):
    """Telemetry that cannot be decoded: permanent, the sender must not retry it."""


class UpstreamError(ViaError):
    """A dependency (PostgreSQL, Qdrant, a downstream OTLP endpoint) failed; `retryable` says if it may pass."""

    def __init__(self, message: str, *, retryable: bool = True, hint: str = "") -> None:
        super().__init__(message, hint=hint)
        self.retryable = retryable


class StartupError(ViaError):
    """A stage could not start (port in use, missing binary); the service exits non-zero."""
