"""Which breakdown of a lead's stored score is shown: only one that adds up to it."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from nurture.scoring.engine import Contribution, ScoreResult
from nurture.scoring.explain import render_stored, stored_score

SCORED_AT = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
NOW = SCORED_AT + timedelta(days=3)


def score(fit: int, engagement: int, grade: str = "A") -> ScoreResult:
    parts = [Contribution("enterprise", "fit", fit, fit), Contribution("inquiry", "engagement", engagement, 40, 1)]
    return ScoreResult(fit, grade, engagement, False, False, parts)


def test_the_stored_score_rebuilt_as_of_when_it_was_made_is_its_breakdown() -> None:
    rebuilt = score(80, 40)
    stored = stored_score(80, 40, "A", SCORED_AT, rebuilt, score(80, 37), NOW)
    assert stored.breakdown is rebuilt and stored.as_made and not stored.note
    assert render_stored(stored) == [
        "stored score, as of 2026-03-02 09:00 UTC: fit 80 (grade A), engagement 40; made of:",
        "  fit        enterprise                 80.00",
        "  engagement inquiry                    40.00",
    ]


def test_a_stored_score_that_no_longer_rebuilds_but_is_the_score_now_is_broken_down_as_of_now() -> None:
    current = score(80, 40)
    stored = stored_score(80, 40, "A", SCORED_AT, score(80, 55), current, NOW)
    assert stored.breakdown is current and stored.as_of == NOW and not stored.as_made
    assert "it comes to fit 80, engagement 55 (grade A)" in stored.note
    assert "the score now is the stored one" in stored.note
    lines = render_stored(stored)
    assert lines[0] == "stored score, as of 2026-03-02 09:00 UTC: fit 80 (grade A), engagement 40"
    assert "made of (as of 2026-03-05 09:00 UTC):" in lines


def test_a_stored_score_that_neither_rebuilds_nor_is_the_score_now_has_no_breakdown_and_says_both() -> None:
    stored = stored_score(80, 40, "A", SCORED_AT, score(80, 55), score(60, 52, "A"), NOW)
    assert stored.breakdown is None and not stored.as_made
    assert stored.note.startswith(
        "score recomputed now: fit 60, engagement 52 (grade A); "
        "stored fit 80, engagement 40 (grade A) at 2026-03-02 09:00 UTC; "
        "the qualify job stores the new score when it next rescores this lead"
    )
    lines = render_stored(stored)
    assert not any("made of" in line for line in lines)
    assert lines[-1] == "  (the breakdown above is the score now)"
