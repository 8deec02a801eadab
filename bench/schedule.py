"""Scheduling benchmark (issue #18, goals 1 and 2): `sphere schedule` for a year ahead and
`sphere status`, each timed as a whole process with its peak memory, on generated projects
of 1,000, 10,000 and 100,000 contacts (the sample's feeds, campaigns and drips; generated
contacts like the sample's: neighbourhoods, interests, a closing date for most, a mix of
time zones).

    python bench/schedule.py [--sizes 1000,10000,100000] [--compare OTHER_CHECKOUT]
                             [--compare-schedule-up-to 1000]

Targets: `schedule` a year ahead at 10k under 5 s and 300 MB, at 100k under 60 s and 1 GB;
`status` at 10k under 1 s and within 1.5 x its time at 1k. With --compare, the same
commands also run with another checkout's `pipeline` (e.g. main before this change), in
the same run, and the ratios are printed. Peak memory is each child's own ru_maxrss
(os.wait4), so one command's peak never hides another's.
"""
from __future__ import annotations

import argparse
import datetime as dt
import os
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.project import copy_sample  # noqa: E402 (after the sys.path line above)

NOW = dt.datetime(2026, 11, 22, 18, 0, tzinfo=dt.UTC)
HEADER = "email,first_name,last_name,neighbourhood,interests,relationship,closing_date," \
         "timezone,note,status\n"
HOODS = ("Maple Heights", "Harbor Point", "Cedar Grove", "Old Mill District", "")
INTERESTS = ("golf", "gardening", "cooking", "hiking", "wine", "art", "running", "schools",
             "craft beer", "kayaking", "cycling", "houseplants", "restaurants")
RELATIONS = ("past_client", "sphere", "prospect", "referral_source")
# Mostly the sender's zone, as an agent's contacts are; some elsewhere.
ZONES = ("America/Los_Angeles",) * 6 + ("", "America/New_York", "America/Denver",
                                         "Europe/London", "Australia/Sydney")


def make_project(target: Path, size: int, seed: int = 7) -> Path:
    """A copy of the sample project whose audience is `size` generated contacts."""
    copy_sample(target)
    rng = random.Random(seed)
    rows = []
    for n in range(size):
        closing = ""
        if rng.random() < 0.7:  # most contacts bought or sold through the agent
            closing = (dt.date(2016, 1, 1) + dt.timedelta(days=rng.randrange(3950))).isoformat()
        interests = ";".join(rng.sample(INTERESTS, rng.randrange(4)))
        status = "unsubscribed" if rng.random() < 0.03 else "subscribed"
        rows.append(f"c{n}@example.com,Pat{n},Lee,{rng.choice(HOODS)},{interests},"
                    f"{rng.choice(RELATIONS)},{closing},{rng.choice(ZONES)},,{status}")
    (target / "audiences/sphere.csv").write_text(HEADER + "\n".join(rows) + "\n",
                                                 encoding="utf-8")
    return target


def timed(cmd: list[str], env: dict[str, str], cwd: Path) -> tuple[float, float, float, int]:
    """(seconds, CPU seconds, peak MB, exit status) of one whole process, its output
    discarded. CPU time is printed too: on a shared machine wall time also counts the
    time other processes held the cores."""
    started = time.monotonic()
    # cwd matters: `python -m` puts the working directory first on sys.path.
    proc = subprocess.Popen(cmd, env=env, cwd=cwd, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE)
    _pid, status, usage = os.wait4(proc.pid, 0)
    seconds = time.monotonic() - started
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode:
        assert proc.stderr is not None
        sys.stderr.write(proc.stderr.read().decode(errors="replace")[-2000:])
    peak_mb = usage.ru_maxrss / 1024 if sys.platform != "darwin" else usage.ru_maxrss / 2**20
    return seconds, usage.ru_utime + usage.ru_stime, peak_mb, proc.returncode


def env_for(tree: Path) -> dict[str, str]:
    """The environment that runs `python -m pipeline` from `tree`, clock pinned."""
    return {**os.environ, "PYTHONPATH": str(tree), "SPHERE_NOW": NOW.isoformat()}


