"""One source for each default (issue #14.5): names the CLI and the library share live in
pipeline/names.py, and the real clock is read in one place, `names.utc_now`."""
from __future__ import annotations

import ast
from pathlib import Path

from pipeline import names
from pipeline.delivery.transports import choose_transport
from pipeline.errors import SphereError

ROOT = Path(__file__).resolve().parent.parent


def test_only_names_reads_the_clock() -> None:
    # Every other module takes `now` (or a clock) from its caller; the default is utc_now.
    readers = []
    for path in sorted((ROOT / "pipeline").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and \
                    node.func.attr in ("now", "utcnow", "today") and \
                    isinstance(node.func.value, (ast.Attribute, ast.Name)) and \
                    getattr(node.func.value, "attr", getattr(node.func.value, "id", "")) in (
                        "datetime", "date"):
                readers.append(f"{path.relative_to(ROOT)}:{node.lineno}")
    assert [r.split(":")[0] for r in readers] == ["pipeline/names.py"], readers


def test_names_imports_only_the_standard_library() -> None:
    tree = ast.parse((ROOT / "pipeline" / "names.py").read_text(encoding="utf-8"))
    imported = {alias.name for node in ast.walk(tree) if isinstance(node, ast.Import)
                for alias in node.names}
    imported |= {node.module or "" for node in ast.walk(tree)
                 if isinstance(node, ast.ImportFrom)}
    assert imported <= {"__future__", "datetime", "enum"}


def test_an_unknown_transport_names_the_one_list(project: Path) -> None:
    from pipeline.config import load_config
    try:
        choose_transport(load_config(project), "pigeon")
    except SphereError as exc:
        assert exc.hint == f"use {names.one_of(names.TRANSPORTS)}" == \
            "use outbox, smtp or sendgrid"
    else:
        raise AssertionError("an unknown transport was accepted")
