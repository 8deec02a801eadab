"""`sphere templates`: the built-in templates and the project's overrides (part of the
CLI; main.py registers it)."""
from __future__ import annotations

from typing import TYPE_CHECKING

from pipeline.cli.app import CONTEXT, main, opened, out, project_option

if TYPE_CHECKING:
    from pathlib import Path


@main.command("templates", context_settings=CONTEXT)
@project_option
def templates_cmd(project: Path) -> None:
    """List the built-in templates, which ones your project overrides, and who uses them."""
    from pipeline.resources import bundled
    with opened(project) as p:
        listing = p.templates()
        out.print("Templates (a file of the same name in templates/ overrides a built-in "
                  "one):", markup=False)
        for t in listing:
            state = "yours" if not t.built_in else "overridden" if t.overridden else "built-in"
            used = ", ".join(t.used_by) or ("partial" if t.name.startswith("partials/")
                                            else "not used")
            out.print(f"  {t.name:<30} {state:<11} {used}", markup=False)
        out.print(f"The built-in files are in {bundled('templates')}: copy one into "
                  f"{p.config.project / 'templates'} to change it; `sphere check` then "
                  "verifies it.", markup=False)
