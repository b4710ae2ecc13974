"""`simulate` answers "would this lead enter, and why this branch?"."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

from nurture.runtime.engine import FrequencyCap
from nurture.scenario.compiler import CompiledScenario, compile_scenario
from nurture.scenario.loader import load_scenario
from nurture.scenario.programs import entry_verdict
from nurture.scoring.loader import load_scoring
from nurture.simulate import NOT_ENROLLED, format_timeline, simulate
from tests.conftest import MONDAY_9_UTC, lead

FOLLOW_UP = """
id: follow_up
name: Follow-up
entry:
  when: 'lead.company_size >= 100 and lead.country == "JP"'
  source: [seminar]
send_window: {days: [mon, tue, wed, thu, fri, sat, sun], start: "00:00", end: "23:59"}
steps:
  - id: hello
    type: send_email
    template: hello
    subject: "Hi {{ lead.first_name }}"
  - id: route
    type: branch
    cases:
      - if: 'score.grade in ["A", "B"]'
        goto: bye
      - if: 'lead.industry == "SaaS"'
        goto: hand_off
    else: bye
  - id: hand_off
    type: notify_sales
    message: SaaS lead from the seminar
  - id: bye
    type: exit
"""
SCORING = """
scoring:
  hot: {engagement: {A: 10}}
  routing:
    owners:
      - {name: Sato, email: sato@acme.example, countries: [JP]}
      - {name: Max, email: max@acme.example}
"""


def run(compiled: CompiledScenario, **kwargs: object) -> str:
    fields = {"source": "seminar", "company_size": 500, "country": "JP", "industry": "SaaS", "last_name": "Sato"}
    fields.update({k: v for k, v in kwargs.items() if k not in ("scoring", "show_email", "lists", "cap", "sends")})
    timeline = simulate(
        compiled,
        lead(**fields),
        [],
        MONDAY_9_UTC,
        timedelta(days=3),
        scoring=kwargs.get("scoring"),  # type: ignore[arg-type]
        show_email=bool(kwargs.get("show_email")),
    )
    return format_timeline(timeline, compiled)


def test_a_lead_the_entry_criteria_keep_out_is_told_why(compile_text: Callable[..., CompiledScenario]) -> None:
    out = run(compile_text(FOLLOW_UP), company_size=40, source="web")
    assert "✗ would not enter: source is 'web', not one of seminar" in out
    assert "✗ would not enter: entry condition: lead.company_size >= 100 is false (lead.company_size is 40)" in out
    assert "lead.country" not in out  # the part that holds is not blamed
    assert out.rstrip().endswith("-- not enrolled: the entry criteria keep this lead out")


def test_a_branch_says_why_the_earlier_cases_failed(compile_text: Callable[..., CompiledScenario]) -> None:
    out = run(compile_text(FOLLOW_UP))
    assert (
        'case 1: score.grade in ["A", "B"] did not hold: score.grade in ["A", "B"] is false (score.grade is \'D\')'
        in out
    )
    assert 'took case 2: lead.industry == "SaaS" → hand_off' in out


def test_a_hand_off_names_its_owner_or_says_nobody_would_get_it(project: Callable[..., Path]) -> None:
    path = project(FOLLOW_UP)
    compiled = compile_scenario(load_scenario(path))
    assert "→ nobody: no scoring file with routing and no default_owner" in run(compiled)
    (path.parent / "scoring.yaml").write_text(SCORING, encoding="utf-8")
    scoring = load_scoring(path.parent / "scoring.yaml")
    out = run(compiled, scoring=scoring)
    assert "☎ notify sales: SaaS lead from the seminar → Sato <sato@acme.example> (territory match)" in out
    (path.parent / "project.yaml").write_text(
        "project:\n  default_owner: {name: Desk, email: desk@acme.example}\n", encoding="utf-8"
    )
    path.write_text(path.read_text() + "\n# project file changed\n", encoding="utf-8")
    out = run(compile_scenario(load_scenario(path)))
    assert "→ Desk <desk@acme.example> (default_owner: no scoring file routes hand-offs)" in out


def test_show_email_prints_the_rendered_text(compile_text: Callable[..., CompiledScenario]) -> None:
    compiled = compile_text(
        FOLLOW_UP, {"hello": '<p>Hello {{ full_name }} 様</p><a href="{{ unsubscribe_url }}">x</a>'}
    )
    out = run(compiled, show_email=True, first_name="太郎", last_name="山田")
    assert "      │ Hello 山田 太郎 様" in out


def test_the_frequency_cap_says_how_many_emails_it_counted(compile_text: Callable[..., CompiledScenario]) -> None:
    from nurture.runtime.engine import start, step

    compiled = compile_text(FOLLOW_UP)
    recent = [MONDAY_9_UTC - timedelta(days=d) for d in (1, 2)]
    result = step(
        compiled, start(compiled, MONDAY_9_UTC), lead(), [], MONDAY_9_UTC, recent_sends=recent, cap=FrequencyCap(2)
    )
    [note] = [d.text for d in result.decisions]
    assert note == "frequency cap reached (2 emails in the last 7 days, at most 2); deferred to 2026-03-07 09:00 UTC"


PROGRAMS = """
id: {id}
name: {id}
priority: {priority}
{extra}
steps:
  - id: bye
    type: exit
