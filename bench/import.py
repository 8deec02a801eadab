"""Import benchmark: `sphere contacts import` of a ~200 MB CRM export (1.66 M rows).

Generates an Outlook-shaped CSV (names, address, phone, categories, notes; a few invalid
and repeated addresses), then runs `sphere contacts import` on it as a child process and
prints the child's peak resident memory (getrusage RUSAGE_CHILDREN: the whole process,
interpreter included), its wall time and its rows per second. Target: under 300 MB.

    python bench/import.py [--rows 1660000] [--twice] [--keep DIR]

--twice imports the same file again into the audience the first run wrote (every row is
then an update of an existing contact). Nothing leaves the machine."""
from __future__ import annotations

import argparse
import random
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.project import copy_sample  # noqa: E402 (after the sys.path line above)

FIRST = ["Ann", "Maria", "José", "Wei", "Priya", "Tom", "Emily", "Sam", "Noah", "Olivia", "Liam",
         "Ava", "Lucas", "Mia", "Ethan", "Zoë", "Chloé", "Mateo", "Aiko", "Omar", "Fatima", "Ivan",
         "Greta", "Hugo"]
LAST = ["Lee", "Müller", "Chen", "Raman", "Brown", "Tran", "Smith", "Nguyen", "Garcia", "Kowalski",
        "O'Brien", "Rossi", "Dubois", "Novak", "Haddad", "Tanaka", "Johansson", "Silva", "Okafor",
        "Schmidt"]
STREETS = ("Birch Lane", "Linden Street", "Harbor Way", "Maple Avenue", "Oak Court",
           "Cedar Road", "Elm Drive", "Willow Path")
TAGS = ("golf", "wine", "schools", "gardening", "hiking", "Past Clients", "sphere", "dogs",
        "boating", "cycling")
HEADER = "First Name,Last Name,E-mail Address,Mobile Phone,Home Street,Home Postal Code," \
         "Categories,Notes\n"


def write_export(path: Path, rows: int, seed: int = 7) -> int:
    """Write the export; returns its size in bytes."""
    rng = random.Random(seed)
    with path.open("w", encoding="utf-8", newline="") as f:
        f.write(HEADER)
        batch = []
        for n in range(rows):
            first, last = rng.choice(FIRST), rng.choice(LAST)
            if n % 1000 == 999:
                email = f"broken-{n}.example.com"  # no @: skipped
            elif n % 1000 == 998:
                email = f"contact{n - 500}@example.com"  # repeats an earlier row
            else:
                email = f"contact{n}@example.com"
            tags = ";".join(rng.sample(TAGS, 2))
            batch.append(f"{first},{last},{email},+1 555 {rng.randrange(1000, 9999)} "
                         f"{rng.randrange(1000, 9999)},{rng.randrange(1, 999)} "
                         f"{rng.choice(STREETS)},980{rng.randrange(10, 99)},{tags},"
                         f"\"Met at the open house, {rng.randrange(1, 28)} May\"\n")
            if len(batch) == 10_000:
                f.write("".join(batch))
                batch.clear()
        f.write("".join(batch))
    return path.stat().st_size


def run_import(export: Path, project: Path) -> tuple[float, float, str]:
    """(wall seconds, peak RSS MB of the child, its first output line)."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    start = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "pipeline", "contacts", "import",
                           str(export), "--audience", "big", "--project", str(project)],
                          cwd=ROOT, capture_output=True, text=True, check=False)
    wall = time.perf_counter() - start
    # ru_maxrss of RUSAGE_CHILDREN is the largest of the waited-for children (KiB on
    # Linux); each run is larger than the generator-free parent could make it.
    peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    if done.returncode != 0:
        sys.exit(f"import failed ({done.returncode}): {done.stderr.strip()[-2000:]}")
    if peak <= before:
        print("  (peak not above an earlier run's: the figure below is that run's)")
    first = done.stdout.splitlines()[0] if done.stdout else ""
    return wall, peak / 1024, first


def main() -> None:
    """Generate, import (once or twice), print the figures."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_660_000)
    parser.add_argument("--twice", action="store_true",
                        help="import again into the audience the first run wrote")
    parser.add_argument("--keep", type=Path, help="work in DIR and leave the files there")
    args = parser.parse_args()
    work = args.keep or Path(tempfile.mkdtemp(prefix="sphere-bench-import-"))
    try:
        project = copy_sample(work / "project")
        export = work / "export.csv"
        start = time.perf_counter()
        size = write_export(export, args.rows)
        print(f"export: {args.rows:,} rows, {size / 1e6:.0f} MB, written in "
              f"{time.perf_counter() - start:.1f} s")
        for label in ("first import", "second import")[:2 if args.twice else 1]:
            wall, peak, first = run_import(export, project)
            print(f"{label}: peak RSS {peak:.0f} MB, {wall:.1f} s, "
                  f"{args.rows / wall:,.0f} rows/s -> {first[:100]}")
        audience = project / "audiences" / "big.csv"
        print(f"audience file: {audience.stat().st_size / 1e6:.0f} MB")
    finally:
        if args.keep is None:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
