"""Events in → score → promotion → exactly one email and one signed webhook to sales → feedback."""

from __future__ import annotations

import asyncio
import json
import shutil
import threading
from collections.abc import Callable, Iterator
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path
from typing import Any, ClassVar

import pytest
from sqlalchemy import select

from nurture.clock import FakeClock
from nurture.daemon import Daemon
from nurture.jobs.notify import verify_signature
from nurture.lifecycle import feedback
from nurture.store.tables import ENROLMENTS, LEADS, Notification
from nurture.store.tables import LIFECYCLE_CHANGES as LC
from tests.integration.conftest import ROOT
from tests.integration.test_daemon import import_csv
from tests.smtp_server import SmtpServer, free_port

N = Notification.__table__  # type: ignore[attr-defined]


class Hooks(BaseHTTPRequestHandler):
    received: ClassVar[list[tuple[dict[str, str], bytes]]] = []
    failures: ClassVar[list[int]] = []  # statuses to answer before accepting

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        if Hooks.failures:
            self.send_response(Hooks.failures.pop(0))
            self.end_headers()
            return
        Hooks.received.append((dict(self.headers), body))
        self.send_response(204)
        self.end_headers()

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def webhook() -> Iterator[str]:
    Hooks.received = []
    Hooks.failures = []
    server = HTTPServer(("127.0.0.1", free_port()), Hooks)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}/hooks/nurture"
    server.shutdown()


LEADS_CSV = (
    "email,first_name,last_name,company,company_size,industry,job_title,country,timezone,source\n"
    "ada@nordwerk.example,Ada,Lang,Nordwerk,1500,Manufacturing,Head of Operations,DE,Europe/Berlin,whitepaper\n"
    "kim@tinyshop.example,Kim,Poor,Tiny Shop,5,Retail,Student,BR,America/Sao_Paulo,whitepaper\n"
)


def lead_id(daemon: Daemon, email: str) -> int:
    row = daemon.store.leads.by_email(email)
    assert row is not None
    return int(row.id)


def record(daemon: Daemon, email: str, type_: str, at: Any, **props: Any) -> None:
    lead = lead_id(daemon, email)
    with daemon.store.transaction() as conn:
        daemon.store.events.record(conn, lead, type_, at, props)


