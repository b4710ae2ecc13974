"""The qualify job scores most leads for their numbers only (`explain=False`) and keeps fit
per combination of the fields its rules read. Both must give exactly what the whole
explained verdict gives: random accounts of random events under random scoring files
(the strategies of the replay's property test), random lead fields, adjustments."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from nurture.analytics.history import History
from nurture.scoring.engine import CompiledScoring
from nurture.scoring.model import Scoring
from tests.unit.test_engagement_replay import MACHINES, START, accounts, scorings

field_values = st.fixed_dictionaries(
    {},
    optional={
        "company_size": st.sampled_from([None, 5, 250, 1000, 1000.0, True, "1000"]),
        "industry": st.sampled_from([None, "Manufacturing", "Retail", ""]),
        "job_title": st.sampled_from([None, "Head of IT", "CTO", "Engineer", "部長"]),
        "country": st.sampled_from([None, "US", "JP", "BR"]),
        "tags": st.sampled_from([["a"], [], {"k": 1}]),  # not a key: scored without the cache
    },
)


def verdict(result: Any) -> tuple[Any, ...]:
    return (result.fit, result.grade, result.engagement, result.own, result.hot, result.warm)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(
    scoring=scorings,
    history=accounts(),
    fields=field_values,
    adjustment=st.sampled_from([0, 0, 5, -3]),
    hours=st.sampled_from([0, 1, 30, 24 * 7, 24 * 200]),
)
def test_the_numbers_alone_are_the_explained_verdicts(
    scoring: CompiledScoring, history: History, fields: dict[str, Any], adjustment: int, hours: int
) -> None:
    now = START + timedelta(days=3, hours=hours)
    members = [(lead.id, lead.email, lead.events, None) for lead in history.leads.values()]
    aggregate = scoring.account_aggregate("acme", members, now)
    for lead in history.leads.values():
        since = lead.events[0].at if lead.events and hours % 2 else None
        whole = scoring.evaluate(
            fields, lead.events, now, engagement_since=since, adjustment=adjustment, account=aggregate, member=lead.id
        )
        lean_own = scoring.own(lead.events, now, since, explain=False)
        assert lean_own.points == scoring.own(lead.events, now, since).points
        assert (lean_own.contributions, lean_own.discounted, lean_own.activity) == ([], [], [])
        for own in (None, lean_own):
            lean = scoring.evaluate(
                fields,
                lead.events,
                now,
                engagement_since=since,
                adjustment=adjustment,
                account=aggregate,
                member=lead.id,
                own=own,
                explain=False,
            )
            assert verdict(lean) == verdict(whole)


FIT = [
    {"name": "big", "when": "lead.company_size is not none and lead.company_size >= 1000", "points": 30},
    {"name": "title", "when": '"head" in (lead["job_title"] or "")|lower', "points": 20},
    {"name": "shown", "when": 'lead.company_size ~ "" == "True"', "points": 7},
]


def fit_scoring(*extra: dict[str, Any]) -> CompiledScoring:
    model = Scoring.model_validate(
        {
            "fit": [*FIT, *extra],
            "grades": {"A": 50, "B": 30, "C": 20},
            "engagement": [{"name": "clicked", "event": "click", "points": 3}],
            "hot": {"engagement": {"A": 40}},
            "routing": {"owners": [{"name": "Sam", "email": "sam@example.com"}]},
        }
    )
    return CompiledScoring(model, MACHINES)


@given(fields=st.lists(field_values, min_size=1, max_size=30))
def test_fit_kept_per_combination_is_fit_worked_out(fields: list[dict[str, Any]]) -> None:
    kept, fresh = fit_scoring(), fit_scoring()
    for lead in fields:
        assert kept.fit(lead) == fresh._fit(lead)
    # 1000, 1000.0 and True read alike for `>=` but not for `~`: kept apart.
    assert kept.fit({"company_size": True})[0] != kept.fit({"company_size": 1})[0]


@pytest.mark.parametrize(
    "when",
    [
        "lead|length > 3",  # the whole record
        'lead[lead.key] == "x"',  # a key worked out at run time
    ],
)
def test_fit_that_reads_more_than_fields_is_worked_out_each_time(when: str) -> None:
    scoring = fit_scoring({"name": "other", "when": when, "points": 1})
    assert scoring._fit_fields is None
    assert scoring.fit({"company_size": 5000}) == scoring._fit({"company_size": 5000})


def rules_scoring(opens: int, clicks: int, pages: list[dict[str, Any]]) -> CompiledScoring:
    model = Scoring.model_validate(
        {
            "engagement": [
                {"name": "opened", "event": "open", "points": opens},
                {"name": "clicked", "event": "click", "points": clicks, "cap_per_day": 7},
                *pages,
                {"name": "signal", "event": "custom:demo*", "points": 11},
            ],
            "half_life": "1d",
            "bots": {"suspect_weight": 0.5, "user_agents": ["*evilscan*"]},
            "hot": {"engagement": {"A": 40}},
            "routing": {"owners": [{"name": "Sam", "email": "sam@example.com"}]},
        }
    )
    return CompiledScoring(model, MACHINES)


PAGE_RULES = [
    [],
    [{"name": "pages", "event": "page_view", "points": 2, "cap_total": 9}],
    [
        {"name": "pricing", "event": "page_view", "match": {"url": "*pricing*"}, "points": 7},
        {"name": "pages", "event": "page_view", "points": 0},
    ],
    [
        {"name": "pages", "event": "page_view", "points": -3},
        {"name": "pricing", "event": "page_view", "match": {"url": "*pricing*"}, "points": 7},
    ],
]


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(
    opens=st.sampled_from([0, -1, 1]),
    clicks=st.sampled_from([0, 3]),
    pages=st.sampled_from(PAGE_RULES),
    history=accounts(),
    hours=st.sampled_from([0, 1, 30]),
)
def test_rules_that_give_no_points_change_no_numbers(
    opens: int, clicks: int, pages: list[dict[str, Any]], history: History, hours: int
) -> None:
    """Without the explanation, events of a type whose rules give no points are not looked at,
    and a type's first rule that matches anything is taken at once: the same sums."""
    scoring = rules_scoring(opens, clicks, pages)
    now = START + timedelta(days=3, hours=hours)
    for lead in history.leads.values():
        assert scoring.own(lead.events, now, explain=False).points == scoring.own(lead.events, now).points
