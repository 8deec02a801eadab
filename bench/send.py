"""Send benchmark: `sphere send monthly-sphere` timed as a whole process on a generated
project (bench/project.py: the sample's feeds and campaigns, N generated contacts), to
the outbox, to the SendGrid stand-in and over SMTP, each beside a baseline in the same run.

    python bench/send.py [--contacts 10000] [--baseline main] [--only outbox|sendgrid|smtp]

- outbox: this tree's `sphere send` and the baseline git ref's (exported with
  `git archive`), on the same project, each from a fresh database.
- sendgrid: to tests/sendgrid_standin.py in its own process.
- smtp: to bench/smtp_sink.py (two processes sharing the port, so parallel connections
  are served in parallel, each message fsynced to a queue before the 250 as a real
  relay does; --smtp-server sink only counts, aiosmtpd is the one-thread aiosmtpd),
  beside a sequential smtplib loop sending the very same messages (the outbox run's
  files) to the same server.

Prints emails/s (emails sent / wall seconds of the whole process, startup, planning and
rendering included), peak RSS, the machine's core count and the ratios. Nothing leaves
the machine. Targets (issue 18): outbox >= 1,500/s at 10k on 2 cores, stand-in >= 1,000/s,
SMTP >= 2 x the smtplib loop.
"""
from __future__ import annotations

import argparse
import os
import shutil
import smtplib
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.deliver import SMTP_SERVER, free_port, serve, stop  # noqa: E402
from bench.project import make_project  # noqa: E402
from tests.sendgrid_standin import KEY  # noqa: E402

NOW = "2026-11-22T18:00:00+00:00"
# Runs `sphere` and prints its peak memory. Its own is VmHWM, the high-water mark of
# this process's memory since exec: ru_maxrss is not that on Linux, it keeps the
# parent's mark across fork and exec, so every `sphere` started after the smtplib loop
# (which holds every message) reported the benchmark's ~540 MB as its own. Its render
# workers' peak is RUSAGE_CHILDREN (forked from the small fork server, so theirs).
PROBE = """\
import resource, runpy, sys
sys.argv = ['sphere'] + sys.argv[1:]
try:
    runpy.run_module('pipeline', run_name='__main__')
finally:
    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    try:
        with open('/proc/self/status', encoding='ascii') as status:
            own = next(int(line.split()[1]) for line in status if line.startswith('VmHWM:'))
    except (OSError, StopIteration):  # not Linux: ru_maxrss is the process's own there
        pass
    kids = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    print(f'__peak {max(own, kids) / 1024:.0f}', file=sys.stderr)
"""


def export(ref: str, folder: Path) -> Path:
    """The tree as it is at git `ref` (package and bundled templates), for the baseline."""
    folder.mkdir(parents=True, exist_ok=True)
    archive = subprocess.run(["git", "-C", str(ROOT), "archive", ref],
                             check=True, capture_output=True).stdout
    subprocess.run(["tar", "-x", "-C", str(folder)], input=archive, check=True)
    return folder


def sphere(code: Path, project: Path, *args: str, env: dict[str, str] | None = None
           ) -> tuple[float, float, str]:
    """Run `sphere ARGS` from the package at `code`: (wall s, peak RSS MB, stdout)."""
    full = {**os.environ, "PYTHONPATH": str(code), "SPHERE_NOW": NOW, **(env or {})}
    started = time.perf_counter()
    done = subprocess.run([sys.executable, "-c", PROBE, *args, "--project", str(project)],
                          env=full, capture_output=True, text=True, cwd=project,
                          check=False)  # the return code is read below
    wall = time.perf_counter() - started
    if done.returncode != 0:
        raise SystemExit(f"sphere {' '.join(args)} failed:\n{done.stderr[-2000:]}")
    peak = next((float(line.split()[1]) for line in done.stderr.splitlines()
                 if line.startswith("__peak ")), 0.0)
    return wall, peak, done.stdout


def fresh(project: Path, db: Path) -> None:
    """The project's database as it was after the first ingest; no outbox."""
    shutil.copyfile(db, project / "var" / "sphere.db")
    for extra in ("sphere.db-wal", "sphere.db-shm"):
        (project / "var" / extra).unlink(missing_ok=True)
    shutil.rmtree(project / "var" / "outbox", ignore_errors=True)


def sent_count(stdout: str) -> int:
    """The N of 'Done: Sent N, ...'."""
    return int(stdout.split("Done: Sent ", 1)[1].split(",")[0].split(" ")[0])


def smtplib_loop(port: int, files: list[Path]) -> float:
    """Seconds for one connection to send every file in turn (the baseline)."""
    messages = [(f.read_bytes(), "@".join(f.name.split("--", 1)[1][:-4].rsplit("_", 1)))
                for f in files]
    started = time.perf_counter()
    with smtplib.SMTP("127.0.0.1", port, timeout=30) as conn:
        for raw, to in messages:
            conn.sendmail("dana@riverton-homes.example.com", [to], raw)
    return time.perf_counter() - started


