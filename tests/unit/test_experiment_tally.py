"""Per-arm counts from assignments, and the conversion chart drawn from them."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from datetime import UTC, datetime, timedelta

from nurture.experiments.chart import conversion_chart
from nurture.experiments.plan import ArmTally, Plan
from nurture.experiments.tally import Assignment, history, pending, tally

T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
WEEK = timedelta(days=7)


def test_a_lead_counts_once_its_window_has_closed_and_routed_leads_never_count() -> None:
    assignments = [
        Assignment("a", T0, reached_at=T0 + timedelta(days=1)),  # success, window closes day 7
        Assignment("a", T0),  # failure, known on day 7
        Assignment("b", T0, reached_at=T0 + timedelta(days=9)),  # reached too late: failure
        Assignment("b", T0 + timedelta(days=5), reached_at=T0 + timedelta(days=6)),  # window open until day 12
        Assignment("b", T0, randomised=False, reached_at=T0),  # routed after a decision
    ]
    assert tally(["a", "b"], frozenset(), assignments, WEEK, T0 + timedelta(days=3)) == [
        ArmTally("a", 0, 0),
        ArmTally("b", 0, 0),
    ]
    assert tally(["a", "b"], frozenset({"b"}), assignments, WEEK, T0 + timedelta(days=8)) == [
        ArmTally("a", 2, 1),
        ArmTally("b", 1, 0, holdout=True),
    ]
    assert pending(assignments, WEEK, T0 + timedelta(days=8)) == 1
    assert tally(["a", "b"], frozenset(), assignments, WEEK, T0 + timedelta(days=12))[1] == ArmTally("b", 2, 1)


def test_the_chart_draws_a_line_and_a_band_per_arm_and_marks_the_decision() -> None:
    assignments = [
        Assignment(
            arm,
            T0 + timedelta(hours=i),
            reached_at=T0 + timedelta(hours=i + 1) if i % (3 if arm == "a" else 2) == 0 else None,
        )
        for i in range(200)
        for arm in ("a", "b")
    ]
    looks = history(["a", "b"], assignments, WEEK, T0 + timedelta(days=20), points=10)
    assert {look.arm for look in looks} == {"a", "b"}
    last_b = [look for look in looks if look.arm == "b"][-1]
    assert (last_b.assigned, last_b.converted) == (200, 100)
    svg = conversion_chart(Plan(), ["a", "b"], looks, title="subject test", decided_at=T0 + timedelta(days=15))
    root = ET.fromstring(svg)
    ns = "{http://www.w3.org/2000/svg}"
    assert len(root.findall(f"{ns}polyline")) == 2
    assert len(root.findall(f"{ns}polygon")) == 2
    texts = [t.text for t in root.iter(f"{ns}text")]
    assert "b 50.0%" in texts and "decided" in texts
