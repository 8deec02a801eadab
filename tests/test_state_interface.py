"""The storage interface (issue #14): the SQLite store implements every operation of the
`Ledger` protocol with the same signature, the protocol lists every operation the store
offers, the store hands back named records (never positional rows), and nothing outside
pipeline/state reaches SQLite: no `import sqlite3`, no SQLite store class, no connection."""
from __future__ import annotations

import ast
import dataclasses
import datetime as dt
import inspect
import re
from pathlib import Path

from pipeline.models import Article
from pipeline.state.interface import Ledger
from pipeline.state.store import Store

PACKAGE = Path(__file__).resolve().parent.parent / "pipeline"
STATE = PACKAGE / "state"
NOW = dt.datetime(2026, 12, 1, 9, 0, tzinfo=dt.UTC)
# SQLite's own: how a SQLite file is opened and written, not what the rest may ask.
SQLITE_ONLY = {"open", "transaction", "conn"}


def _operations(cls: type) -> dict[str, inspect.Signature]:
    """Public methods of a class (or protocol) and their signatures."""
    return {name: inspect.signature(member) for name, member in inspect.getmembers(cls)
            if not name.startswith("_") and callable(member) and name not in SQLITE_ONLY}


def interface_gaps(implementation: type, protocol: type) -> list[str]:
    """What `implementation` lacks of `protocol`, or offers with another signature."""
    have = _operations(implementation)
    gaps = []
    for name, wanted in _operations(protocol).items():
        if name not in have:
            gaps.append(f"{name}: missing")
        elif str(have[name]) != str(wanted):
            gaps.append(f"{name}: {have[name]} is not {wanted}")
    return gaps


def test_the_sqlite_store_implements_every_operation_with_its_signature() -> None:
    assert interface_gaps(Store, Ledger) == []


def test_the_interface_lists_every_operation_the_store_offers() -> None:
    # Otherwise a caller would need the SQLite class for it, and a second backend
    # would not know it must provide it.
    assert sorted(set(_operations(Store)) - set(_operations(Ledger))) == []


def test_a_gap_in_an_implementation_is_found() -> None:
    class Partial:
        def close(self) -> None:
            """Close."""

        def meta(self, name: str) -> str | None:
            """Renamed parameter."""
            return None

    gaps = interface_gaps(Partial, Ledger)
    assert "backup: missing" in gaps
    assert any(g.startswith("meta: ") and "missing" not in g for g in gaps)
    assert not any(g.startswith("close") for g in gaps)


def test_the_postgresql_store_implements_every_operation_with_its_signature() -> None:
    from pipeline.state.pgstore import PgStore
    assert interface_gaps(PgStore, Ledger) == []


def test_an_opened_store_is_a_ledger(open_ledger) -> None:
    assert isinstance(open_ledger(), Ledger)
    assert not isinstance(object(), Ledger)


def test_no_operation_returns_positional_rows() -> None:
    # A list of tuples is rows callers would index by position (a tuple as a dict's
    # key is a key, not a row).
    rows = re.compile(r"^(list|tuple|Sequence|Iterable|Iterator)\[tuple\b")
    bad = {name: sig.return_annotation for name, sig in _operations(Ledger).items()
           if rows.match(str(sig.return_annotation))}
    assert bad == {}


def _records(value: object) -> list[object]:
    return list(value.values()) if isinstance(value, dict) else list(value)  # type: ignore[call-overload]


def test_the_store_returns_named_records(open_ledger) -> None:
    store = open_ledger()
    try:
        store.upsert_articles([Article(id="a1", source="news", kind="rss",
                                       url="https://example.com/1", title="Market cools",
                                       summary_html="", summary_text="", published=NOW)], NOW)
        store.start_send("m@1", "monthly", "December", NOW)
        store.add_referral("Zoe@Example.com", "Sam", NOW.date(), NOW)
        store.queue_alerts("alerts", [("zoe@example.com", "a1", 0.9, "market")], NOW)
        store.add_note("zoe@example.com", "Thanks!", NOW)
        listings = {"send_counts": store.send_counts(), "send_rows": store.send_rows(),
                    "referrals": store.referrals(), "alerts": store.alerts(),
                    "recent_articles": store.recent_articles(NOW - dt.timedelta(days=1)),
                    "notes": store.notes()}
        for name, rows in listings.items():
            assert len(rows) == 1, name
            assert dataclasses.is_dataclass(rows[0]) and not isinstance(rows[0], tuple), name
        assert store.send_counts()[0].outcome is None and store.send_counts()[0].sent == 0
        referral = store.referrals()[0]
        assert (referral.by_email, referral.received, referral.recorded) == \
            ("zoe@example.com", NOW.date(), NOW)
        alert = store.alerts()[0]
        assert (alert.campaign, alert.article_id, alert.status, alert.created) == \
            ("alerts", "a1", "pending", NOW)
        assert store.recent_articles(NOW - dt.timedelta(days=1))[0].cluster is not None
    finally:
        store.close()


