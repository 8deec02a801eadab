"""Loading the configuration is light (issue #14): `pipeline.config` does not import the
renderer, so `sphere --help` and config checks pay for no MJML, Markdown or HTML cleaning."""
from __future__ import annotations

import ast
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
HEAVY = ("jinja2", "mjml", "nh3", "markdown_it", "apscheduler", "psycopg",
         "pipeline.rendering.render", "pipeline.rendering.strings")


def _loaded_after(code: str) -> list[str]:
    """Which heavy modules are in sys.modules after running `code` in a fresh Python."""
    probe = code + f"\nimport sys\nprint(' '.join(m for m in {HEAVY!r} if m in sys.modules))"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                         env=env, check=True, cwd=ROOT)
    return out.stdout.split()


def test_importing_config_imports_no_template_engine() -> None:
    assert _loaded_after("import pipeline.config") == []


def test_loading_a_config_imports_no_template_engine_scheduler_or_driver(
        project: Path) -> None:
    # Subjects are rendered by `sphere check` and before each send, crontab lines are
    # checked by a light parser: loading the files needs neither Jinja nor APScheduler.
    loaded = _loaded_after(f"from pipeline.config import load_config\n"
                           f"load_config(__import__('pathlib').Path({str(project)!r}))")
    assert loaded == []


def test_config_source_names_no_rendering_module() -> None:
    # Lazy imports count too: config reaches no rendering module at all.
    found = set()
    for path in (ROOT / "pipeline" / "config").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith(
                    "pipeline.rendering"):
                found.add(node.module)
    assert found == set()
