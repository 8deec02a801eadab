"""Benchmark: plan one send for 100,000 contacts against 2,000 articles.

    python bench/match.py [--contacts N] [--articles N] [--seed N] [--million]

`--million` plans 1,000,000 contacts (issue 18's goal: under 20 s and 1 GB).

Synthetic data, generated here: 50 neighbourhoods with a feed each, 20 hobby feeds, market
and economy feeds; contacts with 0-4 interests written in varied ways (case, plurals),
and a third of them with a history of earlier sends. Prints the time to build the plan
(analysis, matching, never-repeat, diversity, tips: everything `plan_newsletter` does) and the
process's peak memory (ru_maxrss). Each article's topic profile is computed first, as
ingest does once per article and stores; planning only looks it up.
"""
from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import os
import random
import resource
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from pipeline.matching.taxonomy import profile
from pipeline.models import Article, Campaign, Contact, SectionSizes, Tip
from pipeline.planning.inputs import LedgerView, PlanInputs
from pipeline.planning.plan import plan_newsletter

NOW = dt.datetime(2026, 11, 22, 18, 0, tzinfo=dt.UTC)
INTERESTS = ("gardening", "houseplants", "golf", "cooking", "restaurants", "craft beer",
             "wine", "hiking", "running", "cycling", "kayaking", "art", "music", "theater",
             "dogs", "cats", "schools", "birdwatching", "photography", "reading", "history",
             "volunteering", "pickleball", "tennis", "yoga", "fishing", "sailing", "skiing",
             "baking", "woodworking", "knitting", "chess", "board games", "travel", "jazz",
             "opera", "film", "soccer", "baseball", "basketball", "swimming", "climbing",
             "camping", "astronomy", "beekeeping", "quilting", "pottery", "dancing",
             "live music", "home improvement", "antiques", "classic cars", "coffee", "tea",
             "vegetable gardening", "trail running", "modern art", "local history",
             "wildlife", "genealogy")
FILLER = ["the", "city", "council", "said", "on", "tuesday", "that", "the", "plan", "would",
          "move", "ahead", "next", "month", "with", "a", "public", "meeting", "at", "the",
          "library", "where", "neighbors", "can", "ask", "questions", "about", "costs", "parking",
          "traffic", "schedules", "and", "the", "new", "design", "while", "staff", "collect",
          "comments", "from", "residents", "owners", "renters", "and", "local", "businesses",
          "before", "a", "final", "vote", "in", "spring", "officials", "expect", "work", "to",
          "begin", "soon", "if", "the", "budget", "holds"]


