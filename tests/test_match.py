"""Matching rules, one at a time: word forms, synonyms, evidence, never-repeat, diversity,
honest fallbacks, tips, explanations and the cost model."""
from __future__ import annotations

import dataclasses
import datetime as dt

from pipeline.matching.explain import explain_contact
from pipeline.matching.match import Matcher, choose_tip, stories
from pipeline.matching.text import fixed_compound, phrase, stem, subject_stems
from pipeline.matching.walk import pick_for_contact
from pipeline.models import Article, Campaign, Contact, SectionSizes, Tip
from pipeline.planning.inputs import LedgerView, PlanInputs
from pipeline.planning.plan import plan_newsletter

NOW = dt.datetime(2026, 11, 20, 12, 0, tzinfo=dt.UTC)
TIPS = tuple(Tip(f"t{i}", "maintenance", f"Tip {i}", "Body.") for i in range(4))


def art(id: str, title: str, text: str = "", *, source: str = "misc", kind: str = "hobby",
        age: float = 2, topics: tuple[str, ...] = (), hood: str = "", cluster: str = ""
        ) -> Article:
    """A stored article, as ingest would hand it over."""
    return Article(id=id, source=source, kind=kind, url=f"https://t.example/{id}",
                   title=title, summary_html=text, summary_text=text,
                   published=NOW - dt.timedelta(days=age), neighbourhood=hood,
                   topics=topics, cluster=cluster or f"url:{id}")


def campaign(**changes) -> Campaign:
    """The default newsletter campaign, with changes."""
    base = Campaign(name="c", kind="newsletter", audiences=("a",), schedule="0 9 1 * *",
                    subject="s", max_age_days=45)
    return dataclasses.replace(base, **changes)


def matcher(articles: list[Article], synonyms=None, source_topics=None,
            max_age_days: int | None = 45) -> Matcher:
    """A matcher at NOW."""
    return Matcher(articles, NOW, max_age_days, synonyms or {}, source_topics or {})


def ids(cands) -> list[str]:
    """The article ids of candidates or picks, in order."""
    return [c.article.id for c in cands if c.article is not None]


# --- word forms ------------------------------------------------------------------------

def test_stems_fold_plurals_and_verb_forms_but_not_other_words() -> None:
    assert {stem(w) for w in ("gardens", "gardening", "gardener", "garden")} == {"garden"}
    assert {stem(w) for w in ("runners", "running", "runs")} == {"run"}
    assert stem("art") != stem("start") and stem("arts") == "art"
    assert phrase("Craft Beers") == phrase("craft beer")


def test_interest_matches_word_forms_and_case_but_not_substrings() -> None:
    m = matcher([
        art("a", "Community gardens add raised beds", "Gardeners can sign up for a garden "
            "plot; gardening tools are provided."),
        art("b", "Startup grants open", "Apply to start a business; the start date is soon."),
        art("c", "Mural artists paint the underpass", "Art students helped the artists."),
    ])
    assert ids(m.for_interest("Gardening")) == ["a"]
    assert ids(m.for_interest("gardens")) == ["a"]
    assert ids(m.for_interest("Art")) == ["c"]  # never "start", "Startup"


def test_multi_word_interest_needs_the_whole_phrase() -> None:
    m = matcher([
        art("fair", "Holiday craft fair returns", "Crafts, quilts and a craft fair raffle."),
        art("float", "Root beer floats for summer", "Cold root beer, ice cream; root beer."),
        art("ale", "Craft beer week pours 40 ales", "Craft beer from local craft brewers."),
    ])
    assert ids(m.for_interest("craft beer")) == ["ale"]


def test_a_bare_word_used_as_a_verb_is_not_the_hobby() -> None:
    assert "run" not in subject_stems("Run the numbers before you refinance")
    m = matcher([art("ec", "Run the numbers before you refinance",
                     "Run the numbers again if you might run short.", kind="economy")])
    assert m.for_interest("running") == []