def _outside_state() -> list[Path]:
    return [p for p in sorted(PACKAGE.rglob("*.py")) if STATE not in p.parents]


def sqlite_reach(source: str) -> list[str]:
    """Where a module reaches SQLite itself: imports of sqlite3 or of the SQLite store
    class, and uses of a store's connection or SQL transaction."""
    found = []
    for node in ast.walk(ast.parse(source)):
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            names = [node.module or ""]
        found += [f"{node.lineno}: imports {n}" for n in names
                  if n.split(".")[0] == "sqlite3" or n == "pipeline.state.store"]
        if isinstance(node, ast.Attribute) and node.attr in ("conn", "transaction"):
            owner = node.value
            name = owner.id if isinstance(owner, ast.Name) else \
                owner.attr if isinstance(owner, ast.Attribute) else ""
            if name == "store":
                found.append(f"{node.lineno}: store.{node.attr}")
    return found


def test_nothing_outside_the_state_package_reaches_sqlite() -> None:
    reach = {str(p.relative_to(PACKAGE.parent)): found for p in _outside_state()
             if (found := sqlite_reach(p.read_text(encoding="utf-8")))}
    assert reach == {}


def test_reaching_sqlite_is_found() -> None:
    assert sqlite_reach("import sqlite3\n") == ["1: imports sqlite3"]
    assert sqlite_reach("from sqlite3 import connect\n") == ["1: imports sqlite3"]
    assert sqlite_reach("from pipeline.state.store import Store\n") == \
        ["1: imports pipeline.state.store"]
    assert sqlite_reach("def f(store):\n    store.conn.execute('x')\n") == ["2: store.conn"]
    assert sqlite_reach("with self.store.transaction():\n    pass\n") == \
        ["1: store.transaction"]
    assert sqlite_reach("from pipeline.state.interface import Ledger\n") == []


def test_one_email_key_for_address_identity() -> None:
    # The rule lives in pipeline/addresses.py; no module defines its own.
    defined = [str(p.relative_to(PACKAGE.parent)) for p in sorted(PACKAGE.rglob("*.py"))
               for node in ast.walk(ast.parse(p.read_text(encoding="utf-8")))
               if isinstance(node, ast.FunctionDef) and node.name == "email_key"]
    assert defined == ["pipeline/addresses.py"]


LOWERED_ADDRESS = re.compile(
    r"\w*email\w*(?:[\"']\])?(?:\[[^\]]*\])?(?:\.strip\(\))?\.(?:lower|casefold)\(\)")


def lowered_addresses(source: str) -> list[int]:
    """Lines that fold an address by hand instead of calling email_key."""
    return [n for n, line in enumerate(source.splitlines(), 1)
            if LOWERED_ADDRESS.search(line) and "startswith(\"mailto:\")" not in line]


def test_addresses_are_folded_only_by_email_key() -> None:
    found = {str(p.relative_to(PACKAGE.parent)): lines for p in sorted(PACKAGE.rglob("*.py"))
             if p.name != "addresses.py"
             and (lines := lowered_addresses(p.read_text(encoding="utf-8")))}
    assert found == {}


def test_folding_an_address_by_hand_is_found() -> None:
    assert lowered_addresses("key = contact.email.lower()\n") == [1]
    assert lowered_addresses("x = 1\nk = item[\"email\"].strip().lower()\n") == [2]
    assert lowered_addresses("k = by_email.casefold()\n") == [1]
    assert lowered_addresses("k = email_key(contact.email)\n") == []
