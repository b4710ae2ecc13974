"""The daemon against real SQLite and PostgreSQL and a real SMTP server."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select, update

from nurture.clock import FakeClock
from nurture.daemon import Daemon
from nurture.leads import import_leads
from nurture.store.db import make_engine
from nurture.store.sends import SendMarks
from nurture.store.tables import ENROLMENTS, LEADS, SENDS, SUPPRESSIONS
from tests.integration.conftest import copy_samples, ticks, write_scenario
from tests.smtp_server import SmtpServer

TWO_STEP = """
id: two_step
name: Two step
entry:
  when: 'lead.source == "web"'
exit_when: [unsubscribed, bounced]
lead_fields: [whitepaper_title]
send_window:
  days: [mon, tue, wed, thu, fri]
  start: "08:00"
  end: "18:00"
from: "Acme <hello@acme.example>"
steps:
  - id: hello
    type: send_email
    template: welcome
    subject: "Hello {{ lead.first_name }}"
  - id: pause
    type: wait
    duration: 2d
  - id: follow_up
    type: send_email
    template: case_study
    subject: "Case study for {{ lead.company }}"
"""

LEADS_CSV = """email,first_name,last_name,company,timezone,source
ann@alpha.example,Ann,Alpha,Alpha AG,Europe/Berlin,web
bob@beta.example,Bob,Beta,Beta Inc,America/New_York,web
cho@gamma.example,Cho,Gamma,Gamma KK,Asia/Tokyo,web
dee@delta.example,Dee,Delta,Delta BV,Europe/Amsterdam,fair
"""


def import_csv(daemon: Daemon, tmp_path: Path, text: str = LEADS_CSV) -> None:
    path = tmp_path / "leads.csv"
    path.write_text(text, encoding="utf-8")
    report = import_leads(daemon.store, path)
    assert report.problems == []


def run(coro: object) -> None:
    asyncio.run(coro)  # type: ignore[arg-type]


def import_web_leads(daemon: Daemon, tmp_path: Path, addresses: list[str]) -> None:
    import_csv(daemon, tmp_path, "email,first_name,timezone,source\n" + "".join(f"{a},X,UTC,web\n" for a in addresses))


class WriteLockOnFirstAccept:
    """Another writer that takes SQLite's write lock (BEGIN IMMEDIATE) the moment the SMTP
    server accepts its first message, and holds it until `release` is set."""

    def __init__(self, url: str, smtp: SmtpServer) -> None:
        self.engine = make_engine(url)
        self.locked, self.release = threading.Event(), threading.Event()
        self.released_in_time: list[bool] = []
        accept = smtp.recorder.handle_DATA

        async def lock_then_accept(server: Any, session: Any, envelope: Any) -> str:
            if not self.locked.is_set():
                threading.Thread(target=self._hold).start()
                assert self.locked.wait(timeout=5)
            return await accept(server, session, envelope)

        smtp.recorder.handle_DATA = lock_then_accept  # type: ignore[method-assign]

    def _hold(self) -> None:
        with self.engine.begin():
            self.locked.set()
            self.released_in_time.append(self.release.wait(timeout=20))


def marker_waits_for_the_lock(monkeypatch: pytest.MonkeyPatch) -> threading.Event:
    """Set once the sender's marker, finding the database busy, starts waiting for the write
    lock: the moment a test knows the sender has met another writer's lock."""
    waiting = threading.Event()
    wait = SendMarks.wait

    def observed(self: SendMarks, *args: Any) -> None:
        waiting.set()
        wait(self, *args)

    monkeypatch.setattr(SendMarks, "wait", observed)
    return waiting


async def until(condition: Callable[[], bool], what: str, timeout: float = 60) -> None:
    """Wait on the event loop until `condition()` holds; fail after `timeout` naming `what`."""
    deadline = asyncio.get_running_loop().time() + timeout
    while not condition():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"waited {timeout}s for {what}")
        await asyncio.sleep(0.01)


def sends_by_status(daemon: Daemon) -> dict[str, int]:
    with daemon.store.engine.connect() as conn:
        return dict(conn.execute(select(SENDS.c.status, func.count()).group_by(SENDS.c.status)).all())  # type: ignore[arg-type]


