"""Matching on a fifth evaluation set (tests/eval5/, issue 16), written from scratch and
committed before any tuning against it ("eval5: fresh held-out set, written before
tuning"): interests typed as agents type them, untagged multi-topic hobby feeds,
figurative traps, misleading senses, mixed market stories. It was measured twice: once
with the matcher as it stood (the baseline) and once after tuning on eval3, eval2 and the
first set only; see tests/eval5/README.md. The measures are those of
tests/test_match_eval2.py, in process and through `sphere plan --json`.
"""
from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
from test_match_eval2 import (
    GOALS,
    Part,
    assert_big_and_hard,
    cli_picks,
    evaluate,
    load_part,
    measure,
    report,
    roomy,
    write_project,
)

EVAL = Path(__file__).parent / "eval5"
# Measured at the end (README.md): interests precision@3 0.928, hobby recall 0.865, 3
# contacts given filler although a relevant story existed, 0 wrong-section (baseline
# before tuning: 0.890, 0.773, 3, 0; one intermediate look after the first round: 0.936,
# 0.858, 3, 0). The recall and wrong-section goals of issue 16 hold; the precision
# (>= 0.95) and filler (0) goals do NOT, and the floors keep what was reached.
FLOORS = {"precision@3": 0.92, "recall": GOALS["recall"], "filler": 3}


@pytest.fixture(scope="module")
def held_out() -> Part:
    """The part never tuned on."""
    return load_part("heldout", EVAL)


def test_the_set_is_big_and_hard_enough(held_out: Part) -> None:
    assert_big_and_hard([held_out])
    hobby = [a for a in held_out.articles if a.kind == "hobby"]
    tagged = {s for s, spec in held_out.sources.items() if spec.get("topics")}
    assert len([a for a in hobby if a.source not in tagged]) > 0.9 * len(hobby)
    # Interests typed as people type them: most are phrases or misspellings, not a topic.
    typed = {i for c in held_out.contacts for i in c.interests}
    assert len([i for i in typed if " " in i]) > len(typed) / 2


def assert_floors(m: dict) -> None:
    """The figures reached on the held-out set hold."""
    assert m["precision@3"] >= FLOORS["precision@3"], m["wrong_picks"]
    assert m["recall"] >= FLOORS["recall"]
    assert len(m["filler_despite_relevant"]) <= FLOORS["filler"], m["filler_despite_relevant"]
    assert m["wrong_section"] == []


def test_goals_on_the_held_out_set(held_out: Part) -> None:
    m = evaluate(held_out)
    print(f"\ngoals: interests precision@3 >= {GOALS['precision@3']}, hobby recall >= "
          f"{GOALS['recall']}, 0 filler despite relevant, 0 wrong-section")
    print(report("eval5 held-out", m))
    assert_floors(m)


def test_goals_on_the_held_out_set_through_sphere_plan_json(
        held_out: Part, tmp_path: Path, cli, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SPHERE_NOW", held_out.now.isoformat())
    # No history in a fresh project: the one contact with a history has none here.
    part = dataclasses.replace(held_out, history={c.email: frozenset()
                                                  for c in held_out.contacts})
    picks = cli_picks(part, write_project(part, tmp_path / "a", part.campaign), cli)
    wide = cli_picks(part, write_project(part, tmp_path / "b", roomy(part.campaign)), cli)
    m = measure(part, picks, wide)
    print("\n" + report("eval5 held-out via sphere plan --json", m))
    assert_floors(m)