def _rss_mb() -> float:
    """Peak resident memory of this process so far, in MB (ru_maxrss is KB on Linux)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 1024 if sys.platform != "darwin" else peak / 1024 / 1024


def _text(rng: random.Random, words: int, topic: str | None) -> str:
    out = [rng.choice(FILLER) for _ in range(words)]
    if topic:
        for _ in range(rng.randint(0, 3)):
            out.insert(rng.randrange(len(out)), topic)
    return " ".join(out)


def make_data(contacts: int, articles: int, seed: int
              ) -> tuple[list[Article], tuple[Contact, ...], dict[str, frozenset[str]],
                         dict[str, tuple[str, ...]], tuple[Tip, ...]]:
    """Synthetic articles, contacts, history, source topics and tips."""
    rng = random.Random(seed)
    hoods = [f"District {i:02d}" for i in range(50)]
    hobby_sources = {f"hobby-{i:02d}": tuple(rng.sample(INTERESTS, rng.choice((1, 1, 2, 4))))
                     for i in range(20)}
    source_topics: dict[str, tuple[str, ...]] = dict(hobby_sources)
    arts: list[Article] = []
    for n in range(articles):
        roll = rng.random()
        age = rng.uniform(0, 90)
        topics: tuple[str, ...] = ()
        hood = ""
        if roll < 0.4:
            kind = "neighbourhood"
            hood = rng.choice(hoods)
            source = "news-" + hood.lower().replace(" ", "-")
            topic = rng.choice(INTERESTS) if rng.random() < 0.2 else None
            title = f"{hood} {_text(rng, 6, topic)}"
        elif roll < 0.55:
            kind = rng.choice(("market", "economy"))
            source = f"{kind}-feed"
            topic = None
            title = _text(rng, 8, None)
        else:
            kind = "hobby"
            source = rng.choice(list(hobby_sources))
            topic = rng.choice(hobby_sources[source])
            topics = (topic,) if rng.random() < 0.6 else ()
            title = _text(rng, 7, topic)
        arts.append(Article(
            id=f"{source}:{n}", source=source, kind=kind, url=f"https://bench.example/{n}",
            title=title, summary_html="", summary_text=_text(rng, 45, topic),
            published=NOW - dt.timedelta(days=age), neighbourhood=hood, topics=topics,
            cluster=f"url:{n // 2 if n % 50 == 0 else n}"))
    ids = [a.id for a in arts]
    people = []
    history: dict[str, frozenset[str]] = {}
    tip_ids = [f"tip:t{i}" for i in range(26)]  # one string per tip, not one per person
    for n in range(contacts):
        email = f"person{n}@bench.example"
        mine = []
        for interest in rng.sample(INTERESTS, rng.randint(0, 4)):
            # People write interests their own way: "Golf", "gardens", "Craft Beers".
            style = rng.random()
            mine.append(interest.title() if style < 0.2 else
                        interest + "s" if style < 0.3 and not interest.endswith("s") else
                        interest)
        people.append(Contact(email=email, first_name=f"P{n}",
                              neighbourhood=rng.choice(hoods) if rng.random() < 0.85 else "",
                              interests=tuple(mine)))
        if rng.random() < 0.33:
            got = rng.sample(ids, rng.randint(5, 25))
            history[email] = frozenset(got) | {tip_ids[rng.randrange(26)] for _ in range(3)}
    tips = tuple(Tip(f"t{i}", "maintenance", f"Tip {i}", "Body.",
                     season=("", "winter", "autumn")[i % 3]) for i in range(26))
    return arts, tuple(people), history, source_topics, tips


def main() -> None:
    """Generate the data, build the plan, print the figures."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--contacts", type=int, default=100_000)
    parser.add_argument("--articles", type=int, default=2_000)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--million", action="store_true",
                        help="1,000,000 contacts (the goal: under 20 s and 1 GB)")
    args = parser.parse_args()
    if args.million:
        args.contacts = 1_000_000
    started = time.perf_counter()
    arts, people, history, source_topics, tips = make_data(args.contacts, args.articles,
                                                           args.seed)
    generated = time.perf_counter() - started
    started = time.perf_counter()
    arts = [dataclasses.replace(a, profile=profile(a)) for a in arts]  # as ingest stores
    profiled = time.perf_counter() - started
    rss_before = _rss_mb()
    campaign = Campaign(name="bench", kind="newsletter", audiences=("bench",),
                        schedule="0 9 1 * *", subject="s", sections=SectionSizes(),
                        max_per_source=2, max_age_days=45)
    started, cpu = time.perf_counter(), time.process_time()
    plan = plan_newsletter(campaign, people, PlanInputs(
        arts, tips, "UTC", {"sailing": ("regatta",)}, source_topics, NOW),
        LedgerView(history=history), NOW)
    elapsed, cpu = time.perf_counter() - started, time.process_time() - cpu
    picks = sum(len(e.picks) for e in plan.emails)
    distinct = len({i for c in people for i in c.interests})
    print(f"match bench: {args.contacts:,} contacts x {args.articles:,} articles "
          f"({distinct} distinct interest spellings, {len(history):,} with history); "
          f"{os.cpu_count()} cores")
    print(f"  data generated in {generated:.1f} s; topic profiles (computed once at "
          f"ingest) in {profiled:.1f} s; peak RSS before planning {rss_before:.0f} MB")
    # CPU time beside wall time: on a shared machine the wall clock also counts waiting.
    print(f"  plan_newsletter: {elapsed:.2f} s wall ({cpu:.2f} s CPU), {len(plan.emails):,} "
          f"emails, {picks:,} picks, {len(plan.skipped):,} skipped")
    print(f"  peak RSS (ru_maxrss, whole process): {_rss_mb():.0f} MB")


if __name__ == "__main__":
    main()
