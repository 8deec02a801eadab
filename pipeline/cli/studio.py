"""`sphere studio`: the browser app over the same library (part of the CLI; main.py
registers it). One process serves the pages, SendGrid's events and the
one-click unsubscribes, and runs the daemon's ticks."""
from __future__ import annotations

import os
import sys
from typing import TYPE_CHECKING

import click

from pipeline.cli.app import CONTEXT, err, main, opened, project_option

if TYPE_CHECKING:
    from pathlib import Path

# Like every command, it imports what it uses when it runs: `sphere --help` stays light.


def _loopback(host: str) -> bool:
    import ipaddress
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


@main.command("studio", context_settings=CONTEXT)
@project_option
@click.option("--host", default="127.0.0.1", show_default=True,
              help="Address to listen on; anything but this machine's own is warned about.")
@click.option("--port", default=8765, show_default=True, type=click.IntRange(0, 65535),
              help="Port to listen on (0: any free port).")
@click.option("--no-daemon", is_flag=True,
              help="Do not run the scheduler's ticks in this process (`sphere run` does).")
def studio(project: Path, host: str, port: int, no_daemon: bool) -> None:
    """Open Sphere Studio: review and approve sends, add personal notes, edit contacts,
    in the browser. Prints `Studio: http://HOST:PORT/login?token=TOKEN`; open it to log
    in (SPHERE_STUDIO_TOKEN sets the token). In team mode (PostgreSQL) it prints
    `Studio: http://HOST:PORT/login` and asks for a login and password instead (accounts
    of `sphere user add`; it refuses to start without an agent account)."""
    with opened(project) as p:
        # Migrates now, and fails now if the folder is unusable or, in team mode, no one
        # could log in.
        team = p.studio_logins()
        p.close()
        config = p.config
        # uvicorn and Starlette are loaded only by the commands that serve.
        import secrets

        from pipeline.delivery.webhook import (
            PUBLIC_KEY_ENV,
            public_key_from_env,
            unsubscribe_paths,
        )
        from pipeline.errors import LockedError, SphereError
        from pipeline.studio.app import studio_app
        from pipeline.studio.jobs import Worker
        from pipeline.studio.security import TOKEN_ENV
        from pipeline.web.server import Server, bind
        token = "" if team else \
            os.environ.get(TOKEN_ENV, "").strip() or secrets.token_urlsafe(24)
        try:
            sock = bind(host, port)
        except OSError as exc:
            raise SphereError(f"cannot listen on {host}:{port}: {exc.strerror or exc}",
                              "choose another --port, or stop what is using it") from None
        root = config.project
        worker = Worker.for_project(p)
        key = public_key_from_env()
        app = studio_app(root, p.open_store, worker, token, key,
                         unsubscribe_paths(config.sender.unsubscribe_url),
                         config.sender.name, p.clock, team=team)
        server = Server(app, sock)
        if not _loopback(host):
            who = "anyone who reaches it may try passwords" if team else \
                "anyone with the printed address can log in"
            err.print(f"warning: the studio listens on {host}, reachable from other "
                      f"machines; {who}. Prefer --host 127.0.0.1 (the default) behind a "
                      "TLS proxy", markup=False)
        if key is None:
            err.print(f"warning: {PUBLIC_KEY_ENV} is not set: SendGrid events are refused "
                      "(403) until you export it", markup=False)
        if not no_daemon:
            try:
                worker.start_daemon(config)
            except LockedError as exc:
                err.print(f"warning: {exc}; the studio runs without the scheduler",
                          markup=False)
        # Its own line, flushed at once: a supervisor reading a pipe must see it.
        sys.stdout.write(f"Studio: {server.url}/login\n" if team else
                         f"Studio: {server.url}/login?token={token}\n")
        sys.stdout.flush()
        try:
            server.run()
        except KeyboardInterrupt:
            pass  # uvicorn re-raises the Ctrl-C it handled, once it has shut down
        finally:
            worker.stop()
            sock.close()
