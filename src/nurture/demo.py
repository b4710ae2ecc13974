"""`nurture demo`: the whole product on one machine with nothing configured.

Creates an SQLite database, imports the sample leads, starts an in-process SMTP server
(aiosmtpd) that writes every message to a Maildir, and runs the real daemon's jobs round
after round through the sample scenarios, each round a simulated hour later (rounds in
which nothing is due are skipped). The people around the product are played by
`nurture.demo_roles` on a seeded model: readers open, click, browse, register, attend and
unsubscribe, some mailboxes refuse mail at the SMTP capture, a few people complain, sales
owners accept, reject, recycle and win deals. At the end: a summary (also as
`summary.json`), the outcomes file `nurture score learn` reads, a dashboard user, and
(unless told not to) the dashboard serving the result.
"""

from __future__ import annotations

import asyncio
import json
import mailbox
import shutil
import socket
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from aiosmtpd.controller import Controller
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn
from rich.table import Table

from nurture.analytics.experiments import experiment_reports, send_time_lifts
from nurture.clock import FakeClock
from nurture.config import Settings
from nurture.daemon import Daemon, Totals
from nurture.demo_roles import (
    DEFAULT_SEED,
    Agenda,
    CaptureMailbox,
    Complaints,
    Marketing,
    People,
    Readers,
    Sales,
    Tally,
    write_outcomes,
)
from nurture.errors import NurtureError
from nurture.leads import import_leads
from nurture.scaffold import samples_root
from nurture.store import Store
from nurture.store.db import make_engine
from nurture.store.migrate import upgrade
from nurture.vocabulary import Stage

