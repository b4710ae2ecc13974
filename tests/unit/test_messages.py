"""Error messages a marketer can act on: what is wrong, on which line, and what to write instead."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from nurture.scenario.loader import check_scenario, load_scenario

BASE = """
id: welcome
name: Welcome
send_window:
  timezone: Asia/Tokyo
steps:
  - id: hello
    type: send_email
    template: hello
    subject: "Hi {{ lead.first_name }}"
  - id: pause
    type: wait
    duration: 2d
  - id: check
    type: branch
    cases:
      - if: 'lead.company_size >= 100'
        goto: done
    else: done
  - id: done
    type: exit
"""


def problems(project: Callable[..., Path], text: str, templates: dict[str, str] | None = None) -> list[str]:
    path = project(text, templates)
    _, found = check_scenario(path)
    return [str(d).replace(str(path), "FILE") for d in found]


def test_the_base_scenario_is_valid(project: Callable[..., Path]) -> None:
    assert problems(project, BASE) == []


def test_an_unclosed_variable_in_a_subject_says_so(project: Callable[..., Path]) -> None:
    found = problems(project, BASE.replace('"Hi {{ lead.first_name }}"', '"Hi {{ lead.first_name"'))
    assert found == [
        "FILE:9: template syntax error: '{{' is never closed — end the variable with '}}', e.g. {{ lead.first_name }}"
    ]


def test_an_unclosed_variable_in_a_template_names_its_line(project: Callable[..., Path]) -> None:
    found = problems(
        project, BASE, {"hello": '<p>Hi</p>\n<p>{{ lead.first_name </p>\n<a href="{{ unsubscribe_url }}">x</a>'}
    )
    assert any(
        p.endswith(
            "hello.html:2: template syntax error: '{{' is never closed — "
            "end the variable with '}}', e.g. {{ lead.first_name }}"
        )
        for p in found
    ), found


def test_an_unquoted_subject_starting_with_braces_gets_a_quoting_hint(project: Callable[..., Path]) -> None:
    found = problems(project, BASE.replace('"Hi {{ lead.first_name }}"', "{{ lead.first_name }}, welcome"))
    assert len(found) == 1 and "YAML syntax error" in found[0]
    assert "a value that starts with '{{' must be quoted" in found[0]


def test_a_misspelt_time_zone_gets_did_you_mean(project: Callable[..., Path]) -> None:
    found = problems(project, BASE.replace("Asia/Tokyo", "Asia/Tokio"))
    assert found == ["FILE:4: send_window.timezone: unknown time zone 'Asia/Tokio' — did you mean 'Asia/Tokyo'?"]
    found = problems(project, BASE.replace("Asia/Tokyo", "JST"))
    assert found[0].endswith("did you mean 'Asia/Tokyo'?")


def test_step_errors_name_the_step_not_its_index(project: Callable[..., Path]) -> None:
    found = problems(project, BASE.replace("duration: 2d", "duration: 2 days"))
    assert found[0].startswith("FILE:12: step 'pause': duration: bad duration '2 days'")


def test_a_number_compared_with_text_is_caught_with_the_fix(project: Callable[..., Path]) -> None:
    found = problems(project, BASE.replace("'lead.company_size >= 100'", "'lead.company_size >= \"100名\"'"))
    assert found == [
        "FILE:16: expression compares lead.company_size (a number) with the text '100名': "
        "lead.company_size >= '100名' never holds — write the number alone, without quotes or units: "
        "lead.company_size >= 100"
    ]


def test_score_fields_are_numbers_too(project: Callable[..., Path]) -> None:
    found = problems(project, BASE.replace("'lead.company_size >= 100'", "'score.engagement > \"40点\"'"))
    assert any("score.engagement > 40" in p for p in found)


def test_a_full_width_space_in_the_indentation_is_pointed_at(project: Callable[..., Path]) -> None:
    found = problems(project, BASE.replace("  - id: pause", "　- id: pause"))
    assert found == [
        "FILE:10: full-width space (U+3000) in the indentation at column 1 — "
        "indent with ordinary half-width spaces (turn the input method off)"
    ]


def test_a_full_width_colon_and_full_width_keys_are_pointed_at(project: Callable[..., Path]) -> None:
    found = problems(project, BASE.replace("    duration: 2d", "    duration：2d"))
    assert found == [
        "FILE:12: full-width colon '：' after 'duration' — write 'duration:' with a half-width colon and a space"
    ]
    found = problems(project, BASE.replace("    duration: 2d", "    ｄｕｒａｔｉｏｎ: 2d"))
    assert found == [
        "FILE:12: key 'ｄｕｒａｔｉｏｎ' is written in full-width characters — "
        "write it in half-width characters: 'duration'"
    ]


def test_full_width_text_inside_values_is_fine(project: Callable[..., Path]) -> None:
    text = BASE.replace("name: Welcome", "name: ようこそ　シナリオ：第１弾")
    assert problems(project, text) == []


def test_a_template_without_an_unsubscribe_link_is_a_warning_not_an_error(project: Callable[..., Path]) -> None:
    path = project(BASE, {"hello": "<p>Hi</p>"})
    loaded = load_scenario(path)
    assert [str(w).replace(str(path), "FILE") for w in loaded.warnings] == [
        "FILE:8: warning: template 'hello' (step 'hello') has no unsubscribe link — "
        'add <a href="{{ unsubscribe_url }}">Unsubscribe</a> to it or to its layout\'s footer'
    ]
    layout = '<html><body>{% block body %}{% endblock %}<a href="{{ unsubscribe_url }}">Stop</a></body></html>'
    path = project(BASE, {"_layout": layout, "hello": '{% extends "_layout.html" %}{% block body %}Hi{% endblock %}'})
    assert load_scenario(path).warnings == []
