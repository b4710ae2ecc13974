"""`nurture validate`: each class of mistake gets a file:line message with a hint."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from nurture.errors import ValidationFailed
from nurture.jobs.catalog import check_file
from nurture.scenario.loader import check_scenario, load_scenario

GOOD = """
id: welcome
name: Welcome
steps:
  - id: hello
    type: send_email
    template: hello
    subject: "Hi {{ lead.first_name }}"
  - id: pause
    type: wait
    duration: 2d
  - id: again
    type: send_email
    template: again
    subject: Again
"""


def problems(project: Callable[..., Path], text: str, templates: dict[str, str] | None = None) -> list[str]:
    path = project(text, templates)
    _, found = check_scenario(path)
    return [str(d).replace(str(path), "FILE") for d in found]


def test_a_correct_scenario_loads(project: Callable[..., Path]) -> None:
    loaded = load_scenario(project(GOOD))
    assert [s.id for s in loaded.scenario.steps] == ["hello", "pause", "again"]
    assert len(loaded.version) == 12


def test_version_changes_with_the_file_content(project: Callable[..., Path]) -> None:
    first = load_scenario(project(GOOD)).version
    second = load_scenario(project(GOOD.replace("2d", "3d"))).version
    assert first != second


def test_yaml_syntax_error_names_the_line(project: Callable[..., Path]) -> None:
    text = GOOD.replace("    duration: 2d", "    duration: [2d")
    found = problems(project, text)
    assert len(found) == 1 and found[0].startswith("FILE:")
    assert "YAML syntax error" in found[0]
    line = int(found[0].split(":")[1])
    assert line in (11, 12, 13)


def test_unknown_step_key_suggests_the_right_one(project: Callable[..., Path]) -> None:
    found = problems(project, GOOD.replace("    duration: 2d", "    durration: 2d"))
    assert "FILE:10: unknown key 'durration' in step 'pause' — did you mean 'duration'?" in found


def test_unknown_top_level_key_suggests_the_right_one(project: Callable[..., Path]) -> None:
    found = problems(project, GOOD.replace("name: Welcome", "name: Welcome\ndescripton: x"))
    assert "FILE:3: unknown key 'descripton' — did you mean 'description'?" in found


def test_unknown_step_type_suggests_the_right_one(project: Callable[..., Path]) -> None:
    found = problems(
        project, GOOD.replace("type: send_email\n    template: again", "type: send_mail\n    template: again")
    )
    assert "FILE:12: unknown step type 'send_mail' in step 'again' — did you mean 'send_email'?" in found


def test_missing_required_key(project: Callable[..., Path]) -> None:
    found = problems(project, GOOD.replace('    subject: "Hi {{ lead.first_name }}"\n', ""))
    assert "FILE:4: missing key 'subject' in step 'hello'" in found


def test_unknown_step_reference(project: Callable[..., Path]) -> None:
    text = GOOD.replace("    duration: 2d", "    duration: 2d\n    next: agian")
    found = problems(project, text)
    assert "FILE:11: step 'pause' refers to unknown step 'agian' (next) — did you mean 'again'?" in found


def test_unreachable_step(project: Callable[..., Path]) -> None:
    text = (
        GOOD.replace("    duration: 2d", "    duration: 2d\n  - id: stop\n    type: exit")
        + """
  - id: orphan
    type: wait
    duration: 1d
