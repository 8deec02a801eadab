"""Benchmark: render newsletter emails (HTML + text + MIME), compiled vs naive path.

Compiled: MJML compiled once per template; each email is one Jinja render of the
compiled HTML, one of the text twin, and the MIME writer. Naive: Jinja over the MJML,
then MJML -> HTML for every email. Rates are per CPU second of this one process, so they
read as emails/s per core whatever else the machine is doing.

    python bench/render.py [--emails 10000] [--naive 1000]
"""
from __future__ import annotations

import argparse
import datetime as dt
import random
import sys
import time
from pathlib import Path

import mjml

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from pipeline.config import load_config  # noqa: E402
from pipeline.feeds.ingest import ingest  # noqa: E402
from pipeline.models import Contact, Pick, Plan, PlannedEmail  # noqa: E402
from pipeline.rendering.render import Renderer  # noqa: E402
from pipeline.state.store import Store  # noqa: E402

NOW = dt.datetime(2026, 11, 22, 18, 0, tzinfo=dt.UTC)
FIRST = ["Zoë", "José", "Ann", "Priya", "Marcus", "Wei", "Fatima", "Oliver", "María", "Kenji"]
LAST = ["Hartmann", "Alvarez", "Lee", "Raman", "Bell", "Chen", "Haddad", "Grant", "Santos"]
SECTIONS = ("neighbourhood", "neighbourhood", "market", "interests", "interests")


def build(n: int) -> tuple[Plan, Renderer]:
    """A plan of n newsletter emails, 5 article picks and a tip each, from the sample."""
    config = load_config(ROOT)
    store = Store.open(ROOT / "var" / "bench-render.db", dry_run=True)
    ingest(config.sources, store, NOW)
    articles = store.articles()
    rng = random.Random(7)
    emails = []
    for i in range(n):
        contact = Contact(email=f"person{i}@example.com", first_name=rng.choice(FIRST),
                          last_name=rng.choice(LAST), neighbourhood="Maple Heights",
                          interests=("gardening", "golf"),
                          note="Hope the new deck is holding up!" if i % 4 == 0 else "")
        picks = tuple(Pick(section, f"reason {section} {i % 7}", 1.0, rng.choice(articles))
                      for section in SECTIONS)
        tip = Pick("tip", "advice tip", 0.0, tip=config.tips[i % len(config.tips)])
        emails.append(PlannedEmail(contact, (*picks, tip)))
    campaign = config.campaign("monthly-sphere")
    plan = Plan(campaign, "monthly-sphere@2026-11-01T09:00", "2026-11-01T09:00:00-07:00",
                tuple(emails))
    return plan, Renderer(config.project, config.sender, "bench-secret")


def compiled_path(plan: Plan, renderer: Renderer, count: int) -> tuple[float, int]:
    """CPU seconds and bytes for `count` emails the production way."""
    renderer.render(plan, plan.emails[0], NOW)  # compile once, outside the timing
    size = 0
    start = time.process_time()
    for planned in plan.emails[:count]:
        size += len(renderer.render(plan, planned, NOW).raw)
    return time.process_time() - start, size


def naive_path(plan: Plan, renderer: Renderer, count: int) -> float:
    """CPU seconds for `count` emails rendered Jinja -> MJML -> HTML each time."""
    source = renderer.compile_mjml("newsletter")
    jinja_mjml = renderer.html_env.from_string(source)  # the same runtime Jinja, on MJML
    compiled = renderer.template("newsletter")
    start = time.process_time()
    for planned in plan.emails[:count]:
        ctx = renderer.context(plan, planned, NOW)
        html = mjml.mjml2html(jinja_mjml.render(ctx))
        text = compiled.text.render(ctx)
        renderer.mime(plan.campaign, planned, ctx["subject"], text, html,
                      renderer.message_id(plan.send_id, planned.contact.email), NOW,
                      ctx["unsubscribe_links"])
    return time.process_time() - start


def main() -> None:
    """Run both paths and print the figures."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--emails", type=int, default=10_000)
    parser.add_argument("--naive", type=int, default=1_000,
                        help="emails for the (slow) naive path")
    args = parser.parse_args()
    plan, renderer = build(max(args.emails, args.naive))
    cpu, size = compiled_path(plan, renderer, args.emails)
    print(f"compiled: {args.emails} emails in {cpu:.2f} CPU s = "
          f"{args.emails / cpu:,.0f} emails/s per core "
          f"(avg {size / args.emails / 1024:.1f} KB per message, HTML + text + MIME)")
    naive = naive_path(plan, renderer, args.naive)
    print(f"naive:    {args.naive} emails in {naive:.2f} CPU s = "
          f"{args.naive / naive:,.0f} emails/s per core (Jinja then MJML for every email)")
    print(f"speed-up: {(args.emails / cpu) / (args.naive / naive):.1f}x")


if __name__ == "__main__":
    main()
