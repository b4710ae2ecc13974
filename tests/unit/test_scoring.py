"""Scoring: fit rules and grades, engagement with caps and decay, machine activity, the hot matrix."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from nurture.errors import ValidationFailed
from nurture.scenario.expr import EventRecord
from nurture.scoring.engine import CompiledScoring
from nurture.scoring.loader import load_scoring

ROOT = Path(__file__).resolve().parents[2]
NOW = datetime(2026, 3, 20, 12, tzinfo=UTC)


@pytest.fixture(scope="module")
def scoring() -> CompiledScoring:
    return load_scoring(ROOT / "scenarios" / "scoring.yaml")


GOOD_FIT = {
    "company_size": 1500,
    "industry": "Manufacturing",
    "job_title": "Head of Operations",
    "country": "DE",
}
POOR_FIT = {"company_size": 8, "industry": "Retail", "job_title": "Student", "country": "BR"}


def event(type_: str, at: datetime, **props: Any) -> EventRecord:
    return EventRecord(type_, at, props)


def test_fit_rules_add_up_to_a_grade(scoring: CompiledScoring) -> None:
    points, grade, parts = scoring.fit(GOOD_FIT)
    assert (points, grade) == (80, "A")
    assert {p.rule for p in parts} == {"enterprise", "target_industry", "decision_maker", "served_country"}
    assert scoring.fit(POOR_FIT)[:2] == (0, "D")
    assert scoring.fit({"company_size": 300, "industry": "SaaS", "country": "US"})[:2] == (25, "C")


def test_each_rule_type_scores_its_events(scoring: CompiledScoring) -> None:
    at = NOW - timedelta(minutes=1)
    cases = {
        "pricing_page": event("page_view", at, url="https://x.example/pricing"),
        "page_view": event("page_view", at, url="https://x.example/blog"),
        "email_click": event("click", at, link="case-study"),
        "email_open": event("open", at),
        "whitepaper": event("download", at),
        "webinar_attended": event("webinar_attended", at),
        "inquiry": event("inquiry", at),
    }
    for rule, item in cases.items():
        _, parts, _ = scoring.engagement([item], NOW)
        assert [p.rule for p in parts] == [rule]


def test_daily_and_total_caps_limit_one_persons_browsing(scoring: CompiledScoring) -> None:
    views = [
        event("page_view", NOW - timedelta(days=d, minutes=m), url="https://x.example/pricing")
        for d in range(5)
        for m in range(10)
    ]
    points, parts, _ = scoring.engagement(views, NOW)
    pricing = next(p for p in parts if p.rule == "pricing_page")
    assert pricing.raw == 30  # 10 a day, 30 in all, from 50 views
    assert pricing.events == 50
    assert "points over caps" in pricing.note
    assert points < 30


def test_engagement_halves_every_half_life(scoring: CompiledScoring) -> None:
    fresh, _, _ = scoring.engagement([event("inquiry", NOW)], NOW)
    month_old, _, _ = scoring.engagement([event("inquiry", NOW - timedelta(days=30))], NOW)
    assert fresh == pytest.approx(40)
    assert month_old == pytest.approx(20)
    too_old, _, _ = scoring.engagement([event("inquiry", NOW - timedelta(days=200))], NOW)
    assert too_old == 0


def test_machine_activity_is_discounted(scoring: CompiledScoring) -> None:
    sent = NOW - timedelta(hours=1)
    events = [
        event("click", sent + timedelta(seconds=2), link="a", send=1, sent_at=sent),  # too fast
        event("click", sent + timedelta(minutes=5), link="a", send=2),
        event("click", sent + timedelta(minutes=5, seconds=1), link="b", send=2),
        event("click", sent + timedelta(minutes=5, seconds=2), link="c", send=2),  # all links at once
        event("click", sent + timedelta(minutes=9), link="d", user_agent="Mozilla/5.0 (compatible; Barracuda)"),
        event("open", sent + timedelta(minutes=1), proxy=True),
        event("click", sent + timedelta(minutes=30), link="case-study", send=3, sent_at=sent),  # a person
    ]
    _points, parts, discounted = scoring.engagement(events, NOW)
    reasons = [d.reason for d in discounted]
    assert reasons[0] == "clicked 2s after delivery"
    assert reasons.count("3 links clicked within 5s") == 3
    assert any("scanner user agent" in r for r in reasons)
    assert "opened by a privacy proxy" in reasons
    assert [(p.rule, p.events) for p in parts] == [("email_click", 1)]


def test_hot_needs_fit_and_engagement(scoring: CompiledScoring) -> None:
    busy = [event("inquiry", NOW - timedelta(hours=1)), event("webinar_attended", NOW - timedelta(days=1))]
    good = scoring.evaluate(GOOD_FIT, busy, NOW)
    assert good.grade == "A" and good.hot and good.engagement >= 40
    poor = scoring.evaluate(POOR_FIT, busy, NOW)
    assert poor.grade == "D" and not poor.hot and poor.warm
    assert poor.missing[0].startswith("fit grade D can never be hot: needs 40 more fit points for grade B")
    quiet = scoring.evaluate(GOOD_FIT, [event("click", NOW, link="x")], NOW)
    assert not quiet.hot
    assert quiet.missing == [
        "needs 35 more engagement points (grade A needs 40)",
        "needs 15 more of its own engagement points (hot needs 20 of the lead's own, whatever its account gives)",
    ]


def test_colleagues_engagement_counts_toward_the_account_up_to_its_cap(scoring: CompiledScoring) -> None:
    mine = [
        event("click", NOW - timedelta(hours=2), link="x"),
        event("webinar_registered", NOW - timedelta(hours=2)),
        event("download", NOW - timedelta(hours=2)),
        event("download", NOW - timedelta(hours=3)),
    ]
    colleagues = [
        event("inquiry", NOW - timedelta(hours=1)),
        event("webinar_attended", NOW - timedelta(hours=3)),
    ]
    alone = scoring.evaluate(GOOD_FIT, mine, NOW)
    together = scoring.evaluate(GOOD_FIT, mine, NOW, colleague_events=colleagues)
    assert together.engagement == alone.engagement + 10  # half of ~60 is 30, capped at 10
    assert together.account is not None and together.account.capped
    assert {p.kind for p in together.contributions} == {"fit", "engagement", "account"}
    assert together.hot and not alone.hot


def test_recycled_lead_starts_engagement_afresh(scoring: CompiledScoring) -> None:
    busy = [event("inquiry", NOW - timedelta(days=2))]
    assert scoring.evaluate(GOOD_FIT, busy, NOW, engagement_since=NOW - timedelta(days=1)).engagement == 0


def test_scoring_file_errors_name_the_line(tmp_path: Path) -> None:
    path = tmp_path / "scoring.yaml"
    path.write_text(
        "scoring:\n  fit:\n    - {name: big, when: 'lead.company_sise > 5', points: 5}\n"
        "  engagement:\n    - {name: c, event: clik, points: 1}\n  hot: {engagement: {A: 10}}\n"
        "  routing: {owners: [{name: A, email: a@x.example}]}\n  half_lfe: 3d\n"
    )
    with pytest.raises(ValidationFailed) as caught:
        load_scoring(path)
    assert [str(d).replace(str(path), "F") for d in caught.value.diagnostics] == [
        "F:8: unknown key 'half_lfe' — did you mean 'half_life'?"
    ]
    path.write_text(path.read_text().replace("  half_lfe: 3d\n", ""))
    with pytest.raises(ValidationFailed) as caught:
        load_scoring(path)
    messages = [str(d).replace(str(path), "F") for d in caught.value.diagnostics]
    assert any(m.startswith("F:3: fit rule 'big' uses lead.company_sise") and "'company_size'" in m for m in messages)
    assert "F:5: engagement rule 'c' scores unknown event 'clik' — did you mean 'click'?" in messages
