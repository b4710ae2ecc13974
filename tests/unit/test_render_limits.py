"""Templates and expressions that would eat the daemon's memory or time fail alone, with a
clear error; `validate` rejects what it can see without running them."""

from __future__ import annotations

from pathlib import Path

import pytest

from nurture.errors import ExpressionError
from nurture.scenario.expr import compile_expression
from nurture.scenario.templates import TemplateError, TemplateLimitError, TemplateStore, check_template_source

HOSTILE = {
    "huge_repetition": '{{ "x" * 10**9 }}',
    "huge_power": "{{ 10**(10**9) }}",
    "power_tower": "{{ ((10**64)**64)**64 }}",
    "nested_ranges": "{% for a in range(100000) %}{% for b in range(100000) %}{% endfor %}{% endfor %}",
    "nested_lists": "{% set l = [1] * 10000 %}{% for a in l %}{% for b in l %}{% for c in l %}{% endfor %}"
    "{% endfor %}{% endfor %}",
    "doubling_concat": '{% set ns = namespace(s="x") %}{% for i in range(64) %}{% set ns.s = ns.s ~ ns.s %}'
    "{% endfor %}{{ ns.s|length }}",
    "doubling_product": "{% set ns = namespace(n=3) %}{% for i in range(64) %}{% set ns.n = ns.n * ns.n %}"
    "{% endfor %}{{ ns.n }}",
    "wide_filter": '{{ "x"|center(1000000000) }}',
    "wide_method": '{{ "x".ljust(1000000000) }}',
    "wide_format": '{{ "{:>1000000000}".format("x") }}',
    "wide_percent": '{{ "%1000000000s" % "x" }}',
    "large_output": "{% for i in range(100000) %}xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx{% endfor %}",
    "exponential_macro": "{% macro f(n) %}{% if n %}{{ f(n - 1) }}{{ f(n - 1) }}{% endif %}{% endmacro %}{{ f(40) }}",
}


@pytest.fixture
def store(tmp_path: Path) -> TemplateStore:
    for name, body in HOSTILE.items():
        (tmp_path / f"{name}.html").write_text(body, encoding="utf-8")
    (tmp_path / "fine.html").write_text(
        "<p>Hi {{ lead.first_name }}{% for i in range(3) %} {{ i * 2 }}{% endfor %} {{ 'a' ~ 'b' }}</p>",
        encoding="utf-8",
    )
    return TemplateStore(tmp_path, seconds=0.5, max_output=1_000_000)


@pytest.mark.parametrize("name", sorted(HOSTILE))
def test_a_hostile_template_fails_with_a_clear_error(store: TemplateStore, name: str) -> None:
    with pytest.raises(TemplateLimitError, match=f"template '{name}': .*(limit|longer than|not available|recursion)"):
        store.render(name, "Hello", {"lead": {"first_name": "Ann"}})


def test_a_good_template_renders_beside_hostile_ones(store: TemplateStore) -> None:
    for name in HOSTILE:
        with pytest.raises(TemplateError):
            store.render(name, "Hi", {"lead": {"first_name": "Ann"}})
    rendered = store.render("fine", "Hello {{ lead.first_name }}", {"lead": {"first_name": "Ann"}})
    assert rendered.html == "<p>Hi Ann 0 2 4 ab</p>" and rendered.subject == "Hello Ann"


@pytest.mark.parametrize(
    ("source", "problem"),
    [
        ('{{ "x" * 10**9 }}', "repeating 1 items 1000000000 times"),
        ("{{ 10**(10**9) }}", "exponent 1000000000"),
        ("<p>\n{{ 2 ** 100000 }}", "exponent 100000"),
    ],
)
def test_validate_rejects_constant_arithmetic_over_the_limits(source: str, problem: str) -> None:
    found = check_template_source(source, "t.html", set())
    assert len(found) == 1 and problem in found[0].message
    assert found[0].line == source.count("\n") + 1


@pytest.mark.parametrize(
    "source",
    ['"x" * 10**9', "10 ** (10 ** 9)", "((10 ** 64) ** 64) ** 64"],
)
def test_an_expression_with_constant_arithmetic_over_the_limits_is_rejected_when_loaded(source: str) -> None:
    with pytest.raises(ExpressionError, match="limit"):
        compile_expression(source)


@pytest.mark.parametrize(
    "source",
    [
        "lead.name * 1000000000",
        "lead.n ** lead.n",
        '"x".ljust(lead.n)',
        '"x"|center(lead.n)',
        '"{:>9}".format(lead.name)',
        "(lead.name * 100000) ~ (lead.name * 100000)",
        "(lead.name * 100000) + (lead.name * 100000)",
    ],
)
def test_an_expression_that_would_blow_up_at_run_time_fails_with_a_clear_error(source: str) -> None:
    expression = compile_expression(source)
    with pytest.raises(ExpressionError, match=r"limit|not available"):
        expression.evaluate({"lead": {"name": "x", "n": 1_000_000_000}})