def main() -> None:
    """Build the projects, time the commands, print figures and ratios."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="1000,10000,100000")
    parser.add_argument("--compare", type=Path, help="another checkout to time beside")
    parser.add_argument("--compare-schedule-up-to", type=int, default=1000,
                        help="run --compare's `schedule` only up to this many contacts (the "
                             "old one took 85 s and 2.3 GB at 10k); its `status` up to 10k")
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    until = (NOW + dt.timedelta(days=365)).date().isoformat()
    trees = {"this": ROOT} | ({"compare": args.compare.resolve()} if args.compare else {})
    print(f"cores: {os.cpu_count()}; python {sys.version.split()[0]}; clock {NOW:%Y-%m-%d}; "
          f"schedule until {until}")
    results: dict[tuple[str, str, int], tuple[float, float, float]] = {}
    with tempfile.TemporaryDirectory(prefix="sphere-bench-") as tmp:
        for size in sizes:
            for tree_name, tree in trees.items():
                # Each tree its own copy: the two may differ in schema.
                project = make_project(Path(tmp) / f"{tree_name}{size}", size)
                _run_size(tree_name, tree, project, size, until, args, results)
    _ratios(results, sizes, trees)


def _run_size(tree_name: str, tree: Path, project: Path, size: int, until: str,
              args: argparse.Namespace, results: dict) -> None:
    """Time the commands on one project with one checkout's code."""
    py = [sys.executable, "-m", "pipeline"]
    # Status reads the store: ingest once first (untimed), as a user would have.
    subprocess.run([*py, "ingest", "--project", str(project)], env=env_for(tree), cwd=tree,
                   check=True, capture_output=True)
    commands = {
        "schedule": [*py, "schedule", "--until", until, "--project", str(project)],
        "schedule --json": [*py, "schedule", "--until", until, "--json", "--project", str(project)],
        "status": [*py, "status", "--project", str(project)],
    }
    if tree_name == "this":
        # The first command after an audience file changes parses it (about 0.1 ms an
        # address) and caches it in var/cache/; time that apart.
        seconds, cpu, mb, _ = timed(commands["schedule"], env_for(tree), tree)
        print(f"{tree_name:8} {'(cold) schedule':16} {size:>7,} contacts: {seconds:7.2f} s "
              f"(CPU {cpu:6.2f} s) {mb:7.0f} MB  first read of the audience file",
              flush=True)
    for name, cmd in commands.items():
        limit = args.compare_schedule_up_to if name.startswith("schedule") else 10000
        if tree_name == "compare" and size > limit:
            continue
        seconds, cpu, mb, code = timed(cmd, env_for(tree), tree)
        results[(tree_name, name, size)] = (seconds, mb, cpu)
        flag = "" if code == 0 else f"  (exit {code})"
        print(f"{tree_name:8} {name:16} {size:>7,} contacts: {seconds:7.2f} s "
              f"(CPU {cpu:6.2f} s) {mb:7.0f} MB{flag}", flush=True)


def _ratios(results: dict[tuple[str, str, int], tuple[float, float, float]], sizes: list[int],
            trees: dict[str, Path]) -> None:
    print("\ntargets:")
    for size, limit_s, limit_mb in ((10000, 5, 300), (100000, 60, 1024)):
        if ("this", "schedule", size) in results:
            s, mb, cpu = results[("this", "schedule", size)]
            ok = "ok" if s < limit_s and mb < limit_mb else "MISSED"
            print(f"  schedule a year at {size:,}: {s:.2f} s (CPU {cpu:.2f} s; < {limit_s} s), "
                  f"{mb:.0f} MB (< {limit_mb} MB): {ok}")
    if ("this", "status", 1000) in results and ("this", "status", 10000) in results:
        small, big = results[("this", "status", 1000)], results[("this", "status", 10000)]
        ok = "ok" if big[0] < 1.0 and big[0] <= 1.5 * small[0] else "MISSED"
        print(f"  status at 10k: {big[0]:.2f} s (< 1 s), {big[0] / small[0]:.2f} x its 1k "
              f"time (<= 1.5 x): {ok}; by CPU time {big[2]:.2f} s, "
              f"{big[2] / small[2]:.2f} x")
    if "compare" in trees:
        print("\nthis / compare (time, memory):")
        for (tree, name, size), (s, mb, cpu) in results.items():
            other = results.get(("compare", name, size))
            if tree == "this" and other:
                print(f"  {name:16} {size:>7,}: {s / other[0]:.3f} x time "
                      f"({cpu / other[2]:.3f} x CPU), {mb / other[1]:.3f} x memory")


if __name__ == "__main__":
    main()