def test_leads_are_enrolled_and_each_email_arrives_once(
    db_url: str,
    make_daemon: Callable[..., Daemon],
    workspace: Path,
    smtp: SmtpServer,
    clock: FakeClock,
    tmp_path: Path,
) -> None:
    write_scenario(workspace, TWO_STEP)
    daemon = make_daemon(db_url)
    import_csv(daemon, tmp_path)

    async def scenario() -> None:
        await daemon.tick()
        # Monday 09:00 UTC: inside the window in Berlin (10:00), not yet in New York (04:00) or
        # already past it in Tokyo (18:00).
        assert sorted(smtp.recorder.by_recipient()) == ["ann@alpha.example"]
        for _ in range(3):
            await daemon.tick()
        assert len(smtp.messages) == 1
        for _hours in range(1, 24 * 4):
            clock.set(clock.now().replace(minute=0) + timedelta(hours=1))
            await daemon.tick()
        await daemon.pool.close()  # type: ignore[union-attr]

    run(scenario())
    received = smtp.recorder.by_recipient()
    assert sorted(received) == ["ann@alpha.example", "bob@beta.example", "cho@gamma.example"]
    for address, messages in received.items():
        assert [m["Subject"].split()[0] for m in messages] == ["Hello", "Case"], address
    assert len({m["Message-ID"] for m in smtp.messages}) == 6
    assert sends_by_status(daemon) == {"sent": 6}
    with daemon.store.engine.connect() as conn:
        statuses = conn.execute(select(ENROLMENTS.c.status, func.count()).group_by(ENROLMENTS.c.status)).all()
    assert dict(statuses) == {"completed": 3}  # type: ignore[arg-type]