"""


def test_exclusive_programs_keep_the_higher_priority_one(compile_text: Callable[..., CompiledScenario]) -> None:
    nurture = compile_text(PROGRAMS.format(id="nurture", priority=1, extra="group: email_programs")).scenario
    reengage = compile_text(PROGRAMS.format(id="reengage", priority=5, extra="exclusive_with: [nurture]")).scenario
    webinar = compile_text(PROGRAMS.format(id="webinar", priority=9, extra="group: email_programs")).scenario
    blocked = entry_verdict(nurture, {}, lists=[], active=[reengage])
    assert not blocked.enters
    assert blocked.reasons == ("already in 'reengage' (priority 5), which excludes this one (priority 1)",)
    assert entry_verdict(reengage, {}, active=[nurture]).leaves == ("nurture",)
    assert entry_verdict(webinar, {}, active=[nurture, reengage]).leaves == ("nurture",)


def test_lists_and_suppression_lists_decide_entry(
    compile_text: Callable[..., CompiledScenario], project: Callable[..., Path]
) -> None:
    path = project(
        PROGRAMS.format(id="webinar", priority=0, extra="entry: {lists: [webinar_2026], not_lists: [partners]}")
    )
    (path.parent / "project.yaml").write_text(
        "project:\n  lists:\n    webinar_2026: {}\n    partners: {}\n    customers: {suppress: true}\n",
        encoding="utf-8",
    )
    loaded = load_scenario(path)
    scenario, suppression = loaded.scenario, loaded.project.suppression_lists  # type: ignore[union-attr]
    assert entry_verdict(scenario, {}, lists=["webinar_2026"], suppression=suppression).enters
    assert entry_verdict(scenario, {}, lists=[], suppression=suppression).reasons == (
        "on none of the lists webinar_2026",
    )
    assert entry_verdict(scenario, {}, lists=["webinar_2026", "partners"]).reasons == ("on the excluded list partners",)
    customer = entry_verdict(scenario, {}, lists=["webinar_2026", "customers"], suppression=suppression)
    assert customer.reasons == ("on the suppression list 'customers': enters no scenario",)


def test_simulate_reads_lists_from_the_lead_file(
    compile_text: Callable[..., CompiledScenario], project: Callable[..., Path]
) -> None:
    path = project(PROGRAMS.format(id="webinar", priority=0, extra="entry: {lists: [webinar_2026]}"))
    (path.parent / "project.yaml").write_text("project:\n  lists:\n    webinar_2026: {}\n", encoding="utf-8")
    compiled = compile_scenario(load_scenario(path))
    timeline = simulate(compiled, lead(lists=["webinar_2026"]), [], MONDAY_9_UTC, timedelta(days=1))
    assert timeline.final.status != NOT_ENROLLED
    timeline = simulate(compiled, lead(), [], MONDAY_9_UTC, timedelta(days=1))
    assert timeline.final.status == NOT_ENROLLED