START = datetime(2026, 3, 2, 6, 0, tzinfo=UTC)  # a Monday morning in Europe
DEMO_USER, DEMO_PASSWORD = "demo", "demo-password"
HOUR = timedelta(hours=1)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def port_free(port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


@dataclass
class DemoResult:
    database: Path
    maildir: Path
    delivered: int
    summary: dict[str, Any]
    settings: Settings
    end: datetime


def run_demo(
    root: Path,
    workdir: Path,
    days: int = 21,
    seconds_per_day: float = 1.0,
    console: Console | None = None,
    leads: Path | None = None,
    seed: int = DEFAULT_SEED,
    port: int = 8025,
) -> DemoResult:
    """The daemon on `root`'s scenarios/ and email_templates/ with `leads` (default: the
    checkout's sample leads) on simulated time, mail captured into `workdir`, the people
    of `nurture.demo_roles` (seeded with `seed`) answering. `port` is where the dashboard
    will serve, so the links in the emails lead there."""
    console = console or Console()
    scenarios, templates = root / "scenarios", root / "email_templates"
    leads_file = leads or root / "examples" / "leads.csv"
    if not leads_file.exists() and leads is None:
        leads_file = samples_root() / "examples" / "leads.csv"
    for needed in (scenarios, templates, leads_file):
        if not needed.exists():
            raise NurtureError(f"nurture demo: {needed} not found (give --project DIR)")
    if workdir.exists():
        shutil.rmtree(workdir)
    workdir.mkdir(parents=True)
    maildir = workdir / "maildir"
    database = workdir / "nurture.db"
    smtp_port = free_port()
    settings = Settings(
        database_url=f"sqlite:///{database}",
        scenarios_dir=scenarios,
        templates_dir=templates,
        smtp_host="127.0.0.1",
        smtp_port=smtp_port,
        smtp_pool_size=4,
        base_url=f"http://127.0.0.1:{port}",
        secret_key="demo-secret",
        worker_id="demo",
        sender_name="Acme Analytics",
        sender_postal_address="100 Main Street, Boston, MA 02110",
        bounce_domain="bounces.acme-analytics.example",
        marketing_email="marketing@acme-analytics.example",
    )
    # Simulated time moves an hour per round of the daemon's jobs, and only once the round
    # and everything the people do in it are done, so the demo tells the same story on a
    # fast machine and a slow one; rounds are paced to `seconds_per_day` for the viewer.
    clock = FakeClock(START)
    engine = make_engine(settings.database_url)
    upgrade(engine)
    store = Store(engine, clock)
    report = import_leads(store, leads_file)
    console.print(
        f"[bold]nurture demo[/] · database {database} · SMTP capture 127.0.0.1:{smtp_port} → {maildir}",
        soft_wrap=True,
    )
    console.print(f"reading scenarios from {scenarios.resolve()}, templates from {templates.resolve()}", soft_wrap=True)
    console.print(
        f"imported {report.created} leads from {leads_file.name}"
        + (f" ({len(report.problems)} rows rejected)" if report.problems else "")
        + f"; audience seed {seed}"
    )
    tally = Tally()
    people = People(store, seed)
    agenda = Agenda()
    complaints = Complaints(store, settings, clock, tally)
    readers = Readers(store, people, agenda, tally, complaints)
    daemon = Daemon(settings, clock, store)
    # One process writes, and never while the qualify job runs: its watermark needs no
    # overlap for transactions that commit late (which would rescore every lead with recent
    # events in every round, and slow the demo down, not change it).
    daemon.qualifier.overlap = timedelta(0)

    def score(lead: Any, at: datetime) -> tuple[int, int]:
        assert daemon.catalog.scoring is not None
        with store.reading() as conn:
            result = daemon.qualifier.score_lead(daemon.catalog.scoring, conn, lead, at)
        return result.fit, result.engagement

    sales = Sales(store, people, agenda, tally, score)
    marketing = Marketing(store, agenda, tally)
    controller = Controller(CaptureMailbox(maildir, people, clock, tally), hostname="127.0.0.1", port=smtp_port)
    controller.start()
    for note in daemon.load():
        console.print(f"scenario {note}")
    end = START + timedelta(days=days)

    def people_act(since: datetime) -> int:
        """What people do in the simulated hour from `since`: read this round's emails, and
        whatever falls due before the next round (opens, clicks, sales decisions...)."""
        readers.react(since)
        sales.review()
        marketing.review()
        done = agenda.run_due(since + HOUR - timedelta(microseconds=1))
        readers.flush()
        # The qualify job rescores the leads with events the database received since its
        # last run began, on the database's clock (milliseconds on SQLite): let that clock
        # pass this round's writes, so the next run never starts in the same millisecond as
        # one of them (which would rescore those leads in two runs, depending on timing).
        written = store.reports.database_time()
        while store.reports.database_time() <= written:
            time.sleep(0.001)
        return done

    def quiet_until(now: datetime) -> datetime:
        """The start of the round in which something is next due: an enrolment, an email,
        a notification, something a person does, the daily housekeeping, or the end."""
        midnight = (now + timedelta(days=1)).replace(hour=0, minute=0, second=0, microsecond=0)
        due = [t for t in (store.reports.next_due(), agenda.next_at()) if t is not None]
        target = max(now, min([*due, midnight, end]))
        return now + HOUR * int((target - now) / HOUR)

    try:
        with Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            TextColumn("{task.fields[info]}"),
            console=console,
            transient=False,
        ) as progress:
            task = progress.add_task("simulated days", total=days, info="")

            async def drive() -> None:
                pace = seconds_per_day / 24
                try:
                    while clock.now() < end:
                        started = time.monotonic()
                        round_began = clock.now()
                        if round_began.hour == 0:  # once a simulated day: reload, rescore, digests
                            await daemon.housekeeping()
                        before = work(daemon.totals)
                        await daemon.tick()
                        acted = await asyncio.to_thread(people_act, round_began)
                        elapsed = (round_began - START).total_seconds() / 86400
                        info = f"{round_began:%a %d %b %H:%M} UTC · {daemon.totals.sent} sent"
                        progress.update(task, completed=elapsed, info=info)
                        clock.advance(HOUR)
                        if not acted and work(daemon.totals) == before:
                            # A quiet round: skip the rounds in which nothing is due (nights,
                            # weekends), as they would do nothing.
                            skipped = await asyncio.to_thread(quiet_until, clock.now())
                            rounds = int((skipped - clock.now()) / HOUR)
                            clock.set(skipped)
                            pace_for = 1 + rounds
                        else:
                            pace_for = 1
                        await asyncio.sleep(max(0.0, pace * pace_for - (time.monotonic() - started)))  # for the eye
                    await daemon.qualify()  # the scores as of the end, for the dashboard and the summary
                finally:
                    await daemon.close()

            asyncio.run(drive())
            progress.update(task, completed=days, info=f"{daemon.totals.sent} sent")
    finally:
        controller.stop()
    delivered = len(mailbox.Maildir(str(maildir), create=False))
    rows, converted = write_outcomes(workdir / "outcomes.csv", readers, sales, clock.now())
    summary = summarise(store, daemon, tally)
    summary["figures"]["in the maildir"] = delivered
    (workdir / "summary.json").write_text(json.dumps(summary["figures"], indent=2, ensure_ascii=False) + "\n")
    print_summary(console, summary)
    console.print(
        f"wrote {workdir / 'outcomes.csv'} ({rows} leads mailed, {converted} accepted by sales): the CRM's outcomes "
        "for `nurture score learn`",
        soft_wrap=True,
    )
    store.access.set_user(DEMO_USER, DEMO_PASSWORD, "Demo user")
    print_next_steps(console, root, database, workdir, clock.now())
    return DemoResult(database, maildir, delivered, summary, settings, clock.now())


def work(totals: Totals) -> tuple[int, ...]:
    return totals.enrolled, totals.advanced, totals.sent, totals.failed


