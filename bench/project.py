"""A generated Sphere project for the whole-process benchmarks: the bundled sample's
feeds, campaigns and tips, with N generated contacts in audiences/sphere.csv.

    python bench/project.py FOLDER [--contacts 10000] [--seed 7]

bench/cli.py and bench/send.py build theirs with `make_project`; run this by hand to keep
one around. Contacts are our own made-up names at example.* addresses.
"""
from __future__ import annotations

import argparse
import csv
import random
import shutil
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
NEIGHBOURHOODS = ("Maple Heights", "Harbor Point", "Cedar Grove", "Old Mill District")
INTERESTS = ("gardening", "houseplants", "golf", "cooking", "restaurants", "craft beer",
             "wine", "hiking", "running", "cycling", "kayaking", "art", "schools",
             "birdwatching", "photography")
FIRST = ("Ada", "Ben", "Cleo", "Dev", "Elin", "Femi", "Gus", "Hana", "Ivo", "Jun", "Kai",
         "Lena", "Milo", "Nia", "Omar", "Pia", "Raf", "Sofía", "Tariq", "Una", "Zoë")
LAST = ("Archer", "Brandt", "Castillo", "Doyle", "Eze", "Fischer", "Grant", "Holm",
        "Ishikawa", "Jovanović", "Keane", "Lindqvist", "Moreau", "Novak", "Okafor")
COLUMNS = ("email", "first_name", "last_name", "neighbourhood", "interests", "relationship",
           "closing_date", "timezone", "note", "status")


SAMPLE_PARTS = ("content_sources.yaml", "campaigns.yaml", "audiences", "samples", "templates")


def copy_sample(target: Path) -> Path:
    """A copy of the bundled sample project (its own 30 contacts) in `target`."""
    target.mkdir(parents=True)
    for part in SAMPLE_PARTS:
        src = ROOT / part
        if src.is_dir():
            shutil.copytree(src, target / part)
        else:
            shutil.copyfile(src, target / part)
    return target


def make_project(folder: Path, contacts: int, seed: int = 7) -> Path:
    """Copy the sample project into `folder` and write `contacts` generated contacts."""
    folder.mkdir(parents=True, exist_ok=True)
    for name in ("campaigns.yaml", "content_sources.yaml"):
        shutil.copyfile(ROOT / name, folder / name)
    shutil.copytree(ROOT / "samples", folder / "samples", dirs_exist_ok=True)
    (folder / "audiences").mkdir(exist_ok=True)
    rng = random.Random(seed)
    with open(folder / "audiences" / "sphere.csv", "w", newline="", encoding="utf-8") as fh:
        out = csv.writer(fh)
        out.writerow(COLUMNS)
        for i in range(contacts):
            first, last = rng.choice(FIRST), rng.choice(LAST)
            closing = f"20{rng.randint(15, 25)}-{rng.randint(1, 12):02d}-" \
                      f"{rng.randint(1, 28):02d}" if rng.random() < 0.4 else ""
            out.writerow((f"{first.lower()}.{last.lower()}{i}@example.com".encode(
                              "ascii", "ignore").decode(), first, last,
                          rng.choice(NEIGHBOURHOODS),
                          ";".join(rng.sample(INTERESTS, rng.randint(0, 3))),
                          "past_client" if closing else "sphere", closing,
                          "America/Los_Angeles",
                          "Good to see you at the open house!" if i % 7 == 0 else "",
                          "unsubscribed" if i % 97 == 0 else "subscribed"))
    return folder


def main() -> None:
    """Write a project to the folder given."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("folder", type=Path)
    parser.add_argument("--contacts", type=int, default=10_000)
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args()
    make_project(args.folder, args.contacts, args.seed)
    print(f"wrote {args.contacts:,} contacts to {args.folder}")


if __name__ == "__main__":
    main()