def main() -> None:
    """Build the project, run each transport beside its baseline, print the figures."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--contacts", type=int, default=10_000)
    parser.add_argument("--baseline", default="main", help="git ref to compare with")
    parser.add_argument("--only", choices=("outbox", "sendgrid", "smtp"))
    parser.add_argument("--smtp-server", choices=("relay", "sink", "aiosmtpd"),
                        default="relay",
                        help="relay: bench/smtp_sink.py in two processes that fsync each "
                             "message to a queue before the 250, like Postfix; sink: the "
                             "same, counting only; aiosmtpd: one thread")
    args = parser.parse_args()
    print(f"{os.cpu_count()} CPUs; {args.contacts:,} contacts; whole `sphere send` "
          "processes; emails/s = sent / wall seconds", flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        project = make_project(folder / "project", args.contacts)
        sphere(ROOT, project, "ingest", "-q")
        db = folder / "ingested.db"
        shutil.copyfile(project / "var" / "sphere.db", db)
        base_code = export(args.baseline, folder / "baseline")
        send = ("send", "monthly-sphere", "--no-ingest", "-q")
        files: list[Path] = []
        if args.only in (None, "outbox", "smtp"):
            rates = {}
            for label, code in (("baseline", base_code), ("this tree", ROOT)):
                fresh(project, db)
                wall, peak, out = sphere(code, project, *send, "--transport", "outbox")
                rates[label] = sent_count(out) / wall
                print(f"outbox, {label}: {sent_count(out):,} in {wall:.2f} s = "
                      f"{rates[label]:,.0f} emails/s, peak {peak:.0f} MB", flush=True)
            shutil.move(project / "var" / "outbox", folder / "sent")
            files = sorted((folder / "sent").glob("*.eml"))
            print(f"  ratio this tree / baseline ({args.baseline}): "
                  f"{rates['this tree'] / rates['baseline']:.2f}x", flush=True)
        if args.only in (None, "sendgrid"):
            port = free_port()
            server = serve(["-m", "tests.sendgrid_standin", str(port)])
            try:
                env = {"SENDGRID_API_KEY": KEY, "SENDGRID_API_HOST": f"http://127.0.0.1:{port}"}
                for label, code in (("baseline", base_code), ("this tree", ROOT)):
                    fresh(project, db)
                    wall, peak, out = sphere(code, project, *send, "--transport", "sendgrid",
                                             env=env)
                    print(f"sendgrid stand-in, {label}: {sent_count(out):,} in {wall:.2f} s "
                          f"= {sent_count(out) / wall:,.0f} emails/s, peak {peak:.0f} MB",
                          flush=True)
            finally:
                print(f"  the stand-in accepted {stop(server):,}", flush=True)
        if args.only in (None, "smtp"):
            if not files:
                fresh(project, db)
                sphere(ROOT, project, *send, "--transport", "outbox")
                shutil.move(project / "var" / "outbox", folder / "sent")
                files = sorted((folder / "sent").glob("*.eml"))
            port = free_port()
            spool = folder / "spool"
            spool.mkdir(exist_ok=True)
            server = serve(
                ["-c", SMTP_SERVER, str(port)] if args.smtp_server == "aiosmtpd" else
                ["bench/smtp_sink.py", str(port), "2"] if args.smtp_server == "sink" else
                ["bench/smtp_sink.py", str(port), "2", str(spool)])
            print(f"smtp server: {args.smtp_server}", flush=True)
            cfg = project / "campaigns.yaml"
            text = cfg.read_text(encoding="utf-8")
            cfg.write_text(text.replace("  host: localhost\n  port: 587\n  security: starttls",
                                        f"  host: 127.0.0.1\n  port: {port}\n  security: none"),
                           encoding="utf-8")
            try:
                loop = smtplib_loop(port, files)
                loop_rate = len(files) / loop
                print(f"smtp, sequential smtplib loop (pre-rendered): {len(files):,} in "
                      f"{loop:.2f} s = {loop_rate:,.0f} emails/s", flush=True)
                for label, code in (("baseline", base_code), ("this tree", ROOT)):
                    fresh(project, db)
                    wall, peak, out = sphere(code, project, *send, "--transport", "smtp")
                    rate = sent_count(out) / wall
                    print(f"smtp, {label}: {sent_count(out):,} in {wall:.2f} s = "
                          f"{rate:,.0f} emails/s, peak {peak:.0f} MB; "
                          f"{rate / loop_rate:.2f}x the smtplib loop", flush=True)
            finally:
                cfg.write_text(text, encoding="utf-8")
                print(f"  the relay accepted {stop(server):,}", flush=True)


if __name__ == "__main__":
    main()
