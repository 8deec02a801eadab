"""The command line reads like its docs: every command and option has help text, and
every command is in the README's table."""
from __future__ import annotations

import click

from pipeline.cli import main
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