def test_a_word_that_only_modifies_one_noun_is_about_that_noun() -> None:
    water = (tuple(subject_stems("Running water restored")),
             tuple(subject_stems("Homes had running water again by Tuesday.")))
    assert fixed_compound(water, {phrase("running")}) == stem("water")
    half = (tuple(subject_stems("Half marathon training starts")),
            tuple(subject_stems("Train for the half marathon in a group.")))
    assert fixed_compound(half, {phrase("marathon")}) == ""  # the head stays "marathon"
    m = matcher([art("w", "Running water restored on Linden Way",
                     "Homes had running water again by Tuesday.", kind="neighbourhood",
                     source="hood", hood="Fairview Park")])
    assert m.for_interest("running") == []


def test_money_writing_needs_more_evidence_for_a_hobby_word() -> None:
    m = matcher([
        art("ec", "Keep a paper trail for receipts", "A folder keeps the trail tidy.",
            kind="economy"),
        art("hb", "New trail opens by the lake", "The trail climbs to a viewpoint."),
    ], synonyms={"hiking": ("trail",)})
    assert ids(m.for_interest("hiking")) == ["hb"]


# --- synonyms --------------------------------------------------------------------------

def test_built_in_synonyms_and_the_users_extend_them() -> None:
    arts = [art("t", "Taproom trivia returns", "Trivia at the taproom of a brewery."),
            art("r", "HO layout night at the depot", "The club ran the HO layout all night.")]
    plain = matcher(arts)
    assert ids(plain.for_interest("craft beer")) == ["t"]  # built in: taproom, brewery
    assert plain.for_interest("model trains") == []
    extended = matcher(arts, synonyms={"model trains": ("HO layout",), "craft beer": ("ipa",)})
    assert ids(extended.for_interest("Model Trains")) == ["r"]
    assert ids(extended.for_interest("craft beer")) == ["t"]  # defaults kept
    reason = extended.for_interest("Model Trains")[0].reason
    assert reason.startswith("matches your interest 'Model Trains'") and "'HO layout'" in reason


def test_broader_subject_counts_through_tags() -> None:
    m = matcher([art("c", "Symphony adds a matinee", "An extra performance.",
                     topics=("music",))])
    assert ids(m.for_interest("live music")) == ["c"]
    assert "tagged by its source" in m.for_interest("live music")[0].reason


# --- evidence and recency --------------------------------------------------------------

def test_feed_topics_count_more_than_words_and_recent_beats_old() -> None:
    m = matcher([
        art("words", "Golf notes", "Golf, golf and more golf talk.", age=1),
        art("tagged", "Winter league signups", "Eight weeks on simulators.",
            topics=("golf",), age=1),
        art("tagged-old", "Autumn league results", "Scores are in.", topics=("golf",),
            age=30),
    ])
    assert ids(m.for_interest("golf"))[0] == "tagged"
    scores = {c.article.id: c.score for c in m.for_interest("golf")}
    assert scores["tagged"] > scores["words"] and scores["tagged"] > scores["tagged-old"]


def test_only_a_single_topic_feed_vouches_for_its_stories() -> None:
    arts = [art("g", "Putting drills for winter", "A mug and a carpet.", source="tee-box"),
            art("w", "Pairings for a cold night", "Dry and light.", source="eats")]
    m = matcher(arts, source_topics={"tee-box": ("golf",), "eats": ("wine", "cooking")})
    assert ids(m.for_interest("golf")) == ["g"]
    assert m.for_interest("wine") == []  # a feed about several things says nothing


def test_stale_articles_are_left_out() -> None:
    arts = [art("old", "Golf course news", "Golf golf golf.", topics=("golf",), age=60),
            art("new", "Golf league signups", "Golfers gather.", topics=("golf",))]
    assert ids(matcher(arts).for_interest("golf")) == ["new"]
    # max_age_days: null keeps everything.
    assert ids(matcher(arts, max_age_days=None).for_interest("golf")) == ["new", "old"]


