"""The expression language: what marketers can write, and what they cannot do with it."""

from __future__ import annotations

import contextlib
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from nurture.errors import ExpressionError
from nurture.scenario.expr import EventRecord, EventsView, Expression, Record

NOW = datetime(2026, 3, 2, 12, tzinfo=UTC)


def context(**lead: object) -> dict[str, object]:
    events = [
        EventRecord("page_view", NOW - timedelta(days=1), {"url": "https://x.example/pricing"}),
        EventRecord("page_view", NOW - timedelta(days=2), {"url": "https://x.example/pricing/enterprise"}),
        EventRecord("page_view", NOW - timedelta(days=20), {"url": "https://x.example/pricing"}),
        EventRecord("click", NOW - timedelta(hours=3), {"link": "case-study"}),
    ]
    return {
        "lead": Record(lead),
        "score": Record({"fit": 30, "engagement": 45, "total": 75, "grade": "B"}),
        "events": EventsView(events, NOW),
        "lifecycle": "warm",
        "now": NOW,
    }


def test_attribute_and_membership_conditions_read_lead_fields() -> None:
    expr = Expression('lead.company_size >= 100 and lead.industry in ["SaaS", "Manufacturing"]')
    assert expr.test(context(company_size=250, industry="SaaS"))
    assert not expr.test(context(company_size=50, industry="SaaS"))
    assert not expr.test(context(company_size=250, industry="Retail"))


def test_score_and_lifecycle_are_available() -> None:
    assert Expression("score.engagement >= 40 and score.grade == 'B'").test(context())
    assert Expression('lifecycle == "warm"').test(context())


def test_event_counts_respect_the_time_window_and_patterns() -> None:
    ctx = context()
    assert Expression('events.count("page_view", within="7d")').evaluate(ctx) == 2
    assert Expression('events.count("page_view")').evaluate(ctx) == 3
    assert Expression('events.count("page_view", within="30d", url="*enterprise")').evaluate(ctx) == 1
    assert Expression('events.any("click", link="case-study")').test(ctx)
    assert not Expression('events.any("click", link="pricing")').test(ctx)
    assert Expression('events.days_since("click")').evaluate(ctx) == pytest.approx(0.125)
    assert Expression('events.last("page_view").url').evaluate(ctx) == "https://x.example/pricing"


def test_missing_field_reads_as_none() -> None:
    assert Expression("lead.nickname is none").test(context())


def test_a_list_literal_is_a_new_list_at_every_evaluation() -> None:
    expression = Expression("[1, 2]")
    first = expression.evaluate({})
    first.append(3)
    assert expression.evaluate({}) == [1, 2]


def test_an_unknown_name_is_an_error_not_none() -> None:
    with pytest.raises(ExpressionError, match="'nosuch' is undefined"):
        Expression("nosuch.field == 1").evaluate(context())


@pytest.mark.parametrize(
    "source",
    ["lead.__class__", "lead._data", "score.__init__.__globals__", "().__class__.__bases__"],
)
def test_sandbox_blocks_access_to_python_internals(source: str) -> None:
    with pytest.raises(ExpressionError):
        Expression(source).evaluate(context())


@pytest.mark.parametrize("source", ["2 ** 100000", '"x" * 100000000', "[1] * 10000000"])
def test_runaway_arithmetic_is_refused(source: str) -> None:
    with pytest.raises(ExpressionError):
        Expression(source).evaluate(context())


@pytest.mark.parametrize("source", ["lead.size >=", "lead.size >= 1 )", "", "lead..x", "{% if %}"])
def test_syntax_errors_are_expression_errors(source: str) -> None:
    with pytest.raises(ExpressionError):
        Expression(source)


def test_usage_lists_fields_event_types_and_names() -> None:
    usage = Expression('lead.industry == "x" and events.count("clik") > 1 and foo and score.fitt').usage
    assert usage.lead_fields == {"industry"}
    assert usage.event_types == {"clik"}
    assert "foo" in usage.names
    assert usage.score_fields == {"fitt"}


small_ints = st.integers(min_value=-10_000, max_value=10_000)


@given(small_ints, small_ints, small_ints)
def test_arithmetic_and_comparison_agree_with_python(a: int, b: int, c: int) -> None:
    assert Expression(f"({a}) + ({b}) >= ({c})").evaluate({}) == (a + b >= c)
    assert Expression(f"({a}) * ({b}) - ({c})").evaluate({}) == a * b - c


@given(
    st.lists(st.sampled_from(["SaaS", "Retail", "Manufacturing", "Finance"]), max_size=4),
    st.sampled_from(["SaaS", "Retail", "Manufacturing", "Finance"]),
)
def test_membership_agrees_with_python(options: list[str], value: str) -> None:
    expr = Expression(f"lead.industry in {options!r}")
    assert expr.test({"lead": Record({"industry": value})}) == (value in options)


@given(st.text(max_size=40))
def test_any_text_either_parses_or_fails_cleanly(source: str) -> None:
    try:
        expr = Expression(source)
    except ExpressionError:
        return
    with contextlib.suppress(ExpressionError):
        expr.evaluate(context(company_size=10))