def test_message_headers_parts_and_encodings(
    db_url: str,
    make_daemon: Callable[..., Daemon],
    workspace: Path,
    smtp: SmtpServer,
    clock: FakeClock,
    tmp_path: Path,
) -> None:
    copy_samples(workspace)
    daemon = make_daemon(db_url)
    import_csv(
        daemon,
        tmp_path,
        "email,first_name,last_name,company,country,timezone,source,seminar_name\n"
        "hanako@tokai.example,花子,鈴木,東海精機株式会社,JP,Asia/Tokyo,seminar,データ活用セミナー\n",
    )

    clock.set(clock.now().replace(hour=1))  # 10:00 in Tokyo
    run(ticks(daemon, clock))
    assert len(smtp.messages) == 1
    message = smtp.messages[0]
    assert message["Subject"] == "【御礼】データ活用セミナーへのご参加ありがとうございました"
    raw_subject = message.get_all("Subject")
    assert raw_subject is not None
    assert str(message["From"]) == "Acme アナリティクス <seminar@acme-analytics.example>"
    assert message["To"].addresses[0].addr_spec == "hanako@tokai.example"
    assert message["Message-ID"].endswith("@mail.example>")
    unsubscribe = str(message["List-Unsubscribe"]).strip()  # folded: the header is long
    assert unsubscribe.startswith("<https://t.example/u/")
    assert message["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert message.get_content_type() == "multipart/alternative"
    parts = {part.get_content_type(): part for part in message.iter_parts()}
    assert set(parts) == {"text/plain", "text/html"}
    assert parts["text/plain"].get_content_charset() == "utf-8"
    assert "鈴木 様" in parts["text/plain"].get_content()
    html = parts["text/html"].get_content()
    assert "先日は「データ活用セミナー」にご参加いただき" in html
    assert "/o/" not in html  # too little text to carry an open pixel without reading as image-only
    assert str(message["List-Id"]).endswith("<seminar-followup-ja.mail.example>")
    assert 'href="https://t.example/u/' in html  # unsubscribe link in the footer


def test_lead_data_cannot_inject_headers_and_is_escaped_in_html(
    sqlite_url: str,
    make_daemon: Callable[..., Daemon],
    workspace: Path,
    smtp: SmtpServer,
    clock: FakeClock,
    tmp_path: Path,
) -> None:
    write_scenario(workspace, TWO_STEP)
    daemon = make_daemon(sqlite_url)
    import_csv(daemon, tmp_path)
    with daemon.store.transaction() as conn:
        conn.execute(
            update(LEADS)
            .where(LEADS.c.email == "ann@alpha.example")
            .values(first_name="Ann\r\nBcc: victim@evil.example", company="<script>alert(1)</script>")
        )

    run(ticks(daemon, clock))
    message = smtp.messages[0]
    assert message["Bcc"] is None
    assert "victim@evil.example" not in [str(a.addr_spec) for a in message["To"].addresses]
    assert message["Subject"] == "Hello Ann Bcc: victim@evil.example"
    html = message.get_body(("html",)).get_content()  # type: ignore[union-attr]
    assert "<script>" not in html


def test_unsubscribed_lead_gets_nothing_more(
    db_url: str,
    make_daemon: Callable[..., Daemon],
    workspace: Path,
    smtp: SmtpServer,
    clock: FakeClock,
    tmp_path: Path,
) -> None:
    write_scenario(workspace, TWO_STEP)
    daemon = make_daemon(db_url)
    import_csv(daemon, tmp_path)

    async def scenario() -> None:
        await daemon.tick()
        with daemon.store.transaction() as conn:
            lead_id = conn.execute(select(LEADS.c.id).where(LEADS.c.email == "ann@alpha.example")).scalar_one()
            daemon.store.events.record(conn, lead_id, "unsubscribe", clock.now(), {}, "u-1")
        clock.advance(timedelta(days=3))
        await daemon.tick()
        await daemon.pool.close()  # type: ignore[union-attr]

    run(scenario())
    assert [m["Subject"] for m in smtp.recorder.by_recipient()["ann@alpha.example"]] == ["Hello Ann"]
    with daemon.store.engine.connect() as conn:
        row = conn.execute(
            select(ENROLMENTS.c.status, ENROLMENTS.c.exit_reason)
            .join(LEADS, LEADS.c.id == ENROLMENTS.c.lead_id)
            .where(LEADS.c.email == "ann@alpha.example")
        ).one()
    assert tuple(row) == ("exited", "unsubscribed")


def test_restart_resumes_where_the_previous_daemon_stopped(
    db_url: str,
    make_daemon: Callable[..., Daemon],
    workspace: Path,
    smtp: SmtpServer,
    clock: FakeClock,
    tmp_path: Path,
) -> None:
    write_scenario(workspace, TWO_STEP)
    first = make_daemon(db_url)
    import_csv(first, tmp_path)

    run(ticks(first, clock))
    assert len(smtp.messages) == 1
    clock.advance(timedelta(days=2, hours=1))
    second = make_daemon(db_url, worker_id="w2")

    run(ticks(second, clock))
    ann = [m["Subject"] for m in smtp.recorder.by_recipient()["ann@alpha.example"]]
    assert ann == ["Hello Ann", "Case study for Alpha AG"]


def test_frequency_cap_across_scenarios_defers(
    sqlite_url: str,
    make_daemon: Callable[..., Daemon],
    workspace: Path,
    smtp: SmtpServer,
    clock: FakeClock,
    tmp_path: Path,
) -> None:
    write_scenario(workspace, TWO_STEP)
    write_scenario(workspace, TWO_STEP.replace("id: two_step", "id: second").replace("Hello", "Hi"), "b.yaml")
    daemon = make_daemon(sqlite_url, frequency_cap=1, frequency_period_days=1)
    import_csv(daemon, tmp_path, "email,first_name,company,timezone,source\nann@alpha.example,Ann,A,UTC,web\n")

    async def scenario() -> None:
        await daemon.tick()
        assert len(smtp.messages) == 1
        clock.advance(timedelta(hours=12))
        await daemon.tick()
        assert len(smtp.messages) == 1
        clock.advance(timedelta(hours=13))
        await daemon.tick()
        await daemon.pool.close()  # type: ignore[union-attr]

    run(scenario())
    assert sorted(m["Subject"] for m in smtp.messages) == ["Hello Ann", "Hi Ann"]


def test_changed_scenario_is_a_new_version_and_enrolled_leads_finish_the_old_one(
    db_url: str,
    make_daemon: Callable[..., Daemon],
    workspace: Path,
    smtp: SmtpServer,
    clock: FakeClock,
    tmp_path: Path,
) -> None:
    path = write_scenario(workspace, TWO_STEP)
    daemon = make_daemon(db_url)
    import_csv(daemon, tmp_path, "email,first_name,company,timezone,source\nann@alpha.example,Ann,A,UTC,web\n")

    async def scenario() -> None:
        await daemon.tick()
        old = daemon.catalog.current["two_step"].version
        path.write_text(path.read_text().replace("Case study for", "New subject for"))
        await daemon.housekeeping()
        import_csv(daemon, tmp_path, "email,first_name,company,timezone,source\nbob@beta.example,Bob,B,UTC,web\n")
        await daemon.tick()
        new = daemon.catalog.current["two_step"].version
        # The operator sees Ann still waiting on the old version, Bob on the new one.
        assert daemon.store.reports.status()["enrolments"] == [
            ("two_step", v, current, "active", "pause", 1) for v, current in sorted([(old, 0), (new, 1)])
        ]
        clock.advance(timedelta(days=2, hours=1))
        await daemon.tick()
        await daemon.pool.close()  # type: ignore[union-attr]

    run(scenario())
    received = smtp.recorder.by_recipient()
    assert received["ann@alpha.example"][1]["Subject"] == "Case study for A"
    assert received["bob@beta.example"][1]["Subject"] == "New subject for B"
    with daemon.store.engine.connect() as conn:
        versions = conn.execute(select(func.count(func.distinct(ENROLMENTS.c.scenario_version)))).scalar()
    assert versions == 2


def test_migration_map_moves_enrolled_leads_to_the_new_version(
    sqlite_url: str,
    make_daemon: Callable[..., Daemon],
    workspace: Path,
    smtp: SmtpServer,
    clock: FakeClock,
    tmp_path: Path,
) -> None:
    path = write_scenario(workspace, TWO_STEP)
    daemon = make_daemon(sqlite_url)
    import_csv(daemon, tmp_path, "email,first_name,company,timezone,source\nann@alpha.example,Ann,A,UTC,web\n")

    async def scenario() -> None:
        await daemon.tick()
        new = TWO_STEP.replace("duration: 2d", "duration: 1d").replace("  - id: pause", "  - id: short_pause")
        path.write_text(new.replace("steps:", "migrate:\n  pause: short_pause\nsteps:"))
        await daemon.housekeeping()
        clock.advance(timedelta(days=1, hours=1))
        await daemon.tick()
        await daemon.pool.close()  # type: ignore[union-attr]

    run(scenario())
    assert [m["Subject"] for m in smtp.messages] == ["Hello Ann", "Case study for A"]


def test_leads_import_reports_bad_rows_and_keeps_good_ones(
    sqlite_url: str, make_daemon: Callable[..., Daemon], tmp_path: Path
) -> None:
    daemon = make_daemon(sqlite_url)
    path = tmp_path / "leads.csv"
    path.write_text(
        "email,first_name,company_size,country,timezone,favourite_colour\n"
        "ok@a.example,Ok,10,DE,Europe/Berlin,blue\n"
        "not-an-email,Bad,10,DE,Europe/Berlin,red\n"
        "size@a.example,Size,-5,DE,Europe/Berlin,\n"
        "zone@a.example,Zone,5,DE,Mars/Olympus,\n"
        '"multi@a.example","Multi\nLine",5,DE,,\n'
        "ok2@a.example,Ok2,,jp,,\n",
        encoding="utf-8",
    )
    report = import_leads(daemon.store, path)
    problems = [str(p).replace(str(path), "FILE") for p in report.problems]
    assert problems[0] == "FILE:3: email: not a valid email address: 'not-an-email'"
    assert problems[1].startswith("FILE:4: company_size: Input should be greater than or equal to 0")
    assert problems[2] == "FILE:5: timezone: unknown time zone 'Mars/Olympus': use an IANA name like 'Europe/Berlin'"
    assert problems[3] == "FILE:6: first_name: must be one line of text (no control characters)"
    assert (report.created, report.updated) == (2, 0)
    lead = daemon.store.leads.by_email("ok@a.example")
    assert lead is not None and lead.custom == {"favourite_colour": "blue"}
    ok2 = daemon.store.leads.by_email("ok2@a.example")
    assert ok2 is not None and ok2.country == "JP"
    path.write_text("email,company\nOK@a.example,Renamed\n")
    again = import_leads(daemon.store, path)
    assert (again.created, again.updated) == (0, 1)
    renamed = daemon.store.leads.by_email("ok@a.example")
    assert renamed is not None and renamed.company == "Renamed" and renamed.first_name == "Ok"
    with daemon.store.engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(LEADS)).scalar() == 2
        assert conn.execute(select(func.count()).select_from(SUPPRESSIONS)).scalar() == 0


