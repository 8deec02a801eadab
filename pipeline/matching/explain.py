"""Explain: the best candidates a contact did not get, and why each lost (pure).

Used by `sphere plan CAMPAIGN --explain`. It replays one contact's walk with a trace
(already sent, same story, source cap, section full) and adds what never reached the walk:
stale articles and near misses below the interest threshold.
"""
from __future__ import annotations

from collections.abc import Mapping

from pipeline.matching.match import MIN_INTEREST_SCORE, Matcher
from pipeline.matching.walk import Trace, pick_for_contact
from pipeline.models import Campaign, Contact, Rejected, Tip

__all__ = ["Rejected", "explain_contact"]  # Rejected lives in models (Plan holds it)

SHOWN = 6  # rejected candidates listed per contact
PER_REASON = 2  # of those, at most this many lost for the same kind of reason


def _stale(matcher: Matcher, contact: Contact) -> list[Rejected]:
    """Stale articles that would otherwise have matched this contact."""
    out = []
    for x in matcher.stale:
        why_age = (f"stale: published {x.age_days:.0f} days ago (max_age_days "
                   f"{matcher.max_age_days})")
        if contact.neighbourhood:
            score, how = matcher.hood_evidence(x, contact.neighbourhood)
            if score:
                out.append(Rejected("neighbourhood", x.article.id, x.article.title,
                                    x.article.source, round(score, 4), f"{why_age}; {how}"))
                continue
        for interest in contact.interests:
            score, how = matcher.score(x, interest)
            if score >= MIN_INTEREST_SCORE:
                out.append(Rejected("interests", x.article.id, x.article.title,
                                    x.article.source, round(score, 4),
                                    f"{why_age}; would match '{interest}': {how}"))
                break
    return out


def _near_misses(matcher: Matcher, contact: Contact) -> list[Rejected]:
    """Articles with some evidence for an interest, but not enough to count."""
    out = []
    for interest in contact.interests:
        matcher.scored(interest)  # fills near_misses for this interest
        for score, x, how in matcher.near_misses.get(matcher.key(interest), []):
            out.append(Rejected("interests", x.article.id, x.article.title, x.article.source,
                                round(score, 4),
                                f"below threshold for '{interest}' ({how}; needs "
                                f"{MIN_INTEREST_SCORE})"))
    return out


def explain_contact(matcher: Matcher, contact: Contact, campaign: Campaign,
                    tips: tuple[Tip, ...], seen: frozenset[str],
                    tip_last_seen: Mapping[str, str] | None = None,
                    shown: int = SHOWN) -> tuple[Rejected, ...]:
    """The best candidates this contact did not get, best first, each with its reason."""
    trace: Trace = []
    picks = pick_for_contact(matcher, contact, campaign, tips, seen, tip_last_seen, trace)
    chosen = {p.article.id for p in picks if p.article}
    found = [Rejected(section, c.article.id, c.article.title, c.article.source,
                      round(c.score, 4), why) for section, c, why in trace]
    found += _stale(matcher, contact) + _near_misses(matcher, contact)
    found.sort(key=lambda r: -r.score)
    out: list[Rejected] = []
    ids: set[str] = set()
    per_kind: dict[str, int] = {}
    for r in found:
        # The first (best) reason per article; one an email took elsewhere is not lost.
        if r.article_id in ids or r.article_id in chosen:
            continue
        # A few of each kind of reason, so one crowded feed does not hide the rest.
        kind = r.why.split(":")[0].split(" (")[0]
        if per_kind.get(kind, 0) >= PER_REASON:
            continue
        per_kind[kind] = per_kind.get(kind, 0) + 1
        ids.add(r.article_id)
        out.append(r)
        if len(out) >= shown:
            break
    return tuple(out)
