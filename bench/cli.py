"""Where users wait at the prompt: `sphere plan` (text and --json) at 1k and 10k contacts
and `sphere --help` beside `python -c "import click"`, each timed as a whole process
with its peak memory, on generated projects (bench/project.py), in one run.

    python bench/cli.py [--sizes 1000,10000] [--repeat 3] [--baseline main]

Each figure is the best of --repeat runs (the machine is shared: the best run is the one
least disturbed). With --baseline REF, the same commands from git REF run beside them
(exported with `git archive`) for the ratios. Targets (issue 18): plan at 10k under 2 s,
text and --json alike; --help within 2 x `import click`.
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.project import make_project  # noqa: E402
from bench.send import NOW, export  # noqa: E402

# Runs the command in this interpreter, then reports its own peak RSS on stderr.
PROBE = ("import resource, runpy, sys\n"
         "sys.argv = ['sphere'] + sys.argv[1:]\n"
         "try:\n"
         "    runpy.run_module('pipeline', run_name='__main__')\n"
         "finally:\n"
         "    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024\n"
         "    print(f'__peak {peak:.0f}', file=sys.stderr)\n")


def timed(code: Path, args: list[str], cwd: Path, repeat: int) -> tuple[float, float]:
    """Best wall seconds of `repeat` runs of the whole process, and its peak RSS (MB)."""
    env = {**os.environ, "PYTHONPATH": str(code), "SPHERE_NOW": NOW}
    best, peak = float("inf"), 0.0
    for _ in range(repeat):
        started = time.perf_counter()
        done = subprocess.run([sys.executable, "-c", PROBE, *args], env=env, cwd=cwd,
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                              check=False)  # the return code is read below
        best = min(best, time.perf_counter() - started)
        if done.returncode != 0:
            raise SystemExit(f"sphere {' '.join(args)} failed:\n{done.stderr[-2000:]}")
        peak = max(peak, next((float(line.split()[1]) for line in done.stderr.splitlines()
                               if line.startswith("__peak ")), 0.0))
    return best, peak


def bare(args: list[str], repeat: int) -> float:
    """Best wall seconds of a plain `python ARGS` (no probe: the baseline itself)."""
    best = float("inf")
    for _ in range(repeat):
        started = time.perf_counter()
        subprocess.run([sys.executable, *args], stdout=subprocess.DEVNULL, check=False)
        best = min(best, time.perf_counter() - started)
    return best


def main() -> None:
    """Build the projects, time each command, print the figures and ratios."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="1000,10000")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--baseline", default="", help="git ref to compare with (e.g. main)")
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    print(f"{os.cpu_count()} CPUs; best of {args.repeat}; whole processes", flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        trees = [("this tree", ROOT)]
        if args.baseline:
            trees.append((args.baseline, export(args.baseline, folder / "baseline")))
        # --help against `import click`, interleaved so both see the same machine.
        click_s = bare(["-c", "import click"], args.repeat * 5)
        for label, code in trees:
            help_s, help_mb = timed(code, ["--help"], folder, args.repeat * 5)
            print(f"sphere --help ({label}): {help_s * 1000:.0f} ms, {help_mb:.0f} MB; "
                  f"python -c 'import click': {click_s * 1000:.0f} ms; "
                  f"ratio {help_s / click_s:.2f}x (target <= 2x)", flush=True)
        for n in sizes:
            project = make_project(folder / f"p{n}", n)
            timed(ROOT, ["ingest", "-q", "--project", str(project)], project, 1)
            for label, code in trees:
                for extra in ([], ["--json"]):
                    wall, mb = timed(code, ["plan", "monthly-sphere", *extra, "--project",
                                            str(project)], project, args.repeat)
                    print(f"sphere plan {' '.join(extra) or '(text)'} at {n:,} contacts "
                          f"({label}): {wall:.2f} s, peak {mb:.0f} MB", flush=True)


if __name__ == "__main__":
    main()