def test_hot_lead_is_promoted_and_sales_notified_once(
    db_url: str,
    make_daemon: Callable[..., Daemon],
    workspace: Path,
    smtp: SmtpServer,
    clock: FakeClock,
    tmp_path: Path,
    webhook: str,
) -> None:
    shutil.copy(ROOT / "scenarios" / "whitepaper_nurture.yaml", workspace / "scenarios")
    scoring = (ROOT / "scenarios" / "scoring.yaml").read_text().replace("webhook_url: null", f"webhook_url: {webhook}")
    (workspace / "scenarios" / "scoring.yaml").write_text(scoring)
    daemon = make_daemon(db_url, notify_sender="nurture <sales-alerts@acme.example>")
    import_csv(daemon, tmp_path, LEADS_CSV)

    async def scenario() -> None:
        await daemon.tick()
        now = clock.now()
        record(daemon, "ada@nordwerk.example", "webinar_attended", now - timedelta(hours=3))
        record(daemon, "ada@nordwerk.example", "inquiry", now - timedelta(hours=1), url="/contact")
        for day in range(4):  # a poor-fit visitor hammering the pricing page and asking too
            for n in range(15):
                record(
                    daemon,
                    "kim@tinyshop.example",
                    "page_view",
                    now - timedelta(days=day, minutes=n),
                    url="https://acme.example/pricing",
                )
        record(daemon, "kim@tinyshop.example", "inquiry", now - timedelta(minutes=30))
        clock.advance(timedelta(minutes=1))
        smtp.messages.clear()
        await daemon.tick()
        await daemon.tick()
        clock.advance(timedelta(hours=1))
        await daemon.tick()
        assert daemon.pool is not None
        await daemon.pool.close()

    asyncio.run(scenario())
    ada = daemon.store.leads.by_email("ada@nordwerk.example")
    kim = daemon.store.leads.by_email("kim@tinyshop.example")
    assert ada is not None and kim is not None
    assert (ada.lifecycle_stage, ada.grade, ada.owner) == ("hot", "A", "max.keller@acme-analytics.example")
    assert (kim.lifecycle_stage, kim.grade) == ("warm", "D")
    assert kim.score_engagement >= 60  # engaged enough for grade B, but a D can never be hot

    alerts = [m for m in smtp.messages if m["To"].addresses[0].addr_spec == "max.keller@acme-analytics.example"]
    assert len(alerts) == 1
    alert = alerts[0]
    assert alert["Subject"].startswith("Hot lead: Ada Lang, Nordwerk (A/")
    # Mail to a colleague has no list to leave: no List-Unsubscribe to a page that does not exist.
    assert alert["List-Unsubscribe"] is None and alert["List-Unsubscribe-Post"] is None
    body = alert.get_body(("plain",)).get_content()  # type: ignore[union-attr]
    assert "inquiry" in body and "webinar_attended" in body and "/leads/" in body

    assert len(Hooks.received) == 1
    headers, raw = Hooks.received[0]
    assert verify_signature("test-secret", headers["X-Nurture-Signature"], raw)
    assert not verify_signature("test-secret", headers["X-Nurture-Signature"], raw.replace(b"Ada", b"Eve"))
    payload = json.loads(raw)
    assert payload["event"] == "lead.hot" and payload["lead"]["email"] == "ada@nordwerk.example"
    assert payload["score"]["grade"] == "A" and payload["why"]

    with daemon.store.engine.connect() as conn:
        changes = conn.execute(
            select(LC.c.from_stage, LC.c.to_stage, LC.c.reason).where(LC.c.lead_id == ada.id).order_by(LC.c.id)
        ).all()
        enrolment = conn.execute(
            select(ENROLMENTS.c.status, ENROLMENTS.c.exit_reason).where(ENROLMENTS.c.lead_id == ada.id)
        ).one()
        statuses = sorted(conn.execute(select(N.c.kind, N.c.status)).all())
    assert [(c.from_stage, c.to_stage) for c in changes] == [("cold", "hot")]
    assert changes[0].reason.startswith("grade A with engagement")
    assert tuple(enrolment) == ("exited", "became_hot")
    assert statuses == [("email", "sent"), ("webhook", "sent")]

    now = clock.now()
    assert feedback(daemon.store, "ada@nordwerk.example", "accept", "call booked", "max", now) == (
        "hot",
        "accepted",
    )
    assert feedback(daemon.store, "ada@nordwerk.example", "recycle", "budget next year", "max", now) == (
        "accepted",
        "recycled",
    )
    recycled = daemon.store.leads.by_email("ada@nordwerk.example")
    assert recycled is not None and recycled.lifecycle_stage == "recycled" and recycled.score_engagement == 0


def test_recycled_lead_is_re_enrolled_in_reengagement_and_not_promoted_again_at_once(
    sqlite_url: str,
    make_daemon: Callable[..., Daemon],
    workspace: Path,
    smtp: SmtpServer,
    clock: FakeClock,
    tmp_path: Path,
) -> None:
    for name in ("reengagement.yaml", "scoring.yaml"):
        shutil.copy(ROOT / "scenarios" / name, workspace / "scenarios")
    daemon = make_daemon(sqlite_url)
    import_csv(daemon, tmp_path, LEADS_CSV)
    record(daemon, "ada@nordwerk.example", "inquiry", clock.now() - timedelta(hours=1))
    daemon.qualifier.run_once()
    assert daemon.store.leads.by_email("ada@nordwerk.example").lifecycle_stage == "hot"  # type: ignore[union-attr]
    feedback(daemon.store, "ada@nordwerk.example", "recycle", "not now", "sales", clock.now())
    clock.advance(timedelta(minutes=5))
    record(daemon, "ada@nordwerk.example", "open", clock.now())
    daemon.qualifier.run_once()
    daemon.enroller.run_once()
    ada = daemon.store.leads.by_email("ada@nordwerk.example")
    assert ada is not None and ada.lifecycle_stage == "recycled"
    with daemon.store.engine.connect() as conn:
        scenarios = conn.execute(select(ENROLMENTS.c.scenario_id).where(ENROLMENTS.c.lead_id == ada.id)).scalars().all()
    assert scenarios == ["reengagement"]


