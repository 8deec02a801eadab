"""A throwaway PostgreSQL server for the tests: `initdb` into a temporary folder as an
unprivileged user, listening only on 127.0.0.1 on a free port, stopped at the end.

Debian's `postgresql` package puts the server programs in /usr/lib/postgresql/N/bin (not
on PATH); .ci/run installs it and sets SPHERE_REQUIRE_POSTGRES=1 so that a machine
without it fails the PostgreSQL tests instead of skipping them."""
from __future__ import annotations

import glob
import itertools
import os
import pwd
import secrets
import shutil
import socket
import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

REQUIRE_ENV = "SPHERE_REQUIRE_POSTGRES"
BIN_ENV = "SPHERE_PG_BIN"  # the folder of initdb and pg_ctl, instead of searching for it
SUPERUSER = "sphere_test"


def find_bin_dir() -> Path | None:
    """The folder holding initdb and pg_ctl: SPHERE_PG_BIN, else Debian's newest
    version, else PATH."""
    if BIN_ENV in os.environ:
        chosen = Path(os.environ[BIN_ENV])
        return chosen if (chosen / "initdb").exists() and (chosen / "pg_ctl").exists() \
            else None
    def version(path: str) -> tuple[int, ...]:
        name = Path(path).parent.name
        return tuple(int(p) for p in name.split(".") if p.isdigit())
    for candidate in sorted(glob.glob("/usr/lib/postgresql/*/bin"), key=version, reverse=True):
        if (Path(candidate) / "initdb").exists() and (Path(candidate) / "pg_ctl").exists():
            return Path(candidate)
    initdb = shutil.which("initdb")
    if initdb and shutil.which("pg_ctl"):
        return Path(initdb).parent
    return None


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _as_user() -> tuple[list[str], str | None]:
    """The command prefix that drops root (PostgreSQL refuses to run as root), and that
    user's name; nothing when we are not root."""
    if os.geteuid() != 0:
        return [], None
    for name in ("postgres", "nobody"):
        try:
            pwd.getpwnam(name)
        except KeyError:
            continue
        if shutil.which("runuser"):
            return ["runuser", "-u", name, "--"], name
        if shutil.which("setpriv"):
            return ["setpriv", f"--reuid={name}", f"--regid={pwd.getpwnam(name).pw_gid}",
                    "--init-groups", "--"], name
    raise RuntimeError("running as root and found no unprivileged user (postgres, nobody) "
                       "and no runuser/setpriv to run PostgreSQL as")


@dataclass
class PostgresServer:
    """A running throwaway server; `url(db)` for a database on it."""

    bin_dir: Path
    root: Path
    port: int
    password: str
    prefix: list[str]
    _databases: itertools.count = field(default_factory=lambda: itertools.count(1))

    @property
    def data_dir(self) -> Path:
        return self.root / "data"

    def url(self, database: str = "postgres") -> str:
        """A URL for `database` over TCP on the loopback, with the password in it."""
        return f"postgresql://{SUPERUSER}:{self.password}@127.0.0.1:{self.port}/{database}"

    def create_database(self, prefix: str = "t") -> str:
        """A new, empty database; returns its URL."""
        import psycopg
        name = f"{prefix}_{next(self._databases)}"
        with psycopg.connect(self.url(), autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        return self.url(name)

    def stop(self) -> None:
        """Stop the server at once and delete its folder (in the background: deleting
        its ~100 MB takes seconds on a busy disk, and nothing waits for it)."""
        stopped = subprocess.run(
            [*self.prefix, str(self.bin_dir / "pg_ctl"), "-D", str(self.data_dir), "-m",
             "immediate", "-w", "stop"], capture_output=True, check=False)
        if stopped.returncode == 0 and shutil.which("rm"):
            subprocess.Popen(["rm", "-rf", str(self.root)], start_new_session=True,
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        else:
            shutil.rmtree(self.root, ignore_errors=True)


def _run(cmd: list[str], what: str) -> None:
    result = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if result.returncode:
        raise RuntimeError(f"{what} failed ({result.returncode}): "
                           f"{(result.stderr or result.stdout).strip()[-2000:]}")


def start(bin_dir: Path) -> PostgresServer:
    """initdb into a new temporary folder and start a server on a free loopback port."""
    prefix, user = _as_user()
    # The server's user must reach its folder: as root, under /tmp (world-traversable)
    # rather than a TMPDIR only root can enter.
    root = Path(tempfile.mkdtemp(prefix="sphere-pg-", dir="/tmp" if user else None))
    password = secrets.token_urlsafe(12)
    (root / "pwfile").write_text(password + "\n")
    (root / "sock").mkdir()
    if user:  # the server's own user must own its folder (and nobody else may read it)
        entry = pwd.getpwnam(user)
        for path in (root, root / "pwfile", root / "sock"):
            os.chown(path, entry.pw_uid, entry.pw_gid)
    data = root / "data"
    try:
        _run([*prefix, str(bin_dir / "initdb"), "-D", str(data), "-U", SUPERUSER,
              f"--pwfile={root / 'pwfile'}", "--auth-local=trust",
              "--auth-host=scram-sha-256", "-E", "UTF8", "--locale=C", "--no-sync"], "initdb")
        server = PostgresServer(bin_dir, root, 0, password, prefix)
        for _attempt in range(5):  # a free port can be taken between our probe and bind
            server.port = _free_port()
            with open(data / "postgresql.conf", "a", encoding="utf-8") as conf:
                # Only the loopback; no durability needed for a throwaway cluster.
                conf.write(f"\nlisten_addresses = '127.0.0.1'\nport = {server.port}\n"
                           f"unix_socket_directories = '{root / 'sock'}'\n"
                           "fsync = off\nsynchronous_commit = off\nfull_page_writes = off\n")
            result = subprocess.run([
                *prefix, str(bin_dir / "pg_ctl"), "-D", str(data), "-l",
                str(root / "server.log"), "-w", "-t", "30", "start"],
                capture_output=True, text=True, check=False)
            if result.returncode == 0:
                return server
        log = (root / "server.log").read_text(errors="replace")[-2000:] \
            if (root / "server.log").exists() else result.stderr
        raise RuntimeError(f"pg_ctl start failed: {log}")
    except BaseException:
        shutil.rmtree(root, ignore_errors=True)
        raise


def missing() -> str | None:
    """Why no PostgreSQL test can run here, or None when one can."""
    try:
        import psycopg  # noqa: F401
    except ImportError:
        return "psycopg is not installed (pip install '.[test]')"
    if find_bin_dir() is None:
        return ("PostgreSQL is not installed: no initdb/pg_ctl in /usr/lib/postgresql/*/bin "
                "or on PATH (Debian: apt-get install postgresql; .ci/run installs it)")
    return None
