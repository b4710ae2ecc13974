"""One email in several languages: the send step picks the variant by the lead's language."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from nurture.runtime import effects as fx
from nurture.runtime.engine import start, step
from nurture.scenario.compiler import CompiledScenario
from nurture.scenario.loader import check_scenario
from tests.conftest import MONDAY_9_UTC, lead

SCENARIO = """
id: welcome
name: Welcome
steps:
  - id: hello
    type: send_email
    template: welcome
    subject:
      ja: "{{ lead.last_name }}様、ようこそ"
      en: "Welcome, {{ lead.first_name }}"
"""
FOOTER = '<a href="{{ unsubscribe_url }}">x</a>'
TEMPLATES = {
    "welcome": "<p>Hello</p>" + FOOTER,
    "welcome.ja": "<p>こんにちは</p>" + FOOTER,
    "welcome.en": "<p>Hello</p>" + FOOTER,
}


def sent(compiled: CompiledScenario, **fields: object) -> fx.SendEmail:
    result = step(compiled, start(compiled, MONDAY_9_UTC), lead(**fields), [], MONDAY_9_UTC)
    [send] = [e for e in result.effects if isinstance(e, fx.SendEmail)]
    return send


def test_each_lead_gets_the_template_and_subject_of_its_language(compile_text: Callable[..., CompiledScenario]) -> None:
    compiled = compile_text(SCENARIO, TEMPLATES)
    japanese = sent(compiled, language="ja")
    assert (japanese.template, japanese.subject) == ("welcome.ja", "{{ lead.last_name }}様、ようこそ")
    english = sent(compiled, language="en-GB")
    assert (english.template, english.subject) == ("welcome.en", "Welcome, {{ lead.first_name }}")


def test_a_lead_without_a_known_language_gets_the_default_template(
    compile_text: Callable[..., CompiledScenario],
) -> None:
    compiled = compile_text(SCENARIO.replace("      en:", "      default:"), TEMPLATES)
    french = sent(compiled, language="fr")
    assert french.template == "welcome" and french.subject == "Welcome, {{ lead.first_name }}"
    assert sent(compiled).template == "welcome"


def test_the_projects_default_language_is_the_fallback(project: Callable[..., Path]) -> None:
    path = project(SCENARIO, {k: v for k, v in TEMPLATES.items() if k != "welcome"})
    (path.parent / "project.yaml").write_text("project:\n  default_language: en\n", encoding="utf-8")
    from nurture.scenario.compiler import compile_scenario
    from nurture.scenario.loader import load_scenario

    compiled = compile_scenario(load_scenario(path))
    assert sent(compiled, language="de").template == "welcome.en"
    assert sent(compiled, language="ja").template == "welcome.ja"


def problems(project: Callable[..., Path], text: str, templates: dict[str, str]) -> list[str]:
    path = project(text, templates)
    _, found = check_scenario(path)
    return [str(d).replace(str(path.parent.parent), "P") for d in found]


def test_validate_names_a_language_whose_template_is_missing(project: Callable[..., Path]) -> None:
    found = problems(project, SCENARIO, {k: v for k, v in TEMPLATES.items() if k != "welcome.ja"})
    assert any(
        "step 'hello' has a 'ja' subject but no template P/email_templates/welcome.ja.html" in p for p in found
    ), found


def test_validate_wants_a_fallback_for_other_languages(project: Callable[..., Path]) -> None:
    found = problems(project, SCENARIO, {k: v for k, v in TEMPLATES.items() if k != "welcome"})
    assert any("leads in other languages have no 'welcome' email" in p and "default_language" in p for p in found)


def test_validate_wants_a_subject_for_every_template_language(project: Callable[..., Path]) -> None:
    found = problems(project, SCENARIO, {**TEMPLATES, "welcome.de": "<p>Hallo</p>" + FOOTER})
    assert any("has a template for 'de' but no 'de' subject" in p for p in found)
