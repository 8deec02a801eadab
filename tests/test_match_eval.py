"""Matching quality on a hand-labelled evaluation set (tests/eval/): prints precision@3,
recall and wrong-section count, and holds precision@3 at 0.9 or better.

The set is built to be hard: ambiguous words ("run the numbers", "the art of", a "party"
wall, a "paper trail", a "craft" fair, "root beer"), plurals and capitals ("Gardens",
"Craft Beers"), multi-word interests, synonyms (built in and user-supplied), neighbourhood
names in other feeds and in lower case ("the north end of the lot"), stale items and the
same story from two sources. The last sixteen articles (h1-h16) were written after the
matcher was tuned and are scored as they come: their misses (a "movie theater", "running
for council", "hiking boots") are left in, not tuned away.
"""
from __future__ import annotations

import dataclasses
import datetime as dt
from pathlib import Path

import pytest
import yaml

from pipeline.matching.match import Matcher
from pipeline.models import Article, Campaign, Contact, SectionSizes, Tip
from pipeline.planning.inputs import LedgerView, PlanInputs
from pipeline.planning.plan import plan_newsletter

EVAL = Path(__file__).parent / "eval"
TIPS = (Tip("gutters", "maintenance", "Clean the gutters", "Before the rains."),
        Tip("filters", "maintenance", "Change the furnace filter", "Every three months."))


@dataclasses.dataclass
class EvalSet:
    """The evaluation data, loaded into the pipeline's own types."""

    now: dt.datetime
    campaign: Campaign
    synonyms: dict[str, tuple[str, ...]]
    source_topics: dict[str, tuple[str, ...]]
    articles: list[Article]
    contacts: tuple[Contact, ...]
    history: dict[str, frozenset[str]]
    ages: dict[str, int]
    names: dict[str, str]  # interest as written (lower-cased) -> subject
    labels: dict[str, dict[str, list[str]]]
    story: dict[str, str]  # article id -> story key (the labelled same-story groups)


def load_eval() -> EvalSet:
    """Read tests/eval/*.yaml into Articles, Contacts, history and labels."""
    arts = yaml.safe_load((EVAL / "articles.yaml").read_text(encoding="utf-8"))
    people = yaml.safe_load((EVAL / "contacts.yaml").read_text(encoding="utf-8"))
    labels = yaml.safe_load((EVAL / "labels.yaml").read_text(encoding="utf-8"))
    now = people["now"] if isinstance(people["now"], dt.datetime) else \
        dt.datetime.fromisoformat(people["now"])
    sources = arts["sources"]
    articles, ages = [], {}
    for a in arts["articles"]:
        src = sources[a["source"]]
        ages[a["id"]] = a["age"]
        articles.append(Article(
            id=a["id"], source=a["source"], kind=src["kind"],
            url=f"https://lakemont.example/{a['id']}", title=a["title"],
            summary_html=a["summary"], summary_text=a["summary"],
            published=now - dt.timedelta(days=a["age"]),
            neighbourhood=src.get("neighbourhood", ""), topics=tuple(a.get("topics", ())),
            cluster=a.get("cluster", f"url:{a['id']}")))
    c = people["campaign"]
    campaign = Campaign(name="eval", kind="newsletter", audiences=("eval",),
                        schedule="0 9 1 * *", subject="s",
                        sections=SectionSizes(**c["sections"]),
                        max_per_source=c["max_per_source"], max_age_days=c["max_age_days"])
    contacts, history = [], {}
    by_id = {a.id: a for a in articles}
    for p in people["contacts"]:
        contacts.append(Contact(email=p["email"], neighbourhood=p.get("neighbourhood", ""),
                                interests=tuple(p.get("interests", ()))))
        got = p.get("received", ())
        history[p["email"]] = frozenset(got) | {by_id[i].cluster for i in got}
    story = {a.id: a.id for a in articles}
    for group in labels.get("same_story", ()):
        for i in group:
            story[i] = group[0]
    return EvalSet(now, campaign, {k: tuple(v) for k, v in people["synonyms"].items()},
                   {k: tuple(v.get("topics", ())) for k, v in sources.items()}, articles,
                   tuple(contacts), history, ages, labels["interest_names"],
                   labels["articles"], story)


def plan_for(ev: EvalSet, campaign: Campaign):
    """The plan the pipeline makes for the evaluation contacts."""
    return plan_newsletter(campaign, ev.contacts, PlanInputs(
        ev.articles, TIPS, "UTC", ev.synonyms, ev.source_topics, ev.now),
        LedgerView(history=ev.history), ev.now)


def _relevance(ev: EvalSet, contact: Contact, article_id: str) -> tuple[bool, bool]:
    """(relevant to one of their interests, relevant to their neighbourhood)."""
    label = ev.labels.get(article_id, {})
    subjects = {ev.names[i.lower()] for i in contact.interests}
    return (bool(subjects & set(label.get("interests", ()))),
            bool(contact.neighbourhood) and contact.neighbourhood in label.get("places", ()))