def test_neighbourhood_feed_or_proper_name_but_not_a_lowercase_phrase() -> None:
    m = matcher([
        art("own", "Recycling moves to Thursdays", kind="neighbourhood", source="ne",
            hood="North End"),
        art("named", "Jazz brunch returns to the North End", "A trio plays Sundays."),
        art("lower", "Trailhead parking fees", "Free parking at the north end of the lot."),
    ])
    got = m.for_neighbourhood("North End")
    assert ids(got) == ["own", "named"]
    assert got[0].reason == "from your neighbourhood, North End"
    assert "mentions your neighbourhood, North End" in got[1].reason


# --- never repeat, diversity -----------------------------------------------------------

def test_no_article_or_story_twice_across_sends() -> None:
    arts = [art("a", "Golf league signups open", topics=("golf",), cluster="c1"),
            art("b", "Golf league signups open now", topics=("golf",), source="other",
                cluster="c2"),  # the same story told again: similar headline
            art("c", "Indoor simulator night", topics=("golf",), cluster="c1"),  # same cluster
            art("d", "Putting drills for winter", topics=("golf",))]
    m = matcher(arts)
    person = Contact("p@x.test", interests=("golf",))
    picks = pick_for_contact(m, person, campaign(), TIPS, frozenset({"a", "c1"}))
    assert ids(picks) == ["d"]


def test_near_identical_headlines_are_one_story() -> None:
    arts = [art("x", "Lakemont home prices dip 2% in October", cluster="u1"),
            art("y", "October: Lakemont home prices dip 2%", cluster="u2"),
            art("z", "Inventory rises for a third month", cluster="u3")]
    s = stories(arts)
    assert s["x"] == s["y"] == s["u1"] == s["u2"] != s["z"]


def test_a_story_retold_under_another_headline_is_one_story() -> None:
    arts = [art("a", "Movie theater on Front Street to reopen as a four-screen cinema",
                "The owners will show new releases and a monthly silent film with a live "
                "organ.", cluster="u1"),
            art("b", "Front Street's old picture house will show movies again",
                "A four-screen cinema with new releases and a silent film night with a live "
                "organ is planned by the owners.", cluster="u2"),
            art("c", "Cinema club picks a silent film for its winter night",
                "Members vote on the film; the hall lends the projector."),
            art("d", "Front Street repaving starts Monday", "Expect detours for two weeks."),
            art("e", "Bakery adds Sunday hours", "Open from eight to noon."),
            art("f", "Organ recital at St. Mark's", "A program of Bach and Widor."),
            art("g", "New books at the library", "Fresh novels to borrow.")]
    s = stories(arts)
    assert s["a"] == s["b"] == s["u1"] == s["u2"]
    assert len({s[i] for i in "acdefg"}) == 6


def test_source_cap_and_one_story_per_email() -> None:
    arts = [art(f"g{i}", title, topics=("golf",), source="tee") for i, title in enumerate((
        "Putting drills for winter", "Simulator league signups", "Greens fees drop",
        "Club pro retires"))]
    arts += [art("twin1", "Charity scramble raises $40,000 for the food bank",
                 topics=("golf",), source="a", cluster="k"),
             art("twin2", "Charity scramble raises $40,000 for food bank",
                 topics=("golf",), source="b", cluster="k2")]
    picks = pick_for_contact(matcher(arts), Contact("p@x.test", interests=("golf",)),
                             campaign(sections=SectionSizes(interests=5)), TIPS,
                             frozenset())
    chosen = ids(picks)
    assert sum(a.startswith("g") for a in chosen) == 2  # max_per_source
    assert sum(a.startswith("twin") for a in chosen) == 1


