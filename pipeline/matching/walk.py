"""The walk: one contact's email built section by section from the matcher's ready lists
(pure), with never-repeat, one telling per story and the per-source cap."""
from __future__ import annotations

import heapq
from collections.abc import Iterable, Mapping

from pipeline.matching.match import GENERAL_FILL, Candidate, Matcher, choose_tip
from pipeline.models import Campaign, Contact, Pick, Tip

Trace = list[tuple[str, Candidate, str]]  # (section, candidate, why it lost)


class _Email:
    """Picks for one email under construction: no repeats, no twin stories, source caps."""

    def __init__(self, matcher: Matcher, seen: frozenset[str], max_per_source: int,
                 trace: Trace | None) -> None:
        self.seen = seen
        # Every story the person already has, whichever source or URL told it.
        self.blocked = {matcher.story_of[k] for k in seen if k in matcher.story_of}
        self.max_per_source = max_per_source
        self.picks: list[Pick] = []
        self.ids: set[str] = set()
        self.stories: dict[str, str] = {}  # story -> the headline that told it here
        self.per_source: dict[str, int] = {}
        self.trace = trace

    def fits(self, section: str, c: Candidate) -> bool:
        """True if the candidate may join this email; records why not when tracing."""
        a = c.article
        if a.id in self.ids:
            return False  # already in this email, in an earlier section
        why = ""
        if c.story in self.blocked:
            if self.trace is None:
                return False
            why = ("already sent" if a.id in self.seen or a.cluster in self.seen
                   else "same story as one already sent")
        elif c.story in self.stories:
            why = f"same story as '{self.stories[c.story]}'"
        elif self.per_source.get(a.source, 0) >= self.max_per_source:
            why = f"source cap: already {self.max_per_source} from {a.source}"
        if why:
            if self.trace is not None:
                self.trace.append((section, c, why))
            return False
        return True

    def add(self, c: Candidate) -> None:
        """Take a candidate (its ready Pick, shared by everyone who gets it)."""
        self.picks.append(c.pick)
        self.ids.add(c.article.id)
        self.stories[c.story] = c.article.title
        self.per_source[c.article.source] = self.per_source.get(c.article.source, 0) + 1

    def full(self, section: str, c: Candidate) -> bool:
        """Record a candidate that lost only because its section was full; True to stop."""
        if self.trace is None:
            return True
        if self.fits(section, c):
            self.trace.append((section, c, "section full"))
        return False


def _fill(email: _Email, section: str, candidates: Iterable[Candidate], size: int) -> int:
    """Take the best fitting candidates until the section holds `size`; returns how many."""
    taken = 0
    for c in candidates:
        if taken >= size:
            if email.full(section, c):
                break
        elif email.fits(section, c):
            email.add(c)
            taken += 1
    return taken


def pick_for_contact(matcher: Matcher, contact: Contact, campaign: Campaign,
                     tips: tuple[Tip, ...], seen: frozenset[str],
                     tip_last_seen: Mapping[str, str] | None = None,
                     trace: Trace | None = None) -> tuple[Pick, ...]:
    """Choose this contact's items, section by section, each with a reason."""
    if seen or trace is not None:
        return _with_tip(matcher, contact, campaign, tips, seen, tip_last_seen,
                         _article_picks(matcher, contact, campaign, seen, trace))
    # Without a history, the articles depend only on the neighbourhood and the interests:
    # people who share both share the walk, and its tuple when their tip is the same
    # (a million emails). The first to walk it keeps its whole email there, tip included.
    key = (contact.neighbourhood, contact.interests)
    first = matcher.walks.get(key)
    if first is None:
        whole = _with_tip(matcher, contact, campaign, tips, seen, tip_last_seen,
                          _article_picks(matcher, contact, campaign, seen, None))
        matcher.walks[key] = whole
        return whole
    tipped = bool(first) and first[-1].tip is not None
    picks = first[:-1] if tipped else first
    if not picks and campaign.skip_empty:
        return ()
    tip = choose_tip(contact, tips, seen, matcher.now, tip_last_seen) \
        if campaign.sections.tip else None
    if tip is None:
        return picks
    if tipped and first[-1].tip == tip:
        return first
    shared = matcher.with_tip.get((key, tip.id))
    if shared is None:
        shared = matcher.with_tip[(key, tip.id)] = (*picks, matcher.tip_pick(tip))
    return shared


def _with_tip(matcher: Matcher, contact: Contact, campaign: Campaign,
              tips: tuple[Tip, ...], seen: frozenset[str],
              tip_last_seen: Mapping[str, str] | None, picks: tuple[Pick, ...]
              ) -> tuple[Pick, ...]:
    """The articles plus this person's tip; () when there is nothing and the campaign
    skips empty emails."""
    if not picks and campaign.skip_empty:
        return ()
    if campaign.sections.tip:
        tip = choose_tip(contact, tips, seen, matcher.now, tip_last_seen)
        if tip:
            return (*picks, matcher.tip_pick(tip))
    return picks


def _article_picks(matcher: Matcher, contact: Contact, campaign: Campaign,
                   seen: frozenset[str], trace: Trace | None) -> tuple[Pick, ...]:
    """The articles of one contact's email, section by section."""
    sizes = campaign.sections
    email = _Email(matcher, seen, campaign.max_per_source, trace)
    if contact.neighbourhood and sizes.neighbourhood:
        _fill(email, "neighbourhood", matcher.for_neighbourhood(contact.neighbourhood),
              sizes.neighbourhood)
    matched = 0
    if sizes.interests and contact.interests:
        lists = [matcher.for_interest(i) for i in dict.fromkeys(contact.interests)]
        # First the best item of each interest, so a person with three hobbies hears
        # about more than one of them; then the best of what is left.
        for lst in lists:
            if matched < sizes.interests:
                matched += _fill(email, "interests", lst, 1) if trace is None else \
                    _fill(email, "interests", _first_fit(email, lst), 1)
        merged = heapq.merge(*lists, key=lambda c: (-c.score, c.article.id))
        matched += _fill(email, "interests", merged, sizes.interests - matched)
    if sizes.market:
        _fill(email, "market", matcher.market, sizes.market)
        if matched == 0 and sizes.interests:
            # Nothing fits their interests: more general market news instead of a hobby
            # story that does not fit, and the reason says it is general.
            _fill(email, "market", matcher.market_general if contact.interests
                  else matcher.market_general_plain, min(GENERAL_FILL, sizes.interests))
    return tuple(email.picks)


def _first_fit(email: _Email, lst: list[Candidate]) -> Iterable[Candidate]:
    """While tracing, walk one interest's list only up to its first fitting candidate, so
    the round-robin does not record the rest as 'section full'."""
    for c in lst:
        yield c
        if c.article.id in email.ids:
            return