def evaluate(ev: EvalSet) -> dict[str, float]:
    """precision@3, recall, wrong-section and rule-violation counts for the eval set."""
    plan = plan_for(ev, ev.campaign)
    per_contact, hits, shown, wrong, violations = [], 0, 0, 0, []
    section_right = {"neighbourhood": [0, 0], "interests": [0, 0]}
    for email in plan.emails:
        c = email.contact
        personal = [p for p in email.picks if p.section in ("neighbourhood", "interests")
                    and not p.general]
        top = sorted(personal, key=lambda p: -p.score)[:3]
        rel = [any(_relevance(ev, c, p.article.id)) for p in top]
        if top:
            per_contact.append(sum(rel) / len(top))
            hits += sum(rel)
            shown += len(top)
        seen_stories = {ev.story[i] for i in ev.history[c.email] if i in ev.story}
        stories_here: set[str] = set()
        for p in email.picks:
            if p.article is None:
                continue
            by_interest, by_place = _relevance(ev, c, p.article.id)
            if p.section in section_right and not p.general:
                section_right[p.section][0] += by_interest if p.section == "interests" \
                    else by_place
                section_right[p.section][1] += 1
            if (p.section == "interests" and by_place and not by_interest) or \
                    (p.section == "neighbourhood" and by_interest and not by_place) or \
                    (p.section == "market" and p.article.kind not in ("market", "economy")):
                wrong += 1
            s = ev.story[p.article.id]
            if ev.ages[p.article.id] > ev.campaign.max_age_days:
                violations.append(f"{c.email}: stale {p.article.id}")
            if s in seen_stories:
                violations.append(f"{c.email}: repeat {p.article.id}")
            if s in stories_here:
                violations.append(f"{c.email}: same story twice {p.article.id}")
            stories_here.add(s)
    # Recall: of the relevant items a person could get (fresh, not a story they already
    # had), how many the matcher finds when the sections are big enough to hold them all.
    roomy = dataclasses.replace(ev.campaign, max_per_source=1000, sections=SectionSizes(
        neighbourhood=1000, market=0, interests=1000, tip=0))
    wide = {e.contact.email: {p.article.id for p in e.picks if p.article}
            for e in plan_for(ev, roomy).emails}
    wanted = found = 0
    for c in ev.contacts:
        seen_stories = {ev.story[i] for i in ev.history[c.email] if i in ev.story}
        for a in ev.articles:
            if ev.ages[a.id] > ev.campaign.max_age_days or ev.story[a.id] in seen_stories:
                continue
            if any(_relevance(ev, c, a.id)):
                wanted += 1
                found += a.id in wide.get(c.email, set()) or any(
                    ev.story[x] == ev.story[a.id] for x in wide.get(c.email, set()))
    # The matcher's own ranked lists, before sections and caps: every article it would
    # call a match for each interest, against the labels.
    matcher = Matcher(ev.articles, ev.now, ev.campaign.max_age_days, ev.synonyms,
                      ev.source_topics)
    listed = listed_right = labelled = labelled_found = 0
    for written in {i for c in ev.contacts for i in c.interests}:
        subject = ev.names[written.lower()]
        got = {cand.article.id for cand in matcher.for_interest(written)}
        truth = {a.id for a in ev.articles if ev.ages[a.id] <= ev.campaign.max_age_days
                 and subject in ev.labels.get(a.id, {}).get("interests", ())}
        listed += len(got)
        listed_right += len(got & truth)
        labelled += len(truth)
        labelled_found += len(got & truth)
    return {"precision@3": sum(per_contact) / len(per_contact),
            "match_precision": listed_right / listed, "match_recall": labelled_found / labelled,
            **{f"{k}_precision": right / total for k, (right, total) in section_right.items()},
            "precision@3 (micro)": hits / shown, "recall": found / wanted,
            "wrong_section": wrong, "violations": violations, "contacts": len(ev.contacts),
            "articles": len(ev.articles), "emails": len(plan.emails)}


@pytest.fixture(scope="module")
def ev() -> EvalSet:
    """The evaluation set, loaded once."""
    return load_eval()


def test_eval_set_is_big_enough(ev: EvalSet) -> None:
    assert len(ev.articles) >= 80 and len(ev.contacts) >= 30
    assert set(ev.labels) <= {a.id for a in ev.articles}
    assert all(i.lower() in ev.names for c in ev.contacts for i in c.interests)


def test_precision_recall_and_sections(ev: EvalSet) -> None:
    m = evaluate(ev)
    print(f"\nmatching eval: {m['articles']} articles, {m['contacts']} contacts, "
          f"{m['emails']} emails; precision@3 = {m['precision@3']:.3f} (micro "
          f"{m['precision@3 (micro)']:.3f}), recall = {m['recall']:.3f}, "
          f"wrong-section = {m['wrong_section']}, violations = {len(m['violations'])}; "
          f"all picks: neighbourhood precision = {m['neighbourhood_precision']:.3f}, "
          f"interests precision = {m['interests_precision']:.3f}; "
          f"interest matches before sections and caps: precision = "
          f"{m['match_precision']:.3f}, recall = {m['match_recall']:.3f}")
    assert not m["violations"], m["violations"]
    assert m["precision@3"] >= 0.9
    assert m["wrong_section"] == 0
    assert m["recall"] >= 0.75
    assert m["match_precision"] >= 0.85 and m["match_recall"] >= 0.8
