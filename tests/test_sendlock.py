"""One send of a period at a time (issue 13.10): a second `sphere send` (or the daemon)
of a period another process is delivering is refused, naming the holder, instead of
calling the other's in-flight messages "outcome unknown"."""
from __future__ import annotations

import datetime as dt
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from pipeline.config import load_config
from pipeline.delivery.deliver import OutboxTransport
from pipeline.delivery.sendlock import send_lock
from pipeline.errors import LockedError
from pipeline.runner import deliver_plan
from tests.conftest import NOW, REPO
from tests.deliver_support import sample
from tests.sendgrid_standin import KEY, StandIn


def test_a_second_send_of_the_same_period_is_refused_naming_the_holder(
        project: Path, cli, monkeypatch: pytest.MonkeyPatch) -> None:
    standin = StandIn().start()
    standin.delay = 1.0  # each answer takes a second: the first send is still going
    env = {**os.environ, "PYTHONPATH": str(REPO), "SPHERE_NOW": NOW.isoformat(),
           "SENDGRID_API_KEY": KEY, "SENDGRID_API_HOST": standin.url}
    first = subprocess.Popen(
        [sys.executable, "-m", "pipeline", "send", "monthly-sphere", "--transport",
         "sendgrid", "--project", str(project), "-q"],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        while not standin.requests:  # wait until the first run is delivering
            assert first.poll() is None, first.communicate()
            time.sleep(0.02)
        monkeypatch.setenv("SENDGRID_API_KEY", KEY)
        monkeypatch.setenv("SENDGRID_API_HOST", standin.url)
        second = cli("send", "monthly-sphere", "--transport", "sendgrid", "--no-ingest",
                     project=project)
        out, errors = first.communicate(timeout=120)
    finally:
        if first.poll() is None:
            first.kill()
        standin.stop()
    assert second.exit_code == 1
    line = second.stderr.strip().splitlines()[-1]
    assert line.startswith("Error: monthly-sphere@2026-11-01T09:00 is being sent by "
                           f"pid {first.pid} on {socket.gethostname()}, since 20")
    assert "run the same command again" in line
    assert "unknown" not in second.output
    assert first.returncode == 0, errors
    assert "Sent 28" in out and "unknown" not in out
    assert sum(standin.delivered.values()) == 28 and set(standin.delivered.values()) == {1}
    # Once the first is done, the same command runs and finds nothing left to send.
    again = cli("send", "monthly-sphere", "--no-ingest", project=project)
    assert again.exit_code == 0 and "Sent 0, 28 already sent" in again.stdout


def test_the_daemons_delivery_takes_the_same_lock(project: Path) -> None:
    s = sample(project)
    config = load_config(project)
    with send_lock(config.db_path, s.prepared.plan.send_id, NOW):
        # The holder, and when it took the lock: the clock passed in, not the wall's.
        since = NOW.astimezone(dt.UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
        with pytest.raises(LockedError, match=f"pid {os.getpid()} on .*, since {since}"):
            deliver_plan(s.store, s.renderer, OutboxTransport(config.outbox_dir),
                         s.prepared, lambda: NOW, False)
        assert s.store.ledger_status(s.prepared.plan.send_id) == {}  # nothing begun
    # Released (also when its holder is killed: the OS drops the lock with the process).
    summary = deliver_plan(s.store, s.renderer, OutboxTransport(config.outbox_dir),
                           s.prepared, lambda: NOW, False)
    assert summary.sent == 28 and not summary.unknown