def test_feedback_refuses_unknown_leads_and_missing_reasons(
    sqlite_url: str, make_daemon: Callable[..., Daemon], clock: FakeClock, tmp_path: Path
) -> None:
    from nurture.errors import NurtureError

    daemon = make_daemon(sqlite_url)
    import_csv(daemon, tmp_path, LEADS_CSV)
    with pytest.raises(NurtureError, match="no lead with email"):
        feedback(daemon.store, "nobody@x.example", "accept", "x", "s", clock.now())
    with pytest.raises(NurtureError, match="needs a reason"):
        feedback(daemon.store, "ada@nordwerk.example", "accept", " ", "s", clock.now())
    with pytest.raises(NurtureError, match="cannot recycle a lead that is cold"):
        feedback(daemon.store, "ada@nordwerk.example", "recycle", "x", "s", clock.now())
    with daemon.store.engine.connect() as conn:
        assert (
            conn.execute(select(LEADS.c.lifecycle_stage).where(LEADS.c.email == "ada@nordwerk.example")).scalar()
            == "cold"
        )


def test_daily_digest_lists_each_owners_new_hot_leads_once(
    sqlite_url: str,
    make_daemon: Callable[..., Daemon],
    workspace: Path,
    smtp: SmtpServer,
    clock: FakeClock,
    tmp_path: Path,
) -> None:
    from nurture.jobs.notify import queue_digests

    shutil.copy(ROOT / "scenarios" / "scoring.yaml", workspace / "scenarios")
    daemon = make_daemon(sqlite_url)
    import_csv(daemon, tmp_path, LEADS_CSV)
    record(daemon, "ada@nordwerk.example", "inquiry", clock.now() - timedelta(hours=1))
    daemon.qualifier.run_once()
    assert daemon.catalog.scoring is not None
    assert queue_digests(daemon.store, daemon.catalog.scoring, clock.now()) == 1
    assert queue_digests(daemon.store, daemon.catalog.scoring, clock.now()) == 0

    async def drain() -> None:
        await daemon.notify()
        assert daemon.pool is not None
        await daemon.pool.close()

    asyncio.run(drain())
    digests = [m for m in smtp.messages if m["Subject"].startswith("Daily digest")]
    assert len(digests) == 1
    assert digests[0]["To"].addresses[0].addr_spec == "max.keller@acme-analytics.example"
    assert "ada@nordwerk.example" in digests[0].get_body(("plain",)).get_content()  # type: ignore[union-attr]


def test_failed_webhook_is_retried_and_delivered_once(
    sqlite_url: str,
    make_daemon: Callable[..., Daemon],
    workspace: Path,
    smtp: SmtpServer,
    clock: FakeClock,
    tmp_path: Path,
    webhook: str,
) -> None:
    scoring = (ROOT / "scenarios" / "scoring.yaml").read_text().replace("webhook_url: null", f"webhook_url: {webhook}")
    (workspace / "scenarios" / "scoring.yaml").write_text(scoring)
    daemon = make_daemon(sqlite_url)
    import_csv(daemon, tmp_path, LEADS_CSV)
    record(daemon, "ada@nordwerk.example", "inquiry", clock.now() - timedelta(hours=1))
    Hooks.failures = [503]

    async def scenario() -> None:
        await daemon.tick()
        with daemon.store.reading() as conn:
            hook = conn.execute(select(N.c.status, N.c.attempts, N.c.last_error).where(N.c.kind == "webhook")).one()
        assert (hook.status, hook.attempts) == ("pending", 1) and "503" in hook.last_error
        clock.advance(timedelta(seconds=61))
        await daemon.tick()
        await daemon.tick()
        assert daemon.pool is not None
        await daemon.pool.close()

    asyncio.run(scenario())
    assert len(Hooks.received) == 1
    assert Hooks.received[0][0]["X-Nurture-Delivery"].endswith(":webhook")


def test_scenario_score_adjustments_survive_rescoring(
    sqlite_url: str,
    make_daemon: Callable[..., Daemon],
    workspace: Path,
    clock: FakeClock,
    tmp_path: Path,
) -> None:
    shutil.copy(ROOT / "scenarios" / "scoring.yaml", workspace / "scenarios")
    daemon = make_daemon(sqlite_url)
    import_csv(daemon, tmp_path, LEADS_CSV)
    with daemon.store.transaction() as conn:
        daemon.store.leads.change(conn, lead_id(daemon, "ada@nordwerk.example"), {"score_delta": 10})
    record(daemon, "ada@nordwerk.example", "click", clock.now() - timedelta(minutes=5), link="x")
    daemon.qualifier.run_once()
    ada = daemon.store.leads.by_email("ada@nordwerk.example")
    assert ada is not None and ada.score_engagement == 15  # 5 for the click, 10 added by a scenario