def test_json_import_names_lines(sqlite_url: str, make_daemon: Callable[..., Daemon], tmp_path: Path) -> None:
    daemon = make_daemon(sqlite_url)
    path = tmp_path / "leads.json"
    path.write_text(
        '[\n  {"email": "a@a.example", "company_size": 5},\n  {"email": "b@b.example",\n   "company_size": "many"}\n]\n'
    )
    report = import_leads(daemon.store, path)
    assert [str(p).replace(str(path), "FILE") for p in report.problems] == [
        "FILE:3: company_size: Input should be a valid integer, unable to parse string as an integer"
    ]
    assert report.created == 1


def test_render_processes_send_the_same_messages_as_rendering_in_the_sender(
    make_daemon: Callable[..., Daemon],
    workspace: Path,
    smtp: SmtpServer,
    clock: FakeClock,
    tmp_path: Path,
) -> None:
    write_scenario(workspace, TWO_STEP)
    received: dict[int, list[bytes]] = {}
    for processes in (0, 1):
        smtp.messages.clear()
        daemon = make_daemon(f"sqlite:///{tmp_path / f'r{processes}.db'}", render_processes=processes)
        import_csv(daemon, tmp_path)

        async def scenario(d: Daemon = daemon) -> None:
            await d.tick()
            assert d.pool is not None and d.outbox is not None
            await d.pool.close()
            await d.outbox.close()

        run(scenario())
        received[processes] = sorted(m.as_bytes() for m in smtp.messages)
    assert len(received[0]) == 1  # Ann, in Berlin's window
    assert received[1] == received[0]


