"""The `sphere` command line (the entry point `pipeline.cli.main:main`): the click group
of app.py with every command module's commands registered on it. A command opens the
Project (pipeline/project.py), calls one of its methods and prints; only the CLI prints
or exits."""
from __future__ import annotations

# Importing a command module registers its commands on the group; none imports this one.
from pipeline.cli import (  # noqa: F401
    contacts,
    db,
    schedule,
    sending,
    sends,
    state,
    status,
    studio,
    templates,
    users,
)
from pipeline.cli.app import main

__all__ = ["main"]
