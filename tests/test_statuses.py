"""Statuses are typed (issue #14.3): the store's records hold enum members, whatever text
a backend reads, and the values are the same strings as before (stored data unchanged)."""
from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

from pipeline.models import LedgerStatus, ReferralStatus, SendOutcome
from pipeline.state.store import Store

NOW = dt.datetime(2026, 11, 1, 9, 0, tzinfo=dt.UTC)


def test_the_store_returns_members_not_strings(tmp_path: Path) -> None:
    store = Store.open(tmp_path / "sphere.db")
    try:
        store.start_send("s@1", "monthly", "2026-11", NOW)
        store.begin_delivery("s@1", "a@example.com", "<m1>", "outbox", (), (), (), NOW)
        store.settle_delivery("s@1", "a@example.com", LedgerStatus.SENT, NOW)
        store.finish_send("s@1", NOW, SendOutcome.DONE)
        ref = store.add_referral("a@example.com", "Alex", NOW.date(), NOW)
        store.update_referral(ref, ReferralStatus.MET, NOW)
        (row,) = store.ledger_rows()
        (count,) = store.send_counts()
        (referral,) = store.referrals()
    finally:
        store.close()
    assert type(row.status) is LedgerStatus and row.status is LedgerStatus.SENT
    assert type(count.outcome) is SendOutcome and count.outcome is SendOutcome.DONE
    assert type(referral.status) is ReferralStatus and referral.status is ReferralStatus.MET
    # The same text as ever, in JSON and in output.
    assert json.dumps([row.status, count.outcome, referral.status]) == \
        '["sent", "done", "met"]'
    assert f"{row.status}" == "sent"
