"""`nurture demo`: the whole product on one machine with nothing configured.

Creates an SQLite database, imports the sample leads, starts an in-process SMTP server
(aiosmtpd) that writes every message to a Maildir, and runs the real daemon's jobs round
after round through the sample scenarios, each round a simulated hour later. A small audience model opens and
clicks some emails (deterministically), so waits, branches and timeouts all happen.
"""

from __future__ import annotations

import asyncio
import hashlib
import mailbox
import shutil
import socket
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from aiosmtpd.controller import Controller
from aiosmtpd.handlers import Mailbox
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn
from rich.table import Table

from nurture.analytics.experiments import experiment_reports, send_time_lifts
from nurture.clock import FakeClock
from nurture.config import Settings
from nurture.daemon import Daemon
from nurture.errors import NurtureError
from nurture.leads import import_leads
from nurture.scaffold import samples_root
from nurture.store import Store
from nurture.store.db import make_engine
from nurture.store.migrate import upgrade
from nurture.timeutil import zone
from nurture.vocabulary import Stage

START = datetime(2026, 3, 2, 6, 0, tzinfo=UTC)  # a Monday morning in Europe

# What a reader of each email does, by template: (link clicked, chance of a click, follow-up event).
AUDIENCE: dict[str, tuple[str, float, str | None]] = {
    "welcome": ("whitepaper", 0.5, None),
    "case_study": ("case-study", 0.45, None),
    "case_study_reminder": ("case-study", 0.3, None),
    "webinar_invite": ("webinar", 0.4, "webinar_registered"),
    "pricing_followup": ("pricing-call", 0.3, None),
    "reengage_question": ("still-interested", 0.35, None),
    "reengage_value": ("benchmarks", 0.35, None),
    "reengage_last": ("keep-me", 0.2, None),
    "ja_seminar_thanks": ("", 0.0, None),
    "ja_materials": ("materials", 0.5, "download"),
    "ja_consultation": ("consultation", 0.4, None),
}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def chance(*parts: object) -> float:
    digest = hashlib.sha256("|".join(map(str, parts)).encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


@dataclass
class DemoResult:
    database: Path
    maildir: Path
    delivered: int
    summary: dict[str, Any]


# When people read their email: each has a preferred local hour, most of them early afternoon.
PREFERRED_HOURS = (14, 14, 14, 14, 11, 11, 16, 16, 9, 9)


def preferred_hour(lead_id: int) -> int:
    return PREFERRED_HOURS[int(chance("hour", lead_id) * len(PREFERRED_HOURS))]


def next_local_hour(after: datetime, hour: int, tz: ZoneInfo) -> datetime:
    """The next time it is `hour`:xx in `tz` after `after` (a few minutes past the hour)."""
    local = after.astimezone(tz)
    candidate = local.replace(hour=hour, minute=5 + int(chance("minute", after) * 40), second=0, microsecond=0)
    if candidate <= local:
        candidate += timedelta(days=1)
    return candidate.astimezone(UTC)


class Audience:
    """Turns sent emails into opens, clicks and page views, as real readers would.

    Each person has a preferred hour of the day: they open their email then, and click more
    often when an email arrives in that hour than when it waited in the inbox (which is what
    `send_time: optimal` learns from their opens and exploits)."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.seen = 0
        self.zones: dict[int, ZoneInfo] = {}

    def zone_of(self, lead_id: int) -> ZoneInfo:
        if lead_id not in self.zones:
            row = self.store.leads.by_id(lead_id)
            self.zones[lead_id] = zone(row.timezone if row is not None else None)
        return self.zones[lead_id]

    def react(self) -> int:
        made = 0
        with self.store.transaction() as conn:
            rows = self.store.sends.sent_after(conn, self.seen)
            for row in rows:
                self.seen = max(self.seen, row.id)
                link, click_rate, follow_up = AUDIENCE.get(row.template, ("", 0.2, None))
                roll = chance(row.idempotency_key)
                tz = self.zone_of(row.lead_id)
                hour = preferred_hour(row.lead_id)
                arrived = row.sent_at
                on_time = arrived.astimezone(tz).hour == hour
                click_rate = min(0.95, click_rate * (1.6 if on_time else 0.8))
                opened = next_local_hour(arrived, hour, tz) if not on_time else arrived + timedelta(minutes=7)
                if roll < 0.7:
                    self.store.events.record(conn, row.lead_id, "open", opened, {"send": row.id}, f"demo-open-{row.id}")
                    made += 1
                if link and roll < click_rate:
                    clicked = opened + timedelta(minutes=2 + int(roll * 20))
                    self.store.events.record(
                        conn,
                        row.lead_id,
                        "click",
                        clicked,
                        # As the tracking endpoint records a click: which email, journey and step.
                        {
                            "link": link,
                            "send": row.id,
                            "scenario": row.scenario_id,
                            "step": row.step,
                            "sent_at": arrived.isoformat(),
                        },
                        f"demo-click-{row.id}",
                    )
                    made += 1
                    if follow_up:
                        self.store.events.record(
                            conn,
                            row.lead_id,
                            follow_up,
                            clicked + timedelta(minutes=5),
                            {"send": row.id},
                            f"demo-follow-{row.id}",
                        )
                    if chance("pricing", row.lead_id) < 0.3:
                        for n in range(2):
                            self.store.events.record(
                                conn,
                                row.lead_id,
                                "page_view",
                                clicked + timedelta(minutes=30 + n),
                                {"url": "https://acme-analytics.example/pricing"},
                                f"demo-pricing-{row.id}-{n}",
                            )
        return made


def run_demo(
    root: Path,
    workdir: Path,
    days: int = 21,
    seconds_per_day: float = 1.0,
    console: Console | None = None,
    leads: Path | None = None,
) -> DemoResult:
    """The daemon on `root`'s scenarios/ and email_templates/ with `leads` (default: the
    checkout's sample leads) on an accelerated clock, mail captured into `workdir`."""
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
    port = free_port()
    settings = Settings(
        database_url=f"sqlite:///{database}",
        scenarios_dir=scenarios,
        templates_dir=templates,
        smtp_host="127.0.0.1",
        smtp_port=port,
        smtp_pool_size=4,
        base_url="http://localhost:8025",
        secret_key="demo-secret",
        worker_id="demo",
        sender_name="Acme Analytics",
        sender_postal_address="100 Main Street, Boston, MA 02110",
    )
    # Simulated time moves an hour per round of the daemon's jobs, so the demo tells the
    # same story on a fast machine and a slow one; rounds are paced to `seconds_per_day`.
    clock = FakeClock(START)
    engine = make_engine(settings.database_url)
    upgrade(engine)
    store = Store(engine, clock)
    report = import_leads(store, leads_file)
    console.print(
        f"[bold]nurture demo[/] · database {database} · SMTP capture 127.0.0.1:{port} → {maildir}",
        soft_wrap=True,
    )
    console.print(f"reading scenarios from {scenarios.resolve()}, templates from {templates.resolve()}", soft_wrap=True)
    console.print(
        f"imported {report.created} leads from {leads_file.name}"
        + (f" ({len(report.problems)} rows rejected)" if report.problems else "")
    )
    controller = Controller(Mailbox(maildir), hostname="127.0.0.1", port=port)
    controller.start()
    daemon = Daemon(settings, clock, store)
    for note in daemon.load():
        console.print(f"scenario {note}")
    audience = Audience(store)
    end = START + timedelta(days=days)
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
                        if clock.now().hour == 0:  # once a simulated day: reload, rescore, digests
                            await daemon.housekeeping()
                        await daemon.tick()
                        await asyncio.to_thread(audience.react)
                        now = clock.now()
                        elapsed = (now - START).total_seconds() / 86400
                        info = f"{now:%a %d %b %H:%M} UTC · {daemon.totals.sent} sent"
                        progress.update(task, completed=elapsed, info=info)
                        clock.advance(timedelta(hours=1))
                        await asyncio.sleep(max(0.0, pace - (time.monotonic() - started)))  # pacing for the viewer
                finally:
                    await daemon.close()

            asyncio.run(drive())
            progress.update(task, completed=days, info=f"{daemon.totals.sent} sent")
    finally:
        controller.stop()
    delivered = len(mailbox.Maildir(str(maildir), create=False))
    summary = summarise(store, daemon)
    print_summary(console, summary, delivered)
    return DemoResult(database, maildir, delivered, summary)


def summarise(store: Store, daemon: Daemon) -> dict[str, Any]:
    status = store.reports.status()
    funnels = {sid: store.reports.funnel(sid) for sid in sorted(daemon.catalog.current)}
    alerts = store.notifications.emails_sent()
    stages = store.reports.stages()
    now = daemon.clock.now()
    studies: list[str] = []
    for sid in sorted(daemon.catalog.current):
        compiled = daemon.catalog.current[sid]
        for experiment in experiment_reports(store, compiled, now):
            studies += [f"{sid}: {line}" if i == 0 else line for i, line in enumerate(experiment.lines())]
        studies += [f"{sid}: {lift.line()}" for lift in send_time_lifts(store, compiled, daemon.catalog.scoring)]
    return {
        "status": status,
        "funnels": funnels,
        "totals": daemon.totals,
        "alerts": alerts,
        "stages": stages,
        "studies": studies,
    }


def print_summary(console: Console, summary: dict[str, Any], delivered: int) -> None:
    status = summary["status"]
    sends = status["sends"]
    enrolled = sum(f["enrolled"] for f in summary["funnels"].values())
    console.print(
        f"\n[bold]Summary[/]: {status['leads']} leads · {enrolled} enrolments · {sends.get('sent', 0)} emails sent · "
        f"{summary['alerts']} alerts to sales · {delivered} in the maildir · "
        f"{sends.get('pending', 0) + sends.get('sending', 0)} queued · "
        f"{sends.get('failed', 0) + sends.get('bounced', 0)} failed",
        soft_wrap=True,
    )
    order = list(Stage)
    stages = summary["stages"]
    console.print("lifecycle: " + " · ".join(f"{s} {stages[s]}" for s in order if s in stages), soft_wrap=True)
    for scenario_id, funnel in summary["funnels"].items():
        table = Table(title=f"{scenario_id}: {funnel['enrolled']} enrolled", title_justify="left")
        table.add_column("step")
        table.add_column("emails sent", justify="right")
        for step, count in sorted(funnel["sent_by_step"].items(), key=lambda kv: -kv[1]):
            table.add_row(step, str(count))
        for reason, count in sorted(funnel["finished"].items(), key=lambda kv: -kv[1]):
            table.add_row(f"[dim]finished: {reason}[/]", f"[dim]{count}[/]")
        console.print(table)
    for line in summary.get("studies", []):
        console.print(line, markup=False, highlight=False, soft_wrap=True)
