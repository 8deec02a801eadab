"""Windows (issue #12): no command needs `fcntl`. The CLI runs with `fcntl` made
unimportable, as on Windows, and the daemon's single-instance lock still holds."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

NO_FCNTL = '''
import sys


class _NoFcntl:
    """As on Windows: there is no fcntl module."""

    def find_spec(self, name, path=None, target=None):
        if name == "fcntl":
            raise ModuleNotFoundError("No module named 'fcntl'", name="fcntl")
        return None


sys.modules.pop("fcntl", None)
sys.meta_path.insert(0, _NoFcntl())
'''


def _env(tmp_path: Path) -> dict[str, str]:
    hook = tmp_path / "hook"
    hook.mkdir()
    (hook / "sitecustomize.py").write_text(NO_FCNTL)
    root = Path(__file__).resolve().parents[1]
    return {**os.environ, "PYTHONPATH": os.pathsep.join([str(hook), str(root)]),
            "SPHERE_NOW": "2026-12-01T17:30:00+00:00"}


def _sphere(env: dict[str, str], *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "pipeline", *args], env=env,
                          capture_output=True, text=True, timeout=120, check=False)


def test_the_cli_sends_and_the_daemon_lock_works_without_fcntl(project: Path, tmp_path: Path) -> None:
    env = _env(tmp_path)
    blocked = subprocess.run([sys.executable, "-c", "import fcntl"], env=env,
                             capture_output=True, text=True, timeout=60, check=False)
    assert blocked.returncode != 0 and "No module named 'fcntl'" in blocked.stderr
    p = ["--project", str(project)]
    check = _sphere(env, "check", *p)
    assert check.returncode == 0, check.stderr
    schedule = _sphere(env, "schedule", "--until", "2026-12-31", *p)
    assert schedule.returncode == 0, schedule.stderr
    assert "31 looks for interest alerts" in schedule.stdout
    status = _sphere(env, "status", *p)
    assert status.returncode == 0, status.stderr
    send = _sphere(env, "send", "monthly-sphere", *p)
    assert send.returncode == 0, send.stderr
    assert len(list((project / "var/outbox").glob("monthly-sphere*"))) == 28
    # The daemon takes the lock; a second one is refused while it runs; SIGTERM stops it.
    daemon = subprocess.Popen([sys.executable, "-m", "pipeline", "run", "--tick", "1", *p],
                              env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True)
    try:
        pid = project / "var/daemon.pid"
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not (pid.exists() and pid.read_text()):
            time.sleep(0.1)
        second = _sphere(env, "run", "--once", *p)
        assert second.returncode == 1
        assert "already running for this project" in second.stderr
        daemon.send_signal(signal.SIGTERM)
        _, stderr = daemon.communicate(timeout=60)
    finally:
        if daemon.poll() is None:
            daemon.kill()
    assert daemon.returncode == 0 and "stopped cleanly" in stderr, stderr
    # Released: the next run takes the lock.
    again = _sphere(env, "run", "--once", *p)
    assert again.returncode == 0, again.stderr
