"""Matching on a third evaluation set (tests/eval3/, issue 16), written from scratch before
any tuning against it: interests typed as agents type them (phrases, typos, "hockey dad"),
untagged multi-topic hobby feeds, figurative traps and misleading senses. Its parts and
what was measured when are in tests/eval3/README.md; the measures are those of
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

EVAL = Path(__file__).parent / "eval3"
PARTS = ("tune", "heldout", "heldout2", "heldout3", "heldout4")
HELD_OUT = "heldout4"
# What the last held-out part measured once, at the end (see README.md): precision@3
# 0.892, hobby recall 0.691, 3 contacts given filler although a relevant story existed, 0
# wrong-section. It was then tuned on (with every other eval3 part and eval2, while
# tests/eval5 stayed unseen): 1.000, 0.927, 0, 0. Those are tuning figures, not held-out
# ones (the held-out figures are eval5's); the floors keep the issue's goals on this part
# as a guard against losing what the tuning reached.
FLOORS = {"precision@3": GOALS["precision@3"], "recall": GOALS["recall"], "filler": 0}


@pytest.fixture(scope="module")
def held_out() -> Part:
    """The part not tuned on."""
    return load_part(HELD_OUT, EVAL)


def test_the_set_is_big_and_hard_enough() -> None:
    parts = [load_part(p, EVAL) for p in PARTS]
    assert_big_and_hard(parts)
    # Most hobby stories come from feeds that declare no topics.
    hobby = [a for p in parts for a in p.articles if a.kind == "hobby"]
    tagged = {s for p in parts for s, spec in p.sources.items() if spec.get("topics")}
    assert len([a for a in hobby if a.source not in tagged]) > 0.75 * len(hobby)


def test_goals_on_the_held_out_part(held_out: Part) -> None:
    m = evaluate(held_out)
    print(f"\ngoals: interests precision@3 >= {GOALS['precision@3']}, hobby recall >= "
          f"{GOALS['recall']}, 0 filler despite relevant, 0 wrong-section")
    print(report("eval3 held-out", m))
    for p in PARTS:
        if p != HELD_OUT:
            print(report(f"eval3 {p} (tuned on)", evaluate(load_part(p, EVAL))))
    assert m["precision@3"] >= FLOORS["precision@3"], m["wrong_picks"]
    assert m["recall"] >= FLOORS["recall"]
    assert len(m["filler_despite_relevant"]) <= FLOORS["filler"], m["filler_despite_relevant"]
    assert m["wrong_section"] == []


def test_goals_on_the_held_out_part_through_sphere_plan_json(
        held_out: Part, tmp_path: Path, cli, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SPHERE_NOW", held_out.now.isoformat())
    part = dataclasses.replace(held_out, history={c.email: frozenset()
                                                  for c in held_out.contacts})
    picks = cli_picks(part, write_project(part, tmp_path / "a", part.campaign), cli)
    wide = cli_picks(part, write_project(part, tmp_path / "b", roomy(part.campaign)), cli)
    m = measure(part, picks, wide)
    print("\n" + report("eval3 held-out via sphere plan --json", m))
    assert m["precision@3"] >= FLOORS["precision@3"], m["wrong_picks"]
    assert m["recall"] >= FLOORS["recall"]
    assert len(m["filler_despite_relevant"]) <= FLOORS["filler"], m["filler_despite_relevant"]
    assert m["wrong_section"] == []