def test_notify_sales_step_emails_the_owner_once(
    db_url: str,
    make_daemon: Callable[..., Daemon],
    workspace: Path,
    smtp: SmtpServer,
    clock: FakeClock,
    tmp_path: Path,
) -> None:
    for name in ("seminar_followup_ja.yaml", "scoring.yaml"):
        shutil.copy(ROOT / "scenarios" / name, workspace / "scenarios")
    daemon = make_daemon(db_url)
    import_csv(
        daemon,
        tmp_path,
        "email,first_name,last_name,company,company_size,industry,job_title,country,timezone,source\n"
        "hanako@tokai.example,花子,鈴木,東海精機,800,Manufacturing,製造部 部長,JP,Asia/Tokyo,seminar\n",
    )
    clock.set(clock.now().replace(hour=1))  # 10:00 in Tokyo

    async def scenario() -> None:
        await daemon.tick()  # thanks
        clock.advance(timedelta(days=3))
        await daemon.tick()  # materials
        record(daemon, "hanako@tokai.example", "download", clock.now() + timedelta(hours=1), asset="slides")
        clock.advance(timedelta(hours=2))
        for _ in range(3):
            await daemon.tick()  # consultation invite, branch on grade A, notify_sales
        assert daemon.pool is not None
        await daemon.pool.close()

    asyncio.run(scenario())
    to_owner = [m for m in smtp.messages if m["To"].addresses[0].addr_spec == "erika.sato@acme-analytics.example"]
    assert [m["Subject"] for m in to_owner] == ["Handed over by 'セミナー参加御礼フォロー': 花子 鈴木, 東海精機"]
    body = to_owner[0].get_body(("plain",)).get_content()  # type: ignore[union-attr]
    assert "セミナー参加後に資料をダウンロード（適合度 A/B）" in body and "download" in body


def test_rescoring_switches_threads_more_often_only_while_it_runs(
    db_url: str,
    make_daemon: Callable[..., Daemon],
    workspace: Path,
    clock: FakeClock,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """On PostgreSQL the reading and writing threads get the interpreter back soon after each
    reply (see `Qualifier._rescore`); the process's own setting is back afterwards, also when
    scoring fails."""
    import sys

    import nurture.jobs.qualify as qualify_job

    shutil.copy(ROOT / "scenarios" / "scoring.yaml", workspace / "scenarios")
    daemon = make_daemon(db_url)
    import_csv(daemon, tmp_path, LEADS_CSV)
    record(daemon, "ada@nordwerk.example", "inquiry", clock.now() - timedelta(hours=1))
    before = sys.getswitchinterval()
    seen: list[float] = []
    score = qualify_job.Qualifier._score

    def scoring(self: Any, *args: Any) -> Any:
        seen.append(sys.getswitchinterval())
        return score(self, *args)

    monkeypatch.setattr(qualify_job.Qualifier, "_score", scoring)
    assert daemon.qualifier.run_once(everyone=True).scored == 2
    expected = min(before, qualify_job.SWITCH_INTERVAL) if daemon.store.postgres else before
    assert seen and set(seen) == {expected}
    assert sys.getswitchinterval() == before

    def failing(self: Any, *args: Any) -> Any:
        raise RuntimeError("scoring failed")

    monkeypatch.setattr(qualify_job.Qualifier, "_score", failing)
    with pytest.raises(RuntimeError, match="scoring failed"):
        daemon.qualifier.run_once(everyone=True)
    assert sys.getswitchinterval() == before


def test_overlapping_runs_leave_the_process_its_own_switch_interval() -> None:
    """Two runs on different databases in one process: the first to finish keeps the quick
    switches for the other; the last puts the process's own interval back."""
    import sys

    from nurture.jobs.qualify import SWITCH_INTERVAL, _quick_switches

    before = sys.getswitchinterval()
    first, second = _quick_switches(), _quick_switches()
    first.__enter__()
    second.__enter__()
    first.__exit__(None, None, None)
    assert sys.getswitchinterval() == min(before, SWITCH_INTERVAL)
    second.__exit__(None, None, None)
    assert sys.getswitchinterval() == before
