"""Account roll-up: colleagues' engagement is a separate, capped part; an account is hot as an account."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from nurture.scenario.expr import EventRecord
from nurture.scoring.engine import CompiledScoring, account_handoff
from nurture.scoring.explain import explain, explain_account, render
from nurture.scoring.loader import load_scoring

ROOT = Path(__file__).resolve().parents[2]
NOW = datetime(2026, 3, 20, 12, tzinfo=UTC)
GRADE_A = {"company_size": 1500, "industry": "Manufacturing", "job_title": "Head of Operations", "country": "DE"}


@pytest.fixture(scope="module")
def scoring() -> CompiledScoring:
    return load_scoring(ROOT / "scenarios" / "scoring.yaml")


def event(type_: str, hours_ago: float, **props: Any) -> EventRecord:
    return EventRecord(type_, NOW - timedelta(hours=hours_ago), props)


def very_active() -> list[EventRecord]:
    """Everything one keen person can do in a week: pricing every day, webinars, papers, an inquiry."""
    events = [
        event("page_view", d * 24 + m / 60, url="https://acme.example/pricing") for d in range(7) for m in range(20)
    ]
    events += [event("click", d * 24 + 1, link=f"l{d}", send=d) for d in range(7)]
    events += [event("download", 30), event("download", 50), event("webinar_registered", 70)]
    events += [event("webinar_attended", 20), event("inquiry", 2), event("form_fill", 3), event("reply", 4)]
    return events


def test_one_very_active_person_at_a_10000_lead_account_makes_no_colleague_hot(scoring: CompiledScoring) -> None:
    members = [(0, "keen@bigco.example", very_active(), None)]
    members += [(i, f"person{i}@bigco.example", [], None) for i in range(1, 10_000)]
    aggregate = scoring.account_aggregate("bigco", members, NOW)
    assert aggregate.size == 10_000 and len(aggregate.members) == 1
    keen = scoring.evaluate(GRADE_A, very_active(), NOW, account=aggregate, member=0)
    assert keen.hot  # the person who did it all is hot on their own
    hot_colleagues = 0
    for lead in range(1, 10_000):
        result = scoring.evaluate(GRADE_A, [], NOW, account=aggregate, member=lead)
        assert result.account is not None and result.account.points <= 10  # the account's own cap
        hot_colleagues += result.hot
    assert hot_colleagues == 0
    assert not aggregate.hot  # one person is not an engaged account
    assert account_handoff(aggregate, was_hot=False) is None


def test_a_colleague_gets_at_most_the_accounts_cap_and_needs_engagement_of_its_own(scoring: CompiledScoring) -> None:
    aggregate = scoring.account_aggregate(
        "acme", [(1, "a@acme.example", very_active(), None), (2, "b@acme.example", very_active(), None)], NOW
    )
    mine = [event("click", 5, link="case-study", send=9), event("download", 6)]
    result = scoring.evaluate(GRADE_A, mine, NOW, account=aggregate, member=3)
    assert result.own == 15 and result.account is not None
    assert result.account.points == 10 and result.account.uncapped == pytest.approx(30)  # 2 × 30 × 0.5
    assert result.engagement == 25 and not result.hot
    assert any("own engagement" in m for m in result.missing)


def test_the_lead_itself_is_not_counted_as_its_own_colleague(scoring: CompiledScoring) -> None:
    aggregate = scoring.account_aggregate("solo", [(1, "only@solo.example", very_active(), None)], NOW)
    result = scoring.evaluate(GRADE_A, very_active(), NOW, account=aggregate, member=1)
    assert result.account is not None and result.account.points == 0
    assert result.engagement == result.own


def test_explain_shows_the_account_part_and_the_colleagues_who_gave_it(scoring: CompiledScoring) -> None:
    members = [
        (i, f"p{i}@acme.example", [event("download", i + 1), event("webinar_attended", 3)], None) for i in range(8)
    ]
    aggregate = scoring.account_aggregate("acme", members, NOW)
    result = scoring.evaluate(GRADE_A, [event("click", 1, link="x", send=1)], NOW, account=aggregate, member=99)
    explanation = explain(scoring, result, "new@acme.example")
    assert explanation.account is not None
    assert explanation.account.cap == 10 and explanation.account.points == 10
    assert len(explanation.account.colleagues) == 5 and explanation.account.more == 3
    text = "\n".join(render(explanation))
    assert "account acme: 10.00 (0.5 × colleagues' engagement" in text and "capped at 10" in text
    assert "p0@acme.example" in text and "… and 3 more colleague(s)" in text
    assert "= own 5 + account 10" in text


def test_an_account_with_several_engaged_people_is_hot_as_an_account(scoring: CompiledScoring) -> None:
    people = [
        (1, "cfo@acme.example", [event("inquiry", 2)], None),
        (2, "ops@acme.example", [event("webinar_attended", 5), event("download", 6)], None),
        (3, "it@acme.example", [event("download", 8), event("click", 9, link="x", send=4)], None),
        (4, "intern@acme.example", [], None),
    ]
    aggregate = scoring.account_aggregate("acme", people, NOW)
    assert aggregate.hot
    assert [m.label for m in aggregate.engaged] == ["cfo@acme.example", "ops@acme.example"]
    assert aggregate.members[0].counted == 30  # person_cap: one person adds at most 30
    handoff = account_handoff(aggregate, was_hot=False)
    assert handoff is not None and handoff.account == "acme"
    assert [p.label for p in handoff.people] == ["cfo@acme.example", "ops@acme.example"]
    assert account_handoff(aggregate, was_hot=True) is None  # one hand-off, not one per run
    lines = explain_account(aggregate)
    assert lines[0].startswith("account acme: engagement ") and "hot" in lines[0]
    cold = scoring.account_aggregate("acme", people[:1], NOW)
    assert not cold.hot and "more engaged people" in cold.missing


def test_an_aggregate_can_be_built_from_engagement_already_computed(scoring: CompiledScoring) -> None:
    from_events = scoring.account_aggregate("acme", [(1, "a", very_active(), None), (2, "b", [], None)], NOW)
    precomputed = scoring.aggregate_of("acme", [(1, "a", scoring.own_engagement(very_active(), NOW)), (2, "b", 0.0)])
    assert from_events == precomputed


events_strategy = st.lists(
    st.builds(
        lambda t, h, link: EventRecord(t, NOW - timedelta(hours=h), {"link": link, "send": 1}),
        st.sampled_from(["click", "page_view", "download", "inquiry", "webinar_attended", "form_fill", "open"]),
        st.floats(min_value=0.1, max_value=24 * 90),
        st.sampled_from(["a", "b", "c"]),
    ),
    max_size=20,
)


@settings(max_examples=60, deadline=None)
@given(colleagues=st.lists(events_strategy, max_size=6), mine=events_strategy)
def test_property_the_account_part_never_exceeds_its_cap(
    scoring: CompiledScoring, colleagues: list[list[EventRecord]], mine: list[EventRecord]
) -> None:
    members = [(i, f"c{i}", evs, None) for i, evs in enumerate(colleagues)]
    aggregate = scoring.account_aggregate("acct", members, NOW)
    result = scoring.evaluate(GRADE_A, mine, NOW, account=aggregate, member="me")
    alone = scoring.evaluate(GRADE_A, mine, NOW)
    assert result.account is not None and 0 <= result.account.points <= 10
    assert alone.engagement <= result.engagement <= alone.engagement + 10 + 1  # rounding


@settings(max_examples=60, deadline=None)
@given(colleagues=st.lists(events_strategy, max_size=6))
def test_property_colleagues_alone_never_make_a_lead_hot(
    scoring: CompiledScoring, colleagues: list[list[EventRecord]]
) -> None:
    aggregate = scoring.account_aggregate("acct", [(i, f"c{i}", e, None) for i, e in enumerate(colleagues)], NOW)
    result = scoring.evaluate(GRADE_A, [], NOW, account=aggregate, member="me")
    assert not result.hot and result.own == 0


def test_accounts_group_by_company_or_by_domain_but_never_by_free_mail(
    scoring: CompiledScoring, tmp_path: Path
) -> None:
    assert scoring.account_of(" Nordwerk GmbH ", "ada@nordwerk.example") == "nordwerk gmbh"
    assert scoring.account_of(None, "ada@nordwerk.example") is None
    text = (ROOT / "scenarios" / "scoring.yaml").read_text().replace("    by: company", "    by: email_domain")
    (tmp_path / "scoring.yaml").write_text(text)
    by_domain = load_scoring(tmp_path / "scoring.yaml")
    assert by_domain.account_of(None, "ada@Nordwerk.example") == "nordwerk.example"
    assert by_domain.account_of("Nordwerk", "ada.private@gmail.com") is None
