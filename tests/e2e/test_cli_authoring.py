"""A marketer's own multi-language project, from the command line: check, dry-run, diagram,
test-send, run, and see why nothing was sent yet."""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

from tests.smtp_server import SmtpServer

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "multilingual"
SENDER = {"NURTURE_SENDER_NAME": "Acme Analytics", "NURTURE_SENDER_POSTAL_ADDRESS": "100 Main Street, Boston, MA 02110"}


def nurture(*args: str, cwd: Path = ROOT, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    import os

    return subprocess.run(
        [sys.executable, "-m", "nurture", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=180,
        env={**os.environ, **SENDER, **(env or {})},
    )


def own_project(tmp_path: Path) -> Path:
    project = tmp_path / "acme"
    shutil.copytree(EXAMPLE, project)
    return project


def test_the_example_project_validates_and_a_missing_unsubscribe_link_is_pointed_at(tmp_path: Path) -> None:
    project = own_project(tmp_path)
    result = nurture("validate", str(project / "scenarios"))
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.strip().endswith("ok: 2 file(s) valid")
    (project / "email_templates" / "trial_tips.en.html").write_text("<p>No footer here</p>", encoding="utf-8")
    result = nurture("validate", str(project / "scenarios"))
    assert "warning: template 'trial_tips.en' (step 'tips') has no unsubscribe link" in result.stdout


def test_a_hand_off_nobody_would_receive_fails_validate(tmp_path: Path) -> None:
    project = own_project(tmp_path)
    settings = project / "scenarios" / "project.yaml"
    settings.write_text(
        settings.read_text().replace("  default_owner: {name: Sales desk, email: sales@acme-analytics.example}\n", "")
    )
    result = nurture("validate", str(project / "scenarios"))
    assert result.returncode == 1
    assert "step 'hand_off' hands the lead to sales, but nobody would receive it" in result.stdout
    assert "add scenarios/scoring.yaml with routing.owners, or a default_owner" in result.stdout


def test_mistakes_a_japanese_marketer_makes_are_named_on_their_lines(tmp_path: Path) -> None:
    project = own_project(tmp_path)
    path = project / "scenarios" / "trial_onboarding.yaml"
    text = path.read_text()
    text = text.replace("fallback_timezone: Asia/Tokyo", "fallback_timezone: Asia/Tokio")
    text = text.replace("event: workflow_created", "event: workflow_create")
    path.write_text(text, encoding="utf-8")
    out = nurture("validate", str(path)).stdout
    assert "fallback_timezone: unknown time zone 'Asia/Tokio' — did you mean 'Asia/Tokyo'?" in out
    assert "step 'await_workflow' waits for unknown event 'workflow_create' — did you mean 'workflow_created'?" in out
    path.write_text(path.read_text().replace("  - id: tips", "　- id: tips"), encoding="utf-8")
    out = nurture("validate", str(path)).stdout
    assert "full-width space (U+3000) in the indentation" in out


def test_simulate_shows_the_japanese_email_why_the_branch_went_on_and_the_holidays(tmp_path: Path) -> None:
    result = nurture(
        "simulate",
        "examples/multilingual/scenarios/trial_onboarding.yaml",
        "--lead",
        "examples/lead_trial_ja.yaml",
        "--events",
        "examples/events_trial.yaml",
        "--start",
        "2026-04-28T12:00:00Z",
        "--until",
        "14d",
        "--show-email",
    )
    assert result.returncode == 0, result.stderr
    out = result.stdout
    # 21:00 in Tokyo on Tuesday; Golden Week (04-29 to 05-05) keeps the email back to Wednesday 05-06.
    assert "blackout: Golden Week" in out
    assert "✉ email 'trial_welcome.ja' — subject: 山田 太郎 様、トライアルへようこそ" in out
    assert "      │ 山田 太郎 様" in out
    assert "did not hold" in out and "events.count(…) is" in out


def test_schema_for_the_scoring_and_the_project_file() -> None:
    scoring = json.loads(nurture("schema", "--scoring").stdout)
    assert scoring["title"] == "nurture scoring file" and "scoring" in scoring["properties"]
    project = json.loads(nurture("schema", "--project").stdout)
    assert project["title"] == "nurture project file" and "project" in project["properties"]


def test_graph_names_the_journey(tmp_path: Path) -> None:
    out = nurture("graph", "examples/multilingual/scenarios/trial_onboarding.yaml").stdout
    assert out.startswith("---\ntitle: Trial onboarding\n---\nflowchart TD\n")
    assert "Enters: on list trial_2026; not while in group trial_programs" in out
    assert 's_await_workflow -->|"no workflow_created in 5d"| s_tips' in out


def test_send_test_renders_the_leads_language_and_sends_to_me(tmp_path: Path) -> None:
    project = own_project(tmp_path)
    db = f"sqlite:///{tmp_path / 'n.db'}"
    assert nurture("db", "upgrade", "--db", db).returncode == 0
    leads = tmp_path / "leads.csv"
    leads.write_text(
        "email,first_name,last_name,country,timezone,language\n"
        "taro@tokai.example,太郎,山田,JP,Asia/Tokyo,ja\nann@acme.example,Ann,Smith,US,America/Chicago,en\n",
        encoding="utf-8",
    )
    assert nurture("leads", "import", str(leads), "--db", db).returncode == 0
    with SmtpServer() as smtp:
        env = {"NURTURE_SMTP_PORT": str(smtp.port), "NURTURE_BASE_URL": "https://t.example"}
        args = ("send-test", "trial_welcome", "--project", str(project), "--db", db, "--to", "me@acme.example")
        result = nurture(*args, "--lead", "taro@tokai.example", env=env)
        assert result.returncode == 0, result.stderr
        assert "sent 'trial_welcome.ja' for taro@tokai.example to me@acme.example" in result.stdout
        result = nurture(*args, "--lead", "ann@acme.example", env=env)
        assert result.returncode == 0, result.stderr
        deadline = time.monotonic() + 30
        while len(smtp.messages) < 2 and time.monotonic() < deadline:
            time.sleep(0.05)  # waiting for the server to record both messages
        japanese, english = smtp.messages
    assert str(japanese["To"]) == "山田 太郎 <me@acme.example>"
    html = japanese.get_body(("html",)).get_content()  # type: ignore[union-attr]
    assert (
        "山田 太郎 様" in html and "https://acme-analytics.example/ja/" not in html and "https://t.example/c/" in html
    )
    assert "Your trial is ready" in english.get_body(("html",)).get_content()  # type: ignore[union-attr]
    missing = nurture(*args, "--lead", "nobody@x.example", env=env)
    assert missing.returncode == 1 and "no lead with email nobody@x.example" in missing.stderr


def test_status_and_leads_show_say_why_nothing_was_sent_in_the_leads_time(tmp_path: Path) -> None:
    project = tmp_path / "p"
    (project / "scenarios").mkdir(parents=True)
    (project / "email_templates").mkdir()
    (project / "email_templates" / "hello.html").write_text('<p>Hi</p><a href="{{ unsubscribe_url }}">x</a>')
    (project / "scenarios" / "hello.yaml").write_text(
        textwrap.dedent(
            """
            id: hello
            name: Hello
            send_window: {days: [mon], start: "09:00", end: "09:01", timezone: lead}
            steps:
              - {id: greet, type: send_email, template: hello, subject: Hi}
            """
        )
    )
    db = f"sqlite:///{tmp_path / 'n.db'}"
    assert nurture("db", "upgrade", "--db", db).returncode == 0
    leads = tmp_path / "leads.csv"
    leads.write_text("email,first_name,timezone\nhana@tokai.example,Hana,Asia/Tokyo\n", encoding="utf-8")
    assert nurture("leads", "import", str(leads), "--db", db).returncode == 0
    env = {"NURTURE_SMTP_PORT": "9", "NURTURE_TICK_SECONDS": "0.2", "NURTURE_SEND_SECONDS": "0.2"}
    daemon = subprocess.Popen(
        [sys.executable, "-m", "nurture", "run", "--project", str(project), "--db", db],
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**__import__("os").environ, **env},
    )
    try:
        deadline = time.monotonic() + 60
        shown = ""
        while time.monotonic() < deadline:  # waiting for the daemon to enrol the lead and defer its email
            shown = nurture(
                "leads",
                "show",
                "hana@tokai.example",
                "--db",
                db,
                env={
                    "NURTURE_SCENARIOS_DIR": str(project / "scenarios"),
                    "NURTURE_TEMPLATES_DIR": str(project / "email_templates"),
                },
            ).stdout
            if "waiting for the send window" in shown:
                break
            time.sleep(0.2)
    finally:
        daemon.send_signal(signal.SIGINT)
        out, err = daemon.communicate(timeout=60)
    assert f"reading scenarios from {(project / 'scenarios').resolve()}" in out
    assert "Traceback" not in err
    assert "waiting for the send window at 'greet'" in shown, shown
    assert "opens Mon" in shown and "09:00 JST" in shown
    status = nurture(
        "status",
        "--db",
        db,
        env={
            "NURTURE_SCENARIOS_DIR": str(project / "scenarios"),
            "NURTURE_TEMPLATES_DIR": str(project / "email_templates"),
        },
    )
    assert "next up (why nothing is sent for them yet):" in status.stdout
    assert "hana@tokai.example hello: waiting for the send window at 'greet'" in status.stdout


def test_lists_import_checks_the_name_and_every_row(tmp_path: Path) -> None:
    project = own_project(tmp_path)
    db = f"sqlite:///{tmp_path / 'n.db'}"
    assert nurture("db", "upgrade", "--db", db).returncode == 0
    members = tmp_path / "trial.csv"
    members.write_text("name,email\nTaro,taro@tokai.example\nBroken,not-an-address\n", encoding="utf-8")
    args = ("lists", "import", "trial_2026", str(members), "--project", str(project), "--db", db)
    bad = nurture(*args)
    assert bad.returncode == 1
    assert f"{members}:3: not an email address: 'not-an-address'" in bad.stderr and "nothing imported" in bad.stderr
    members.write_text("name,email\nTaro,taro@tokai.example\nHana,hana@tokai.example\n", encoding="utf-8")
    assert nurture(*args).stdout.strip() == "list 'trial_2026': 2 added"
    typo = nurture("lists", "import", "trial_2025", str(members), "--project", str(project), "--db", db)
    assert typo.returncode == 1 and "did you mean 'trial_2026'?" in typo.stderr
    assert "trial_2026: 2" in nurture("lists", "show", "--db", db).stdout


def test_demo_runs_ones_own_project_and_says_where_it_reads_from(tmp_path: Path) -> None:
    project = own_project(tmp_path)
    result = nurture(
        "demo",
        "--project",
        str(project),
        "--days",
        "2",
        "--seconds-per-day",
        "0",
        "--workdir",
        str(tmp_path / "d"),
        "--no-serve",
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert f"reading scenarios from {(project / 'scenarios').resolve()}" in " ".join(result.stdout.split())
    assert "scenario trial_onboarding: version" in result.stdout


def test_events_add_records_a_declared_custom_event_as_the_api_takes_it(tmp_path: Path) -> None:
    from nurture.clock import SystemClock
    from nurture.store import Store
    from nurture.store.db import make_engine
    from nurture.store.tables import EVENTS

    project = own_project(tmp_path)
    db = f"sqlite:///{tmp_path / 'n.db'}"
    assert nurture("db", "upgrade", "--db", db).returncode == 0
    leads = tmp_path / "leads.csv"
    leads.write_text("email,first_name\ntaro@tokai.example,Taro\n", encoding="utf-8")
    assert nurture("leads", "import", str(leads), "--db", db).returncode == 0
    env = {"NURTURE_SCENARIOS_DIR": str(project / "scenarios")}
    added = nurture("events", "add", "taro@tokai.example", "login", "--prop", "plan=pro", "--db", db, env=env)
    assert added.returncode == 0, added.stderr
    typo = nurture("events", "add", "taro@tokai.example", "logn", "--db", db, env=env)
    assert typo.returncode == 1 and "did you mean 'login'?" in typo.stderr
    store = Store(make_engine(db), SystemClock())
    with store.reading() as conn:
        [(kind, props)] = conn.execute(EVENTS.select().with_only_columns(EVENTS.c.type, EVENTS.c.props)).all()
    assert kind == "custom" and props == {"plan": "pro", "name": "login"}
