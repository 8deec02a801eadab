"""Delivery benchmark: 100,000 personalised emails through the real dispatch loop (ledger
rows begun and settled in SQLite, concurrent workers, pooled connections) to the loopback
SendGrid stand-in and to a loopback aiosmtpd server.

Prints emails/s and peak memory for each. Targets: at least 500 emails/s to the stand-in,
under 500 MB.

    python bench/deliver.py [--count 100000] [--only sendgrid|smtp]

The servers run in their own processes (so they do not share the GIL with the sender).
Emails are built cheaply — one real rendered newsletter, with each contact's name and
address substituted — because this measures delivery, not rendering (bench/render.py
does that). Jobs are generated lazily: nothing holds the whole list. Nothing leaves
the machine.
"""
from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import os
import resource
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from pipeline.config import SendGridSettings, SmtpSettings, load_config  # noqa: E402
from pipeline.delivery.dispatch import Job, dispatch  # noqa: E402
from pipeline.delivery.sendgrid_api import SendGridTransport  # noqa: E402
from pipeline.delivery.smtp import SmtpTransport  # noqa: E402
from pipeline.models import Contact, RenderedEmail  # noqa: E402
from pipeline.rendering.render import Renderer  # noqa: E402
from pipeline.runner import prepare, run_ingest  # noqa: E402
from pipeline.state.store import Store  # noqa: E402
from tests.sendgrid_standin import KEY  # noqa: E402

NOW = dt.datetime(2026, 11, 22, 18, 0, tzinfo=dt.UTC)
# An aiosmtpd relay that takes every message and counts them; prints the count on exit.
SMTP_SERVER = """
import asyncio, signal, sys
from aiosmtpd.controller import Controller
class Count:
    n = 0
    async def handle_DATA(self, server, session, envelope):
        Count.n += len(envelope.rcpt_tos)
        return "250 OK"
c = Controller(Count(), hostname="127.0.0.1", port=int(sys.argv[1]))
c.start()
print("ready", flush=True)
signal.sigwait({signal.SIGINT, signal.SIGTERM})
c.stop()
print(f"delivered {Count.n}", flush=True)
"""


def free_port() -> int:
    """A loopback port that was free a moment ago."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def template() -> tuple[RenderedEmail, Renderer]:
    """One real rendered newsletter from the bundled sample project."""
    with tempfile.TemporaryDirectory() as tmp:
        config = load_config(ROOT)
        store = Store.open(Path(tmp) / "t.db")
        run_ingest(config, store, NOW)
        prepared = prepare(config, store, config.campaign("monthly-sphere"), NOW)
        renderer = Renderer(config.project, config.sender, store.secret())
        first = prepared.plan.emails[0]
        email = renderer.render(prepared.plan, first, NOW)
        store.close()
    return email, renderer


def jobs(base: RenderedEmail, count: int) -> Iterator[Job]:
    """`count` personalised emails, made one at a time as the dispatcher asks."""
    c = base.contact
    raw = base.raw.decode("ascii")
    for i in range(count):
        address = f"contact{i:06d}@bench.example"
        first = f"Reader{i}"

        def render(address: str = address, first: str = first, i: int = i) -> RenderedEmail:
            """The template, addressed to this contact."""
            contact = Contact(email=address, first_name=first, last_name="Bench")
            # The raw message's base64 body keeps the template's own bytes; only the
            # headers change. A relay does not look inside, so that is a fair load.
            return dataclasses.replace(
                base, contact=contact, message_id=f"<{i}.bench@example.com>",
                subject=base.subject.replace(c.first_name, first),
                html=base.html.replace(c.first_name, first),
                text=base.text.replace(c.first_name, first),
                raw=raw.replace(c.email, address).replace(c.first_name, first).encode())
        yield Job(address, render)


def serve(args: list[str], *, env: dict[str, str] | None = None) -> subprocess.Popen:
    """Start a server process and wait for its 'ready' line."""
    proc = subprocess.Popen([sys.executable, *args], stdout=subprocess.PIPE, text=True,
                            cwd=ROOT, env=env)
    assert proc.stdout is not None
    line = proc.stdout.readline()
    if "ready" not in line:
        raise SystemExit(f"server did not start: {args}")
    return proc


def stop(proc: subprocess.Popen) -> int:
    """Stop a server; returns how many messages it says it took."""
    proc.send_signal(signal.SIGINT)
    out, _ = proc.communicate(timeout=30)
    for line in out.splitlines():
        if line.startswith("delivered "):
            return int(line.split()[1])
    return -1


def run(name: str, transport, count: int, base: RenderedEmail, folder: Path) -> None:
    """Deliver `count` emails and print the figures."""
    store = Store.open(folder / f"{name}.db")
    send_id = f"bench-{name}@2026-11-01T09:00"
    store.start_send(send_id, "bench", "2026-11-01T09:00", NOW)
    started = time.perf_counter()
    result = dispatch(store, transport, send_id, jobs(base, count), count, lambda: NOW,
                      max_failures=10, message_id=lambda e: "")
    seconds = time.perf_counter() - started
    transport.close()
    ledger = dict(store.conn.execute(
        "SELECT status, count(*) FROM deliveries GROUP BY status").fetchall())
    store.close()
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"{name}: {result.sent:,} sent, {result.failed} failed, {result.unknown} unknown "
          f"in {seconds:.1f} s = {result.sent / seconds:,.0f} emails/s; ledger {ledger}; "
          f"peak RSS so far {peak_mb:.0f} MB", flush=True)
    if result.paused:
        print(f"  paused: {result.paused}")


def main() -> None:
    """Run the benchmark."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--count", type=int, default=100_000)
    parser.add_argument("--only", choices=("sendgrid", "smtp"))
    parser.add_argument("--workers", type=int, default=0,
                        help="override the transports' default concurrency")
    args = parser.parse_args()
    base, _renderer = template()
    print(f"template: {len(base.raw):,} bytes of MIME, {len(base.html):,} of HTML; "
          f"{args.count:,} emails per transport; {os.cpu_count()} CPUs", flush=True)
    sender = load_config(ROOT).sender
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        if args.only in (None, "sendgrid"):
            port = free_port()
            server = serve(["-m", "tests.sendgrid_standin", str(port)])
            settings = SendGridSettings(timeout=30, workers=args.workers or
                                        SendGridSettings.workers)
            try:
                run("sendgrid", SendGridTransport(settings, sender, KEY,
                                                  host=f"http://127.0.0.1:{port}"),
                    args.count, base, folder)
            finally:
                print(f"  the stand-in accepted {stop(server):,}", flush=True)
        if args.only in (None, "smtp"):
            port = free_port()
            server = serve(["-c", SMTP_SERVER, str(port)])
            settings = SmtpSettings(host="127.0.0.1", port=port, security="none",
                                    workers=args.workers or SmtpSettings.workers)
            try:
                run("smtp", SmtpTransport(settings, sender), args.count, base, folder)
            finally:
                print(f"  the relay accepted {stop(server):,}", flush=True)


if __name__ == "__main__":
    main()
