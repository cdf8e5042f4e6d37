"""One root exception and a few specific ones.

Entry points catch `EquilibrateError` and print its message as one line (exit code 2);
anything else is a bug and keeps its traceback.
"""

from __future__ import annotations


class EquilibrateError(Exception):
    """Root of every error Equilibrate raises on purpose."""

    exit_code = 2


class ConfigError(EquilibrateError):
    """A setting is missing, malformed or out of range."""


class ServiceUnavailableError(EquilibrateError):
    """Kafka, Redis or another service does not answer."""


class PortInUseError(EquilibrateError):
    """A port we were asked to listen on is taken by another process."""


class MissingDependencyError(EquilibrateError):
    """A binary or optional package the command needs is not installed."""


class InvalidEventError(EquilibrateError):
    """An event failed validation; `reason` is a short machine-friendly code."""

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason
        self.detail = detail
