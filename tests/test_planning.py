"""Planning's shape (issue #14): one planner per campaign kind behind one signature, fed by
one read-only view of the ledger; one skip rule; post-plan holds as one ordered list;
typed extras that give templates exactly the variables they had."""
from __future__ import annotations

import datetime as dt
import inspect
import json
import typing
from functools import partial
from pathlib import Path

from pipeline.config import Scheduling, load_config
from pipeline.delivery import dispatch as dispatch_module
from pipeline.models import (
    AlertExtra,
    Article,
    Campaign,
    CampaignKind,
    Contact,
    DripExtra,
    DueKind,
    Plan,
    PlannedEmail,
    ReferralInfo,
    RunSummary,
    Sale,
    SalesExtra,
    SourceKind,
    Tip,
    template_variables,
)
from pipeline.planning.holds import apply_holds, hold_capped, hold_cold, post_plan_holds
from pipeline.planning.inputs import LedgerView, PlanInputs
from pipeline.planning.prepare import PLANNERS, drip_plan
from pipeline.scheduling.calendar import Due
from pipeline.state.store import Store

NOW = dt.datetime(2026, 11, 2, 17, 0, tzinfo=dt.UTC)
TIP = Tip(id="gutters", topic="maintenance", title="Clear the gutters", body="Before rain.")
SALE = Sale("1 Birch Lane", "Maple Heights", 500000, dt.date(2026, 10, 30))
STORY = Article(id="a1", source="garden-news", kind=SourceKind.HOBBY,
                url="https://news.example/1", title="Seed swap at the Grange",
                summary_html="", summary_text="Seeds.", published=NOW - dt.timedelta(hours=2),
                topics=("gardening",))
IN = Contact("in@example.com", first_name="In", neighbourhood="Maple Heights",
             interests=("gardening",))
OUT = Contact("out@example.com", status="unsubscribed")
GONE = Contact("gone@example.com")


def _campaign(kind: CampaignKind) -> Campaign:
    return Campaign(name=f"c-{kind}", kind=kind, audiences=("sphere",),
                    schedule="0 9 1 * *", subject="s", sales_window_days=None,
                    alert_threshold=0.1)


def test_every_campaign_kind_has_one_planner_behind_one_signature() -> None:
    """A new kind is one function and one registry line: every kind is registered, each
    planner takes (campaign, contacts, inputs, ledger, now), and each applies the same
    skip rule before planning anyone."""
    assert set(PLANNERS) == set(CampaignKind)
    names = {tuple(inspect.signature(p).parameters) for p in PLANNERS.values()}
    assert names == {("campaign", "contacts", "inputs", "ledger", "now")}
    inputs = PlanInputs(articles=[STORY], tips=(TIP,), sales=(SALE,),
                        period=dt.datetime(2026, 11, 1, 9, 0, tzinfo=dt.UTC))
    ledger = LedgerView(suppressed=frozenset({"gone@example.com"}),
                        fresh=frozenset({"a1"}))
    for kind, planner in PLANNERS.items():
        plan = planner(_campaign(kind), (IN, OUT, GONE), inputs, ledger, NOW)
        assert plan.send_id == f"c-{kind}@2026-11-01T09:00", kind
        assert [e.contact.email for e in plan.emails] == ["in@example.com"], kind
        reasons = {s.email: s.reason for s in plan.skipped}
        assert reasons == {"out@example.com": "unsubscribed in the audience file",
                           "gone@example.com": "suppressed (unsubscribed, bounced or "
                                               "complained)"}, kind


def test_each_kind_carries_its_own_typed_extra() -> None:
    inputs = PlanInputs(articles=[STORY], tips=(TIP,), sales=(SALE,), period=NOW)
    ledger = LedgerView(fresh=frozenset({"a1"}))
    got = {kind: PLANNERS[kind](_campaign(kind), (IN,), inputs, ledger, NOW).emails[0].extra
           for kind in CampaignKind}
    assert got[CampaignKind.NEWSLETTER] is None
    assert got[CampaignKind.RECENT_SALES] == SalesExtra((SALE,), 1)
    assert got[CampaignKind.INTEREST_ALERT] == AlertExtra("I saw this and thought of you.")


def test_typed_extras_give_templates_the_variables_they_always_had() -> None:
    assert template_variables(None) == {}
    assert template_variables(SalesExtra((SALE,), 1)) == {"sales": (SALE,), "own_sales": 1}
    assert template_variables(AlertExtra("Hi")) == {"intro": "Hi"}
    drip = DripExtra(ReferralInfo(3, "Alex", "met"), years=2)
    assert template_variables(drip) == {"referral": {"id": 3, "name": "Alex",
                                                     "status": "met"}, "years": 2}
    assert template_variables(DripExtra(times=4)) == {"times": 4}
    # A draft stores a drip step's extra as JSON and reads it back the same.
    stored = json.loads(json.dumps(template_variables(drip)))
    assert DripExtra.from_variables(stored) == drip
    assert DripExtra.from_variables({}) is None


