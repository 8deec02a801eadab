"""Sphere's own exceptions: each carries where the problem is and how to fix it."""
from __future__ import annotations

import re
from dataclasses import dataclass
from urllib.parse import unquote_plus, urlsplit, urlunsplit

# Query parameters that carry a secret (an API key in a feed URL, a signed token).
_SECRET_PARAMS = re.compile(r"(?i)^(.*[_-])?(key|token|secret|password|passwd|pwd|sig|"
                            r"signature|auth|access[_-]?token|api[_-]?key|"
                            r"credentials?|session)$")
# A URL in running text; a trailing full stop, comma, colon or bracket is the sentence's.
_URL = re.compile(r"\b[a-zA-Z][a-zA-Z0-9+.-]*://[^\s'\"<>]*[^\s'\"<>.,;:!?)\]]")
HIDDEN = "***"


def redact_url(url: str) -> str:
    """The URL as it may be shown or logged: no user name or password, and no value of a
    query parameter that holds a secret (key=, token=, ...)."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return url
    netloc = parts.netloc
    if "@" in netloc:
        netloc = f"{HIDDEN}@{netloc.rsplit('@', 1)[1]}"
    # Parameter by parameter, the others left byte for byte as they were.
    query = "&".join(
        f"{p.split('=', 1)[0]}={HIDDEN}"
        if "=" in p and _SECRET_PARAMS.match(unquote_plus(p.split("=", 1)[0])) else p
        for p in parts.query.split("&")) if parts.query else ""
    if netloc == parts.netloc and query == parts.query:
        return url
    return urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))


def header_safe(name: str, value: str, spaces: bool = False) -> str:
    """`value` of the environment variable `name` if it can go in a protocol header or
    login as is (printable ASCII); else a SphereError that says where, never what."""
    for position, char in enumerate(value, 1):
        if not (" " <= char < "\x7f") or (char == " " and not spaces):
            what = "a space" if char == " " else "a control character" if char < " " or \
                char == "\x7f" else "a character that is not ASCII"
            raise SphereError(f"{name} holds {what} at position {position}",
                              "copy the value again from where it was issued; it must be "
                              "plain ASCII" + ("" if spaces else " with no spaces"))
    return value


def redact(text: str) -> str:
    """`text` with every URL in it passed through redact_url: for error lines and logs
    that quote a URL (an exception's message, a server's answer)."""
    return _URL.sub(lambda m: redact_url(m.group(0)), text) if "://" in text else text


class SphereError(Exception):
    """Base class: a message for the user plus a hint that says what to do."""

    def __init__(self, message: str, hint: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        # Every error the CLI prints goes through here: no URL in it shows a password.
        return redact(f"{self.message} ({self.hint})" if self.hint else self.message)


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
