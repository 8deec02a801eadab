"""YAML loading that remembers the line of every key, so errors can name it."""
from __future__ import annotations

import difflib
from pathlib import Path
from typing import Any

import yaml

from pipeline.errors import Problem


class LineDict(dict):
    """A mapping that knows the line it starts on and the line of each key, and which
    keys the loader asked for, so keys nobody reads can be reported as unknown."""

    line: int = 0
    lines: dict[str, int]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.seen: set[str] = set()
        self.iterated = False  # a mapping of names (campaigns, synonyms): all keys valid

    def line_of(self, key: str) -> int:
        """The 1-based line of `key`, or of the mapping itself when absent."""
        return self.lines.get(key, self.line)

    def get(self, key: Any, default: Any = None) -> Any:
        self.seen.add(key)
        return super().get(key, default)

    def __getitem__(self, key: Any) -> Any:
        self.seen.add(key)
        return super().__getitem__(key)

    def __contains__(self, key: object) -> bool:
        self.seen.add(key)  # type: ignore[arg-type]
        return super().__contains__(key)

    def __iter__(self):  # type: ignore[no-untyped-def]
        self.iterated = True
        return super().__iter__()

    def items(self):  # type: ignore[no-untyped-def]
        self.iterated = True
        return super().items()

    def keys(self):  # type: ignore[no-untyped-def]
        self.iterated = True
        return super().keys()


def unknown_keys(data: Any, shown_as: str, path: str = "") -> list[Problem]:
    """Every key in the file that the loader never read: a typo such as `quiet_hour`
    would otherwise switch a setting off without a word."""
    problems: list[Problem] = []
    if isinstance(data, LineDict):
        for key in list(dict.keys(data)):
            value = dict.__getitem__(data, key)
            if not data.iterated and key not in data.seen:
                near = difflib.get_close_matches(str(key), [str(k) for k in data.seen], 1)
                fix = f"did you mean {near[0]!r}?" if near else \
                    "remove it, or check the README for the keys this block takes"
                problems.append(Problem(shown_as, data.line_of(str(key)), f"{path}{key}",
                                        f"unknown key {key!r}", fix))
                continue
            problems += unknown_keys(value, shown_as, f"{path}{key}.")
    elif isinstance(data, LineList):
        for i, item in enumerate(data):
            problems += unknown_keys(item, shown_as, f"{path.rstrip('.')}[{i}].")
    return problems


class LineList(list):
    """A sequence that knows the line it starts on and the line of each item."""

    line: int = 0
    lines: list[int]


class _LineLoader(yaml.SafeLoader):
    """SafeLoader whose mappings and sequences carry line numbers."""


def _construct_mapping(loader: _LineLoader, node: yaml.MappingNode) -> LineDict:
    loader.flatten_mapping(node)
    result = LineDict()
    result.line = node.start_mark.line + 1
    result.lines = {}
    for key_node, value_node in node.value:
        key = loader.construct_object(key_node, deep=True)
        result[key] = loader.construct_object(value_node, deep=True)
        result.lines[str(key)] = key_node.start_mark.line + 1
    return result


def _construct_sequence(loader: _LineLoader, node: yaml.SequenceNode) -> LineList:
    result = LineList(loader.construct_object(child, deep=True) for child in node.value)
    result.line = node.start_mark.line + 1
    result.lines = [child.start_mark.line + 1 for child in node.value]
    return result


_LineLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)
_LineLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_SEQUENCE_TAG, _construct_sequence)


def load_yaml(path: Path, shown_as: str) -> tuple[Any, list[Problem]]:
    """Parse one YAML file; on a syntax error return a Problem naming the line."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None, [Problem(shown_as, 0, "", "file not found",
                              "create it, or run `sphere init DIR` for a starter project")]
    except UnicodeDecodeError as exc:
        return None, [Problem(shown_as, 0, "", f"not UTF-8 text ({exc.reason})",
                              "save the file as UTF-8")]
    try:
        data = yaml.load(text, Loader=_LineLoader)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark else 0
        problem = (exc.problem or str(exc)).strip()
        context = f" {exc.context}" if exc.context else ""
        return None, [Problem(shown_as, line, "", f"YAML syntax error: {problem}{context}",
                              "check indentation and quoting near this line; "
                              "quote values that contain ': ' or start with '{' or '*'")]
    except yaml.YAMLError as exc:
        return None, [Problem(shown_as, 0, "", f"YAML error: {exc}", "fix the YAML syntax")]
    return data, []
