"""`sphere user add|list|passwd|remove`: the studio's accounts for team mode (issue #17;
part of the CLI, main.py registers it). A password is never a command-line argument (it
would land in the shell's history and in `ps`): it comes from a prompt, from
SPHERE_USER_PASSWORD, or from the first line of standard input."""
from __future__ import annotations

import os
import sys
from typing import TYPE_CHECKING

import click

from pipeline.cli.app import CONTEXT, fail, main, opened, out, project_option

if TYPE_CHECKING:
    from pathlib import Path

PASSWORD_ENV = "SPHERE_USER_PASSWORD"
MODE = ("The studio asks for these logins when the project's state is in PostgreSQL "
        "(team mode); on SQLite it keeps its printed token.")

password_stdin_option = click.option(
    "--password-stdin", is_flag=True,
    help="Read the password from the first line of standard input (for scripts), "
         f"instead of {PASSWORD_ENV} or a prompt. Never pass a password as an argument.")


def _password(from_stdin: bool) -> str:
    """The new password: stdin's first line, else SPHERE_USER_PASSWORD, else a hidden
    prompt asked twice."""
    if from_stdin:
        line = sys.stdin.readline().rstrip("\r\n")
        if not line:
            fail("no password on standard input (--password-stdin reads its first line)")
        return line
    from_env = os.environ.get(PASSWORD_ENV, "")
    if from_env:
        return from_env
    return str(click.prompt("Password", hide_input=True, confirmation_prompt=True))


@main.group("user", context_settings=CONTEXT)
def user() -> None:
    """The studio's accounts for team mode (PostgreSQL): who may log in, as agent or
    assistant. The password comes from a prompt, SPHERE_USER_PASSWORD or
    --password-stdin, never from an argument (shell history)."""


@user.command("add", context_settings=CONTEXT)
@click.argument("login")
@click.option("--role", required=True, type=click.Choice(["agent", "assistant"]),
              help="agent: everything; assistant: draft, personalise and review, but "
                   "not approve a send nor change the sender's settings.")
@password_stdin_option
@project_option
def user_add(login: str, role: str, password_stdin: bool, project: Path) -> None:
    """Create the studio account LOGIN with a password (asked twice, hidden; or
    SPHERE_USER_PASSWORD; or --password-stdin), stored as an argon2 hash."""
    password = _password(password_stdin)
    with opened(project) as p:
        account = p.add_user(login, role, password)
    out.print(f"Account {account.login} ({account.role}) added. {MODE}", markup=False)


@user.command("list", context_settings=CONTEXT)
@project_option
def user_list(project: Path) -> None:
    """List the studio accounts: login, role, when created."""
    with opened(project) as p:
        accounts = p.users()
    if not accounts:
        out.print("No accounts. Add one: sphere user add LOGIN --role agent", markup=False)
        return
    for a in accounts:
        out.print(f"{a.login}  {a.role}  created {a.created[:16].replace('T', ' ')} UTC",
                  markup=False)


@user.command("passwd", context_settings=CONTEXT)
@click.argument("login")
@password_stdin_option
@project_option
def user_passwd(login: str, password_stdin: bool, project: Path) -> None:
    """Give the account LOGIN a new password (asked twice, hidden; or
    SPHERE_USER_PASSWORD; or --password-stdin)."""
    password = _password(password_stdin)
    with opened(project) as p:
        p.set_password(login, password)
    out.print(f"Password of {login.strip().lower()} changed.", markup=False)


@user.command("remove", context_settings=CONTEXT)
@click.argument("login")
@project_option
def user_remove(login: str, project: Path) -> None:
    """Delete the account LOGIN; its studio sessions end at their next request."""
    with opened(project) as p:
        p.remove_user(login)
    out.print(f"Account {login.strip().lower()} removed.", markup=False)
