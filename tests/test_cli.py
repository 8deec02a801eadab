"""The command line reads like its docs: every command and option has help text, and
every command is in the README's table."""
from __future__ import annotations

import click

from pipeline.cli.main import main
from tests.conftest import REPO


def _commands(group: click.Group, prefix: str = "sphere") -> list[tuple[str, click.Command]]:
    out = []
    for name, cmd in sorted(group.commands.items()):
        out.append((f"{prefix} {name}", cmd))
        if isinstance(cmd, click.Group):
            out += _commands(cmd, f"{prefix} {name}")
    return out


def test_every_command_and_option_has_help() -> None:
    missing = []
    for name, cmd in _commands(main):
        if not (cmd.help or "").strip():
            missing.append(name)
        for param in cmd.params:
            if isinstance(param, click.Option) and not (param.help or "").strip() \
                    and "--help" not in param.opts:
                missing.append(f"{name} {param.opts[0]}")
    assert not missing, f"no help text: {missing}"


def test_every_command_is_documented_in_the_readme() -> None:
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    undocumented = [name for name, cmd in _commands(main)
                    if not isinstance(cmd, click.Group) and f"`{name}" not in readme]
    assert not undocumented, f"missing from README's Commands table: {undocumented}"


# Libraries a command imports when it runs; `sphere --help` must not pay for them.
HEAVY = ("httpx", "sendgrid", "feedparser", "apscheduler", "email_validator", "rich",
         "jinja2", "mjml", "sqlalchemy", "cryptography", "nh3", "markdown_it")


def test_importing_the_cli_imports_no_heavy_library() -> None:
    import json
    import os
    import subprocess
    import sys
    probe = ("import json, sys; import pipeline.cli.main; "
             "print(json.dumps(sorted(m for m in sys.modules)))")
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    loaded = json.loads(subprocess.run([sys.executable, "-c", probe], capture_output=True,
                                       text=True, check=True, env=env, cwd=REPO).stdout)
    heavy = sorted({m.split(".")[0] for m in loaded} & set(HEAVY))
    assert heavy == [], f"importing pipeline.cli.main imported {heavy}"
    # Nor our own modules beyond the CLI's and the cheap names its options list: their
    # dataclasses cost more than click.
    ours = sorted(m for m in loaded if m.startswith("pipeline."))
    assert ours and all(m in ("pipeline.cli", "pipeline.names") or m.startswith("pipeline.cli.")
                        for m in ours), ours
    # ... and --help still works (and lists every command) without them.
    result = subprocess.run([sys.executable, "-m", "pipeline", "--help"], capture_output=True,
                            text=True, env=env, cwd=REPO, check=False)
    assert result.returncode == 0 and "contacts" in result.stdout and "send" in result.stdout