def summarise(store: Store, daemon: Daemon, tally: Tally) -> dict[str, Any]:
    status = store.reports.status()
    stages = store.reports.stages()
    sends = status["sends"]
    now = daemon.clock.now()
    scenarios: dict[str, Any] = {}
    studies: list[str] = []
    for sid in sorted(daemon.catalog.current):
        compiled = daemon.catalog.current[sid]
        funnel = store.reports.funnel(sid)
        journey = [step.id for step in compiled.scenario.steps if step.type == "send_email"]
        sent = funnel["sent_by_step"]
        by_step = [[step, sent.get(step, 0)] for step in journey]
        by_step += [[step, n] for step, n in sorted(sent.items()) if step not in journey]  # steps of older versions
        scenarios[sid] = {
            "enrolled": funnel["enrolled"],
            "emails sent by step": by_step,
            "enrolments": [[status_, reason, n] for status_, reason, n in funnel["endings"]],
        }
        for experiment in experiment_reports(store, compiled, now):
            studies += [f"{sid}: {line}" if i == 0 else line for i, line in enumerate(experiment.lines())]
        studies += [f"{sid}: {lift.line()}" for lift in send_time_lifts(store, compiled, daemon.catalog.scoring)]
    figures: dict[str, Any] = {
        "leads": status["leads"],
        "enrolments": sum(s["enrolled"] for s in scenarios.values()),
        "emails sent": sends.get("sent", 0),
        "alerts to sales": store.notifications.emails_sent(),
        "queued": sends.get("pending", 0) + sends.get("sending", 0),
        "bounced": sends.get("bounced", 0),
        "failed": sends.get("failed", 0),
        "lifecycle": {str(s): stages[s] for s in Stage if s in stages},
        "people": dict(sorted(tally.counts.items())),
        "scenarios": scenarios,
    }
    return {"figures": figures, "studies": studies}


def print_summary(console: Console, summary: dict[str, Any]) -> None:
    f = summary["figures"]
    console.print(
        f"\n[bold]Summary[/]: {f['leads']} leads · {f['enrolments']} enrolments · {f['emails sent']} emails sent · "
        f"{f['alerts to sales']} alerts to sales · {f['in the maildir']} in the maildir · {f['queued']} queued · "
        f"{f['bounced']} bounced · {f['failed']} failed",
        soft_wrap=True,
    )
    console.print("lifecycle: " + " · ".join(f"{s} {n}" for s, n in f["lifecycle"].items()), soft_wrap=True)
    people = f["people"]
    console.print("people: " + " · ".join(f"{n} {what}" for what, n in people.items()), soft_wrap=True)
    for scenario_id, figures in f["scenarios"].items():
        console.print(f"\n[bold]{scenario_id}[/]: {figures['enrolled']} enrolled", soft_wrap=True)
        sent = Table(title="Emails sent, per step in journey order", title_justify="left", min_width=44)
        sent.add_column("step")
        sent.add_column("emails sent", justify="right")
        for step, count in figures["emails sent by step"]:
            sent.add_row(step, str(count))
        ended = Table(title="How enrolments finished", title_justify="left", min_width=44)
        ended.add_column("enrolments")
        ended.add_column("reason")
        ended.add_column("count", justify="right")
        for status, reason, count in figures["enrolments"]:
            shown = "still in the journey" if status == "active" else status
            ended.add_row(shown, reason, str(count))
        console.print(sent)
        console.print(ended)
    for line in summary.get("studies", []):
        console.print(line, markup=False, highlight=False, soft_wrap=True)


def print_next_steps(console: Console, root: Path, database: Path, workdir: Path, end: datetime) -> None:
    db = f"--db sqlite:///{database}"
    where = f"--scenarios {root / 'scenarios'}"
    console.print("\n[bold]Look closer[/] (the demo's history, as of its simulated end):", soft_wrap=True)
    for command in (
        f"nurture report {db} {where}",
        f"nurture score backtest --from {START:%Y-%m-%d} --to {end:%Y-%m-%dT%H:%M:%SZ} {db} {where}",
        f"nurture score near-miss --at {end:%Y-%m-%dT%H:%M:%SZ} --engagement-gap 15 {db} {where}",
        f"nurture score drift {db} {where}",
        f"nurture score learn --outcomes {workdir / 'outcomes.csv'} --out {workdir / 'scoring.proposed.yaml'} "
        f"{db} {where}",
    ):
        console.print(f"  {command}", markup=False, highlight=False, soft_wrap=True)


def serve_dashboard(result: DemoResult, console: Console) -> None:
    """The dashboard on the demo's database at 127.0.0.1 until Ctrl-C, its clock going on
    from the demo's simulated end."""
    import uvicorn

    from nurture.clock import AcceleratedClock
    from nurture.web.app import create_app

    settings = result.settings
    port = int(settings.base_url.rsplit(":", 1)[1])
    clock = AcceleratedClock(result.end, 1.0)
    store = Store(make_engine(settings.database_url), clock)
    console.print(
        f"\n[bold]Dashboard[/]: {settings.base_url}/  ·  log in as [bold]{DEMO_USER}[/] / [bold]{DEMO_PASSWORD}[/]"
        "  ·  Ctrl-C to stop",
        soft_wrap=True,
    )
    config = uvicorn.Config(create_app(settings, clock, store), host="127.0.0.1", port=port, log_level="warning")
    uvicorn.Server(config).run()
