"""Reading typed values out of a YAML file while collecting problems with file:line."""
from __future__ import annotations

import dataclasses
import re
import zoneinfo
from typing import Any

from pipeline.config.settings import ConfigString
from pipeline.errors import Problem
from pipeline.yamlfile import LineDict

NAME_RE = re.compile(r"^[a-z0-9][a-z0-9_-]*$")
_DURATION_RE = re.compile(r"^(\d+)\s*([dwmy])$")


class Check:
    """Collects problems for one file while reading typed values out of it."""

    def __init__(self, file: str) -> None:
        self.file = file
        self.problems: list[Problem] = []
        # Subjects and preheaders read (Jinja, checked with the templates, not here).
        self.strings: list[ConfigString] = []

    def add(self, node: Any, key: str, problem: str, fix: str = "", line: int = 0,
            severity: str = "error") -> None:
        if not line:
            line = node.line_of(key.rsplit(".", 1)[-1]) if isinstance(node, LineDict) else \
                getattr(node, "line", 0)
        self.problems.append(Problem(self.file, line, key, problem, fix, severity))

    def mapping(self, node: Any, key: str, line: int = 0) -> LineDict:
        if isinstance(node, LineDict):
            return node
        if node is not None:
            self.add(None, key, f"must be a mapping of keys, not {type(node).__name__}",
                     "indent the keys below it", line=line)
        empty = LineDict()
        empty.line, empty.lines = line, {}
        return empty

    def text(self, node: LineDict, key: str, path: str, required: bool = False,
             default: str = "", fix: str = "") -> str:
        value = node.get(key)
        if value is None or value == "":
            if required:
                self.add(node, f"{path}{key}", "is required", fix or f"add `{key}: ...`")
            return default
        if isinstance(value, (dict, list)):
            self.add(node, f"{path}{key}", "must be text", fix or "give a single value")
            return default
        return str(value).strip() if not isinstance(value, str) or "\n" not in value else value

    def integer(self, node: LineDict, key: str, path: str, default: int | None,
                minimum: int = 0) -> int | None:
        value = node.get(key, default)
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
            self.add(node, f"{path}{key}", f"must be a whole number >= {minimum}, got {value!r}",
                     f"for example `{key}: {default if default is not None else minimum}`")
            return default
        return value

    def choice(self, node: LineDict, key: str, path: str, choices: tuple[str, ...],
               default: str | None = None) -> str:
        value = node.get(key, default)
        if value not in choices:
            self.add(node, f"{path}{key}",
                     "is required" if value is None else f"unknown value {value!r}",
                     f"use one of: {' | '.join(choices)}")
            # An invalid value yields '' (an enum field takes any member) so dependent
            # checks stay quiet; the run is refused anyway because of this error.
            return default or ""
        return str(value)

    def names(self, node: LineDict, key: str, path: str) -> tuple[str, ...]:
        value = node.get(key)
        if value is None:
            return ()
        items = value if isinstance(value, list) else [value]
        if not all(isinstance(v, (str, int, float)) for v in items):
            self.add(node, f"{path}{key}", "must be a name or a list of names",
                     f"for example `{key}: [a, b]`")
            return ()
        return tuple(str(v).strip() for v in items if str(v).strip())

    def timezone(self, node: LineDict, key: str, path: str, default: str) -> str:
        value = self.text(node, key, path, default=default)
        try:
            zoneinfo.ZoneInfo(value)
        except (zoneinfo.ZoneInfoNotFoundError, ValueError):
            self.add(node, f"{path}{key}", f"unknown time zone {value!r}",
                     "use an IANA name such as America/Los_Angeles")
            return default
        return value


def default(cls: type, name: str) -> Any:
    """A dataclass field's default: each default is written once, on its field, and the
    loader asks for it here rather than restating it."""
    for f in dataclasses.fields(cls):
        if f.name == name:
            if f.default is not dataclasses.MISSING:
                return f.default
            if f.default_factory is not dataclasses.MISSING:
                return f.default_factory()
    raise KeyError(f"{cls.__name__}.{name} has no default")


def parse_duration_days(text: str) -> int | None:
    """'3d' -> 3, '2w' -> 14, '1m' -> 30, '1y' -> 365; None when malformed."""
    m = _DURATION_RE.match(str(text).strip().lower())
    if not m:
        return None
    return int(m.group(1)) * {"d": 1, "w": 7, "m": 30, "y": 365}[m.group(2)]
