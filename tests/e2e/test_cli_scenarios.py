"""The scenario commands, run as a marketer would run them."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


# The sender's identity, configured once for the project (every campaign email shows it).
SENDER = {"NURTURE_SENDER_NAME": "Acme Analytics", "NURTURE_SENDER_POSTAL_ADDRESS": "100 Main Street, Boston, MA 02110"}


def nurture(*args: str, cwd: Path = ROOT, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    environment = {k: v for k, v in os.environ.items() if not k.startswith("NURTURE_SENDER_")}
    return subprocess.run(
        [sys.executable, "-m", "nurture", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
        env={**environment, **(SENDER if env is None else env)},
    )


def test_validate_accepts_the_samples() -> None:
    result = nurture("validate", "scenarios/")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "ok: 4 file(s) valid" in result.stdout


def test_validate_reports_precise_errors_on_a_broken_copy(tmp_path: Path) -> None:
    shutil.copytree(ROOT / "scenarios", tmp_path / "scenarios")
    shutil.copytree(ROOT / "email_templates", tmp_path / "email_templates")
    path = tmp_path / "scenarios" / "whitepaper_nurture.yaml"
    text = path.read_text()
    text = text.replace("event: click", "event: clik").replace("goto: hand_off", "goto: handoff")
    path.write_text(text)
    result = nurture("validate", "scenarios/", cwd=tmp_path)
    assert result.returncode == 1
    lines = result.stdout.splitlines()
    click_line = text.splitlines().index("    event: clik") + 1
    goto_line = next(i for i, line in enumerate(text.splitlines(), 1) if "goto: handoff" in line)
    assert (
        f"scenarios/whitepaper_nurture.yaml:{click_line}: step 'await_case_study_click' waits for "
        "unknown event 'clik' — did you mean 'click'?"
    ) in lines
    assert any(
        line.startswith(f"scenarios/whitepaper_nurture.yaml:{goto_line}: step 'route' refers to unknown step 'handoff'")
        for line in lines
    ), lines
    assert "2 problem(s) in 4 file(s)" in result.stderr


def test_validate_asks_for_the_sender_identity_once_per_scenario_that_sends(tmp_path: Path) -> None:
    result = nurture("validate", "scenarios/", env={})
    assert result.returncode == 1
    lines = result.stdout.splitlines()
    assert len(lines) == 3, lines  # the three scenarios that send email; the scoring file sends none
    assert all("the sender's identity is not configured" in line and "NURTURE_SENDER_NAME" in line for line in lines)
    assert lines[0].startswith("scenarios/reengagement.yaml:")


def test_validate_names_the_step_whose_template_lacks_the_postal_address_or_unsubscribe_link(tmp_path: Path) -> None:
    shutil.copytree(ROOT / "scenarios", tmp_path / "scenarios")
    shutil.copytree(ROOT / "email_templates", tmp_path / "email_templates")
    layout = tmp_path / "email_templates" / "_layout.html"
    layout.write_text(layout.read_text().replace(" · {{ sender.postal_address }}", ""))
    (tmp_path / "email_templates" / "welcome.txt").write_text("Hi {{ lead.first_name }}\n\n{{ sender.name }}\n")
    result = nurture("validate", "scenarios/", cwd=tmp_path)
    assert result.returncode == 1
    text = (tmp_path / "scenarios" / "whitepaper_nurture.yaml").read_text().splitlines()
    welcome_line = text.index("  - id: welcome") + 1
    lines = result.stdout.splitlines()
    assert (
        f"scenarios/whitepaper_nurture.yaml:{welcome_line}: template 'welcome' does not show the unsubscribe link "
        '{{ unsubscribe_url }} in its text part — add <a href="{{ unsubscribe_url }}">Unsubscribe</a> '
        "(and the URL in the .txt part)"
    ) in lines
    assert any(
        line.startswith(
            f"scenarios/whitepaper_nurture.yaml:{welcome_line}: template 'welcome' does not show "
            "the sender's postal address ('100 Main Street, Boston, MA 02110') in its HTML part"
        )
        for line in lines
    ), lines
    assert not any("ja_" in line for line in lines)  # the Japanese emails override the footer and still show it


def test_schema_is_json_schema_with_every_step_type() -> None:
    result = nurture("schema")
    document = json.loads(result.stdout)
    assert document["$schema"].startswith("https://json-schema.org/")
    assert {"id", "name", "steps", "send_window", "entry"} <= set(document["properties"])
    kinds = {
        d["properties"]["type"]["const"]
        for name, d in document["$defs"].items()
        if "type" in d.get("properties", {}) and "const" in d["properties"]["type"]
    }
    assert kinds == {
        "send_email",
        "wait",
        "wait_for",
        "branch",
        "split",
        "update",
        "notify_sales",
        "goto",
        "exit",
    }


def test_graph_prints_mermaid_and_dot() -> None:
    mermaid = nurture("graph", "scenarios/reengagement.yaml")
    assert mermaid.stdout.startswith("---\ntitle: Re-engage quiet leads\n---\nflowchart TD")
    assert 's_subject_test -->|"question 50%"| s_ask_question' in mermaid.stdout
    dot = nurture("graph", "scenarios/reengagement.yaml", "--format", "dot")
    assert dot.stdout.startswith('digraph "Re-engage quiet leads"')


def test_simulate_engaged_lead_is_handed_to_sales() -> None:
    result = nurture(
        "simulate",
        "scenarios/whitepaper_nurture.yaml",
        "--lead",
        "examples/lead_engaged.yaml",
        "--events",
        "examples/events_engaged.yaml",
        "--start",
        "2026-03-02T08:00:00Z",
    )
    assert result.returncode == 0, result.stderr
    out = result.stdout.splitlines()
    emails = [line for line in out if "✉ email" in line]
    assert [line.split("'")[1] for line in emails] == ["welcome", "case_study", "webinar_invite"]
    assert emails[0].startswith("2026-03-02 08:00 UTC  (Mon 09:00 local)")
    assert "Your copy of Modern Manufacturing Analytics, Jane" in emails[0]
    assert emails[1].startswith("2026-03-04 08:00 UTC")
    assert any("took case 1" in line and "→ hand_off" in line for line in out)
    assert any("☎ notify sales" in line for line in out)
    assert out[-1] == "-- 3 email(s); final: completed at '__end__'"


def test_simulate_quiet_lead_gets_reminder_and_slow_track() -> None:
    result = nurture(
        "simulate",
        "scenarios/whitepaper_nurture.yaml",
        "--lead",
        "examples/lead_quiet.yaml",
        "--start",
        "2026-03-02T08:00:00Z",
        "--until",
        "40d",
    )
    out = result.stdout
    assert "outside send window; deferred to 2026-03-02 15:00 UTC" in out  # 09:00 in Chicago
    assert "no click within 3d: timed out" in out
    assert "✉ email 'case_study_reminder'" in out
    assert "took else → slow_track" in out
    assert "☎" not in out


def test_simulate_japanese_scenario_renders_utf8_subjects() -> None:
    result = nurture(
        "simulate",
        "scenarios/seminar_followup_ja.yaml",
        "--lead",
        "examples/lead_ja.yaml",
        "--events",
        "examples/events_ja.yaml",
        "--start",
        "2026-03-02T08:00:00Z",
    )
    assert "【御礼】製造業のデータ活用セミナー2026へのご参加ありがとうございました" in result.stdout
    assert "鈴木様：講演資料と導入事例のご案内" in result.stdout
    assert "deferred to 2026-03-09 00:30 UTC" in result.stdout  # Friday evening JST → Monday 09:30 JST


def test_simulate_reports_a_bad_events_file(tmp_path: Path) -> None:
    events = tmp_path / "events.yaml"
    events.write_text("- {type: clik, at: +1d}\n")
    result = nurture(
        "simulate",
        "scenarios/reengagement.yaml",
        "--lead",
        "examples/lead_quiet.yaml",
        "--events",
        str(events),
    )
    assert result.returncode == 1
    assert "event #1: unknown event type 'clik'" in result.stderr


def test_simulate_computes_scores_from_events_when_the_lead_file_has_none() -> None:
    result = nurture(
        "simulate",
        "scenarios/whitepaper_nurture.yaml",
        "--lead",
        "examples/lead_new.yaml",
        "--events",
        "examples/events_hot.yaml",
        "--start",
        "2026-03-02T08:00:00Z",
    )
    assert result.returncode == 0, result.stderr
    out = result.stdout.splitlines()
    assert "scores follow the events, as scoring.yaml computes them" in out
    assert any("★ became warm: grade A, engagement 15" in line for line in out)
    assert any("took else → slow_track" in line for line in out)  # 25 points at the branch: not yet 40
    hot = next(line for line in out if "★ became hot" in line)
    assert hot.startswith("2026-03-07 10:00 UTC")  # attending the webinar: 5 + 10 + 10 (scenario) + 20
    assert out[-1] == "-- 3 email(s); final: exited at 'pause_slow'"