def test_two_consecutive_sends_repeat_nothing() -> None:
    from tests.test_match_eval import load_eval
    ev = load_eval()
    history = {k: set(v) for k, v in ev.history.items()}
    first = plan_newsletter(ev.campaign, ev.contacts, PlanInputs(
        ev.articles, TIPS, "UTC", ev.synonyms, ev.source_topics, ev.now),
        LedgerView(history=ev.history), ev.now)
    for e in first.emails:  # what the ledger would record: items and clusters
        history.setdefault(e.contact.email, set()).update(
            [p.key for p in e.picks] + [p.article.cluster for p in e.picks if p.article])
    later = ev.now + dt.timedelta(days=7)
    second = plan_newsletter(ev.campaign, ev.contacts, PlanInputs(
        ev.articles, TIPS, "UTC", ev.synonyms, ev.source_topics, later),
        LedgerView(history={k: frozenset(v) for k, v in history.items()}), later)
    before = {e.contact.email: {p.key for p in e.picks} for e in first.emails}
    story = stories(ev.articles)
    repeats = 0
    for e in second.emails:
        had = before.get(e.contact.email, set())
        had_stories = {story[k] for k in had if k in story}
        for p in e.picks:
            repeats += p.key in had or (p.article is not None and
                                        story[p.article.id] in had_stories)
    assert sum(len(e.picks) for e in second.emails) > 0
    assert repeats == 0


# --- honest fallbacks ------------------------------------------------------------------

def test_nothing_matches_so_general_market_news_says_so() -> None:
    arts = [art("h", "Golf drills", topics=("golf",)),
            art("m1", "Prices dip", kind="market", source="mk"),
            art("m2", "Rates ease", kind="economy", source="ec"),
            art("m3", "Inventory rises", kind="market", source="mk2"),
            art("m4", "Insurance climbs", kind="economy", source="ec2")]
    picks = pick_for_contact(matcher(arts), Contact("p@x.test", interests=("sailing",)),
                             campaign(), TIPS, frozenset())
    assert "h" not in ids(picks)  # never a hobby story that does not fit
    general = [p for p in picks if p.general and p.article]
    assert general and all("general" in p.reason for p in general)
    tip = [p for p in picks if p.section == "tip"]
    assert tip and tip[0].general and "general" in tip[0].reason


def _inputs(arts: list[Article]) -> PlanInputs:
    """A send's inputs with these articles and the test tips, for the period NOW."""
    return PlanInputs(articles=arts, tips=TIPS, period=NOW)


def test_nothing_at_all_means_no_email_unless_configured() -> None:
    arts = [art("h", "Golf drills", topics=("golf",))]
    person = Contact("p@x.test", interests=("sailing",))
    plan = plan_newsletter(campaign(), (person,), _inputs(arts), LedgerView(), NOW)
    assert not plan.emails and plan.skipped[0].reason == "nothing new worth sending"
    keep = plan_newsletter(campaign(skip_empty=False), (person,), _inputs(arts),
                           LedgerView(), NOW)
    assert [p.section for p in keep.emails[0].picks] == ["tip"]


# --- tips ------------------------------------------------------------------------------

def test_tips_rotate_without_repeats_then_restart_least_recent_first() -> None:
    person = Contact("p@x.test")
    seen: set[str] = set()
    for _ in TIPS:
        tip = choose_tip(person, TIPS, frozenset(seen), NOW)
        assert tip and f"tip:{tip.id}" not in seen
        seen.add(f"tip:{tip.id}")
    last = {"t0": "2026-09-01", "t1": "2026-06-01", "t2": "2026-10-01", "t3": "2026-08-01"}
    assert choose_tip(person, TIPS, frozenset(seen), NOW, last).id == "t1"
    # Without dates, consecutive months step through the rotation.
    months = {choose_tip(person, TIPS, frozenset(seen), NOW.replace(month=m)).id
              for m in range(1, 5)}
    assert len(months) == 4


