"""Sphere's own exceptions: each carries where the problem is and how to fix it."""
from __future__ import annotations

from dataclasses import dataclass


class SphereError(Exception):
    """Base class: a message for the user plus a hint that says what to do."""

    def __init__(self, message: str, hint: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return f"{self.message} ({self.hint})" if self.hint else self.message


@dataclass(frozen=True)
class Problem:
    """One problem found in a user file: `file:line: key: problem (fix)`."""

    file: str
    line: int
    key: str
    problem: str
    fix: str = ""
    severity: str = "error"  # "error" stops a run; "warning" is reported and skipped

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}" if self.line else self.file
        key = f" {self.key}:" if self.key else ""
        fix = f" ({self.fix})" if self.fix else ""
        return f"{where}:{key} {self.problem}{fix}"


class ConfigError(SphereError):
    """One or more problems in the user's files; nothing was run."""

    def __init__(self, problems: list[Problem]) -> None:
        self.problems = problems
        first = problems[0] if problems else None
        super().__init__(
            "\n".join(str(p) for p in problems),
            hint=first.fix if first else "",
        )

    def __str__(self) -> str:
        return self.message


class StoreError(SphereError):
    """The SQLite state could not be read or written."""


class TransportError(SphereError):
    """A transport refused or failed to take a message."""

    def __init__(self, message: str, hint: str = "", retryable: bool = False) -> None:
        super().__init__(message, hint)
        self.retryable = retryable


class LockedError(SphereError):
    """Another Sphere process holds the project's lock."""