def test_a_busy_sqlite_database_does_not_stall_the_sender(
    make_daemon: Callable[..., Daemon],
    workspace: Path,
    smtp: SmtpServer,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Another writer takes SQLite's write lock the moment the server accepts the email, so
    the `sent` mark meets a busy database. It must wait off the event loop: the loop stays
    free to run the task below, which is what lets the other writer finish."""
    write_scenario(workspace, TWO_STEP)
    url = f"sqlite:///{tmp_path / 'busy.db'}"
    daemon = make_daemon(url)
    import_csv(daemon, tmp_path)
    other_writer = WriteLockOnFirstAccept(url, smtp)
    waiting = marker_waits_for_the_lock(monkeypatch)

    async def let_the_other_writer_finish() -> None:
        await until(waiting.is_set, "the sender's mark to meet the other writer's lock")
        other_writer.release.set()

    async def scenario() -> None:
        await asyncio.gather(daemon.tick(), let_the_other_writer_finish())
        assert daemon.pool is not None
        await daemon.pool.close()

    run(scenario())
    assert other_writer.released_in_time == [True]
    assert len(smtp.messages) == 1
    assert sends_by_status(daemon) == {"sent": 1}


ALWAYS_OPEN = """
id: always_open
name: Always open
entry:
  when: 'lead.source == "web"'
lead_fields: [whitepaper_title]
send_window:
  days: [mon, tue, wed, thu, fri, sat, sun]
  start: "00:00"
  end: "23:59"
steps:
  - id: hello
    type: send_email
    template: welcome
    subject: "Hello {{ lead.first_name }}"
"""


def test_a_connection_holds_back_its_next_body_until_the_last_message_is_marked_sent(
    make_daemon: Callable[..., Daemon],
    workspace: Path,
    smtp: SmtpServer,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The crash window stays one message per connection: while the mark of an accepted
    message cannot be written (another writer holds SQLite's write lock), the connection
    may offer the next envelope but must not send the next body."""
    write_scenario(workspace, ALWAYS_OPEN)
    url = f"sqlite:///{tmp_path / 'held.db'}"
    daemon = make_daemon(url, smtp_pool_size=1)
    leads = ["ann@alpha.example", "bob@beta.example", "cho@gamma.example"]
    import_web_leads(daemon, tmp_path, leads)
    other_writer = WriteLockOnFirstAccept(url, smtp)
    accepted_while_held: list[int] = []

    waiting = marker_waits_for_the_lock(monkeypatch)

    async def release_once_the_next_envelope_is_in() -> None:
        # A sender that did not hold its next body back would only ask for the mark at the
        # end of its batch, after every body went out.
        await until(
            lambda: len(smtp.recorder.rcpts) >= 2 and waiting.is_set(),
            "the next envelope and the mark waiting for the other writer's lock",
        )
        accepted_while_held.append(len(smtp.messages))
        other_writer.release.set()

    async def scenario() -> None:
        await asyncio.gather(daemon.tick(), release_once_the_next_envelope_is_in())
        assert daemon.pool is not None
        await daemon.pool.close()

    run(scenario())
    assert accepted_while_held == [1]
    assert sorted(m["To"].addresses[0].addr_spec for m in smtp.messages) == leads
    assert sends_by_status(daemon) == {"sent": 3}


def test_every_message_declares_its_size_to_the_server(
    make_daemon: Callable[..., Daemon], workspace: Path, smtp: SmtpServer, tmp_path: Path
) -> None:
    """RFC 1870: MAIL FROM carries SIZE, from the first message on a fresh connection on."""
    write_scenario(workspace, ALWAYS_OPEN)
    daemon = make_daemon(f"sqlite:///{tmp_path / 'size.db'}", smtp_pool_size=1)
    import_web_leads(daemon, tmp_path, ["ann@alpha.example", "bob@beta.example"])

    async def scenario() -> None:
        await daemon.tick()
        assert daemon.pool is not None
        await daemon.pool.close()

    run(scenario())
    assert len(smtp.recorder.mail_options) == 2
    for options, message in zip(smtp.recorder.mail_options, smtp.messages, strict=True):
        (size,) = [int(o.split("=")[1]) for o in options if o.upper().startswith("SIZE=")]
        assert abs(size - len(message.as_bytes())) < 200  # the bytes sent, as the server re-reads them


BY_INTEREST = """
id: by_interest
name: By interest
entry:
  when: 'lead.source == "web"'
steps:
  - id: settle
    type: wait
    duration: 1h
  - id: route
    type: branch
    cases:
      - if: 'events.count("page_view") >= 2'
        goto: keen
    else: casual
  - id: keen
    type: update
    add_tags: [keen]
    next: done
  - id: casual
    type: update
    add_tags: [casual]
  - id: done
    type: exit
"""


def test_a_scenario_without_emails_or_waits_for_events_still_branches_on_events(
    db_url: str,
    make_daemon: Callable[..., Daemon],
    workspace: Path,
    clock: FakeClock,
    tmp_path: Path,
) -> None:
    """The daemon loads events only for scenarios that can look at them; a condition about
    events is enough."""
    write_scenario(workspace, BY_INTEREST)
    daemon = make_daemon(db_url)
    import_csv(daemon, tmp_path)

    async def scenario() -> None:
        await daemon.tick()
        with daemon.store.transaction() as conn:
            ann = conn.execute(select(LEADS.c.id).where(LEADS.c.email == "ann@alpha.example")).scalar_one()
            for n in range(2):
                daemon.store.events.record(conn, ann, "page_view", clock.now(), {"url": f"/p{n}"}, f"pv-{n}")
        clock.advance(timedelta(hours=2))
        await daemon.tick()

    run(scenario())
    with daemon.store.engine.connect() as conn:
        tags = dict(conn.execute(select(LEADS.c.email, LEADS.c.tags).where(LEADS.c.source == "web")).all())
    assert tags == {
        "ann@alpha.example": ["keen"],
        "bob@beta.example": ["casual"],
        "cho@gamma.example": ["casual"],
    }
