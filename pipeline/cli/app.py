"""The `sphere` click group and what every command shares: the consoles, the clock, one
clear line per error, and `opened()`, which opens the Project a command works on. The
command modules import from here; main.py imports them all. Only the CLI prints."""
from __future__ import annotations

import datetime as dt
import os
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, NoReturn

import click

from pipeline import __version__, names

if TYPE_CHECKING:
    from pathlib import Path

    from rich.progress import Progress

    from pipeline.models import RunSummary
    from pipeline.project import Project

# Each command imports what it uses (our modules too: their dataclasses and regexes
# alone cost more than click): importing everything up front made `sphere --help` take
# 9 x `python -c "import click"`. tests/test_cli.py checks the CLI's modules stay light.


class LazyConsole:
    """rich's Console, made on first use."""

    def __init__(self, stderr: bool = False) -> None:
        self._stderr = stderr
        self._console: Any = None

    def real(self) -> Any:
        """The Console itself (for rich's own classes that want one)."""
        if self._console is None:
            from rich.console import Console
            self._console = Console(stderr=self._stderr, highlight=False, soft_wrap=True)
        return self._console

    def __getattr__(self, name: str) -> Any:
        return getattr(self.real(), name)


def escape(text: str) -> str:
    """Escape rich markup in text we did not write."""
    from rich.markup import escape as rich_escape
    return rich_escape(text)


out = LazyConsole()
err = LazyConsole(stderr=True)
CONTEXT = {"help_option_names": ["-h", "--help"]}


def clock() -> Callable[[], dt.datetime]:
    """The current time; SPHERE_NOW (ISO 8601) pins it for demos and tests."""
    pinned = os.environ.get("SPHERE_NOW")
    if pinned:
        try:
            moment = dt.datetime.fromisoformat(pinned)
        except ValueError:
            raise click.BadParameter(f"SPHERE_NOW={pinned!r} is not an ISO 8601 time") from None
        moment = moment if moment.tzinfo else moment.replace(tzinfo=dt.UTC)
        return lambda: moment
    return names.utc_now


def fail(message: str, code: int = 1) -> NoReturn:
    """Print one error and exit."""
    from pipeline.errors import redact
    err.print(f"[bold red]Error:[/] {escape(redact(message))}", markup=True,
              highlight=False)
    sys.exit(code)


@contextmanager
def handled(project: Project | None = None) -> Iterator[None]:
    """Turn Sphere's own errors into one clear message and exit status 1 (a database
    error names `project`'s database file)."""
    from pipeline.errors import ConfigError, SphereError
    from pipeline.state.interface import backend_errors, describe_failure
    try:
        yield
    except ConfigError as exc:
        for p in exc.problems:
            err.print(str(p), markup=False)
        fail(f"{len(exc.problems)} problem(s) in your files; nothing was run")
    except SphereError as exc:
        fail(str(exc))
    except backend_errors() as exc:  # the database failed under a command (damage, a lock)
        fail(str(describe_failure(project.origin if project is not None else None, exc)))


@contextmanager
def opened(folder: Path, **store_options: bool) -> Iterator[Project]:
    """The Project in `folder` for one command: its config loaded (warnings printed),
    its errors one clear line, its store closed when the command ends."""
    from pipeline.project import Project
    project = Project.open(folder, clock(), **store_options)
    with handled(project):
        try:
            for w in project.config.warnings:
                err.print(f"warning: {w}", markup=False)
            yield project
        finally:
            project.close()


def progress_bar(quiet: bool, label: str) -> Progress | None:
    """A progress bar on interactive terminals only; --quiet silences it."""
    if quiet or not err.is_terminal:
        return None
    from rich import progress as rp
    console = err.real() if isinstance(err, LazyConsole) else err  # or a test's Console
    return rp.Progress(rp.TextColumn(label), rp.BarColumn(), rp.MofNCompleteColumn(),
                       rp.TimeElapsedColumn(), console=console, transient=True)


def when(stamp: str | None) -> str:
    """An ISO time as `YYYY-MM-DD HH:MM`."""
    return stamp[:16].replace("T", " ") if stamp else ""


def summary_parts(summary: RunSummary, verb: str = "Sent") -> list[str]:
    """The pieces of a send's one-line summary (outcomes.summary_parts, imported when a
    command prints one)."""
    from pipeline.outcomes import summary_parts as parts
    return parts(summary, verb)


class PathArg(click.Path):
    """click.Path whose value is a pathlib.Path; pathlib is imported only when a command
    runs (not for `sphere --help`)."""

    def coerce_path_result(self, value: Any) -> Any:
        from pathlib import Path
        return value if isinstance(value, Path) else Path(value)


project_option = click.option("--project", "project", type=PathArg(file_okay=False),
                              default=".", show_default=True,
                              help="The project folder (content_sources.yaml, campaigns.yaml, "
                                   "audiences/).")
quiet_option = click.option("-q", "--quiet", is_flag=True, help="No progress bar.")
# The transports `--transport` accepts (pipeline/names.py is cheap enough for --help).
TRANSPORTS = names.TRANSPORTS


@click.group(context_settings=CONTEXT)
@click.version_option(__version__, prog_name="sphere")
def main() -> None:
    """Sphere: useful, personal email digests that keep you top of mind."""