def test_drip_steps_skip_by_the_same_rule(project: Path, tmp_path: Path) -> None:
    """The drip's plan once said "unsubscribed, suppressed or no longer in an audience
    file" for all three; it now gives the one rule's reason for each."""
    config = load_config(project)
    store = Store.open(tmp_path / "sphere.db")
    store.suppress("gone@example.com", "bounced", "test", NOW)
    group = [Due(at=NOW, local=NOW, period=NOW, kind=DueKind.DRIP, name="referral-update",
                 template="referral_update", send_id="referral-update/r1/met@x", email=e,
                 extra=DripExtra(ReferralInfo(1, "Alex", "met")))
             for e in ("in@example.com", "out@example.com", "gone@example.com",
                       "left@example.com")]
    everyone = {c.email: c for c in (IN, OUT, GONE)}
    plan = drip_plan(config, store, "referral-update/r1/met@x", group, everyone).plan
    assert [e.contact.email for e in plan.emails] == ["in@example.com"]
    assert plan.emails[0].extra == group[0].extra
    assert [(s.email, s.reason) for s in plan.skipped] == [
        ("out@example.com", "unsubscribed in the audience file"),
        ("gone@example.com", "suppressed (unsubscribed, bounced or complained)"),
        ("left@example.com", "no longer in an audience file")]
    store.close()


def test_post_plan_holds_run_in_order(project: Path, tmp_path: Path) -> None:
    people = tuple(Contact(f"p{i}@example.com") for i in range(3))
    plan = Plan(_campaign(CampaignKind.NEWSLETTER), "s@1", "2026-11-01T09:00:00+00:00",
                tuple(PlannedEmail(c, ()) for c in people))
    rules = Scheduling(cap_max=1, cap_days=30)
    recent = {"p1@example.com": [NOW - dt.timedelta(days=2)]}
    held = apply_holds(plan, [partial(hold_cold, policy="skip", cold={"p0@example.com"}),
                              partial(hold_capped, recent=recent, rules=rules, now=NOW)])
    assert [e.contact.email for e in held.emails] == ["p2@example.com"]
    assert [s.reason.split(":")[0] for s in held.skipped] == ["cold contact",
                                                              "frequency cap"]
    # The sample asks for neither a cold policy nor a cap: a send applies no hold.
    store = Store.open(tmp_path / "sphere.db")
    config = load_config(project)
    campaign = config.campaigns[0]
    expected = (config.cold_policy(campaign.name) != "normal") + bool(
        config.scheduling.cap_max)
    assert len(post_plan_holds(config, store, campaign, NOW)) == expected
    assert len(post_plan_holds(config, store, campaign, NOW, capped=False)) == \
        (config.cold_policy(campaign.name) != "normal")
    store.close()


def test_dispatch_counts_into_the_run_summary_itself() -> None:
    """One type for a send's counters: dispatch returns the RunSummary the runner
    completes (no second class copied field by field)."""
    hints = typing.get_type_hints(dispatch_module.dispatch)
    assert hints["return"] is RunSummary
    assert not hasattr(dispatch_module, "Dispatched")


def test_a_drip_preview_skips_by_the_send_s_rule(project: Path, tmp_path: Path) -> None:
    """`sphere preview <drip>` once previewed a suppressed person (and said only
    "unsubscribed" of others): it now leaves out whom the send would, saying why."""
    from pipeline.rendering.preview import drip_plans, find_drip

    config = load_config(project)
    store = Store.open(tmp_path / "sphere.db")
    drip = next(d for d in config.drips if d.anchor != "referral_received")
    first = drip_plans(config, store, drip, 1, NOW)[0][2]
    person = first.emails[0].contact.email
    store.suppress(person, "complained", "test", NOW)
    again = drip_plans(config, store, find_drip(config, drip.name) or drip, 1, NOW)[0][2]
    assert person not in {e.contact.email for e in again.emails}
    assert {s.email: s.reason for s in again.skipped}[person] == \
        "suppressed (unsubscribed, bounced or complained)"
    assert len(again.emails) == len(first.emails) - 1
    store.close()


def test_plan_json_explain_works_for_every_kind(project: Path, cli) -> None:
    """`plan --json --explain` of a recent-sales mailer raised KeyError: only the
    newsletter's planner says how interests were read."""
    cli("ingest", project=project)
    for name in ("recent-sales", "monthly-sphere"):
        result = cli("plan", name, "--json", "--explain", "--no-ingest", project=project)
        assert result.exit_code == 0, result.output
        doc = json.loads(result.stdout)
        assert doc["emails"] and all("interests" in e for e in doc["emails"])
        if name == "recent-sales":
            assert all(e["interests"] == [] for e in doc["emails"])
        else:
            assert any(e["interests"] for e in doc["emails"])