"""
    )
    found = problems(project, text)
    assert any(p.startswith("FILE:13: step 'again' can never be reached") for p in found)
    assert any(p.startswith("FILE:18: step 'orphan' can never be reached") for p in found)


def test_loop_without_a_wait(project: Callable[..., Path]) -> None:
    text = """
    id: spin
    name: Spin
    steps:
      - id: hello
        type: send_email
        template: hello
        subject: Hi
      - id: check
        type: branch
        cases:
          - if: score.engagement > 10
            goto: done
        else: hello
      - id: done
        type: exit
    """
    found = problems(project, text)
    assert any(p.startswith("FILE:4: steps check, hello form a loop without a wait") for p in found)


def test_a_loop_through_a_wait_is_fine(project: Callable[..., Path]) -> None:
    text = GOOD + "    next: pause\n"
    assert problems(project, text) == []


def test_missing_template(project: Callable[..., Path]) -> None:
    found = problems(project, GOOD.replace("template: again", "template: agian"))
    assert any(
        p.startswith("FILE:13: step 'again' uses missing template 'agian'") and "did you mean 'again'?" in p
        for p in found
    )


def test_template_variable_no_lead_field_provides(project: Callable[..., Path]) -> None:
    templates = {"hello": "<p>Hi</p>\n<p>{{ lead.compnay }}</p>", "again": "x"}
    path = project(GOOD, templates)
    _, found = check_scenario(path)
    template_file = path.parent.parent / "email_templates" / "hello.html"
    assert [str(d) for d in found] == [
        f"{template_file}:2: template uses lead.compnay, which no lead field provides — did you mean "
        "'company'? (custom fields go in the scenario's lead_fields)"
    ]


def test_subject_variable_no_lead_field_provides(project: Callable[..., Path]) -> None:
    found = problems(project, GOOD.replace("{{ lead.first_name }}", "{{ lead.firstname }}"))
    assert any(p.startswith("FILE:7: template uses lead.firstname") and "'first_name'" in p for p in found)


def test_custom_fields_declared_in_lead_fields_are_accepted(project: Callable[..., Path]) -> None:
    text = GOOD.replace("name: Welcome", "name: Welcome\nlead_fields: [webinar_date]").replace(
        "subject: Again", 'subject: "See you on {{ lead.webinar_date }}"'
    )
    assert problems(project, text) == []


def test_bad_duration(project: Callable[..., Path]) -> None:
    found = problems(project, GOOD.replace("duration: 2d", "duration: 2 days"))
    assert any(p.startswith("FILE:10: step 'pause': duration: bad duration '2 days'") for p in found)


def test_bad_weekday_wait(project: Callable[..., Path]) -> None:
    found = problems(project, GOOD.replace("duration: 2d", "until: tusday 10:00"))
    assert any(p.startswith("FILE:10: step 'pause': until: unknown weekday 'tusday'") for p in found)


def test_bad_expression_syntax(project: Callable[..., Path]) -> None:
    text = GOOD.replace("name: Welcome", "name: Welcome\nentry:\n  when: 'lead.company_size >= '")
    found = problems(project, text)
    assert any(p.startswith("FILE:4: bad expression:") for p in found)


def test_expression_with_unknown_field_and_event(project: Callable[..., Path]) -> None:
    text = GOOD.replace(
        "name: Welcome",
        'name: Welcome\nentry:\n  when: \'lead.industy == "SaaS" and events.count("clik") > 0\'',
    )
    found = problems(project, text)
    assert any("FILE:4: expression uses lead.industy" in p and "'industry'" in p for p in found)
    assert "FILE:4: expression counts unknown event 'clik' — did you mean 'click'?" in found


def test_wait_for_unknown_event(project: Callable[..., Path]) -> None:
    text = GOOD.replace(
        """    type: wait
    duration: 2d""",
        """    type: wait_for
    event: clik
    timeout: 3d
    on_event: again
    on_timeout: again""",
    )
    found = problems(project, text)
    assert "FILE:10: step 'pause' waits for unknown event 'clik' — did you mean 'click'?" in found


def test_duplicate_step_id_and_duplicate_key(project: Callable[..., Path]) -> None:
    text = GOOD.replace("  - id: again", "  - id: pause").replace(
        "    duration: 2d", "    duration: 2d\n    duration: 3d"
    )
    found = problems(project, text)
    assert any(p.startswith("FILE:11: duplicate key 'duration'") for p in found)


def test_duplicate_step_id(project: Callable[..., Path]) -> None:
    found = problems(project, GOOD.replace("  - id: again", "  - id: pause"))
    assert "FILE:11: duplicate step id 'pause' — first used on line 8" in found


def test_every_problem_is_reported_not_just_the_first(project: Callable[..., Path]) -> None:
    text = (
        GOOD.replace("durration", "x")
        .replace("duration: 2d", "durration: 2d")
        .replace("template: again", "template: agian")
    )
    found = problems(project, text)
    assert any("unknown key 'durration'" in p for p in found)
    assert any("missing template 'agian'" in p for p in found)


def test_load_raises_with_all_diagnostics(project: Callable[..., Path]) -> None:
    with pytest.raises(ValidationFailed) as caught:
        load_scenario(project(GOOD.replace("duration: 2d", "duration: soon")))
    assert len(caught.value.diagnostics) == 1


def test_sample_scenarios_are_valid() -> None:
    root = Path(__file__).resolve().parents[2]
    for path in sorted((root / "scenarios").glob("*.yaml")):
        _, found = check_file(path, root / "email_templates")
        assert found == [], f"{path.name}: {found}"