def test_in_season_tips_come_first() -> None:
    tips = (Tip("summer", "x", "Summer", "b", season="summer"),
            Tip("any", "x", "Any", "b"))
    assert choose_tip(Contact("p@x.test"), tips, frozenset(), NOW).id == "any"


# --- explanations ----------------------------------------------------------------------

def test_explain_says_why_candidates_lost() -> None:
    arts = [art("sent", "Golf league signups", topics=("golf",), source="t1"),
            art("twin", "Golf league signups open", topics=("golf",), source="t2"),
            art("g1", "Putting drills", topics=("golf",), source="tee"),
            art("g2", "Chipping drills", topics=("golf",), source="tee"),
            art("g3", "Driving drills", topics=("golf",), source="tee"),
            art("old", "Golf course aeration", topics=("golf",), source="t3", age=80),
            art("weak", "Notes from the pro shop", "A round on the greens costs the same.",
                source="t4")]
    m = matcher(arts)
    person = Contact("p@x.test", interests=("golf",))
    why = {r.article_id: r.why for r in explain_contact(
        m, person, campaign(sections=SectionSizes(interests=2)), TIPS,
        frozenset({"sent"}), shown=20)}
    assert why["sent"] == "already sent"
    assert why["twin"] == "same story as one already sent"
    assert why["g3"].startswith("source cap") or why["g3"] == "section full"
    assert why["old"].startswith("stale: published 80 days ago")
    assert why["weak"].startswith("below threshold for 'golf'")


def test_plan_explain_on_the_command_line(project, cli) -> None:
    import json
    result = cli("plan", "monthly-sphere", "--json", "--explain", project=project)
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    assert all("rejected" in e for e in doc["emails"])
    whys = {r["why"].split(":")[0] for e in doc["emails"] for r in e["rejected"]}
    assert "source cap" in whys
    text = cli("plan", "monthly-sphere", "--explain", project=project)
    assert "rejected" in text.stdout


# --- cost model ------------------------------------------------------------------------

def test_scoring_grows_with_distinct_interests_not_contacts(monkeypatch) -> None:
    calls = {"n": 0}
    real = Matcher.score

    def counted(self, *args, **kwargs):
        calls["n"] += 1
        return real(self, *args, **kwargs)

    monkeypatch.setattr(Matcher, "score", counted)
    arts = [art(f"a{i}", f"Story {i} about golf and wine", topics=("golf",))
            for i in range(20)]
    people = tuple(Contact(f"p{i}@x.test", interests=("golf", "Wine", "wines"))
                   for i in range(500))
    plan_newsletter(campaign(), people, _inputs(arts), LedgerView(), NOW)
    # "Wine" and "wines" share one scoring pass: two subjects x 20 articles.
    assert calls["n"] == 2 * len(arts)


def test_people_without_history_sharing_neighbourhood_and_interests_share_a_walk(
        monkeypatch) -> None:
    import gc

    from pipeline.matching import walk
    calls = {"n": 0}
    real = walk._article_picks

    def counted(*args, **kwargs):
        calls["n"] += 1
        return real(*args, **kwargs)

    monkeypatch.setattr(walk, "_article_picks", counted)
    arts = [art(f"a{i}", f"Golf story {i}", topics=("golf",)) for i in range(5)]
    people = tuple(Contact(f"p{i}@x.test", neighbourhood="North End", interests=("golf",))
                   for i in range(300))
    history = {"p0@x.test": frozenset({"a1"})}
    plan = plan_newsletter(campaign(), people, _inputs(arts), LedgerView(history=history),
                           NOW)
    assert calls["n"] == 2  # one shared walk, and the one person with a history
    assert {e.picks[:-1] for e in plan.emails[1:]} == {plan.emails[1].picks[:-1]}
    assert {e.picks[-1].tip for e in plan.emails} == set(TIPS)  # tips stay personal
    assert gc.isenabled()  # paused only while planning
