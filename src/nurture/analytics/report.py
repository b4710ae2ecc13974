"""Per-scenario reports: the funnel by step, email metrics with bot activity excluded, time to hot.

Definitions (kept in one place so the dashboard and `nurture report` agree):
- entered: moves into the step (a loop counts each visit); the first step counts enrolments.
- sent: accepted by the SMTP server; delivered: sent, less bounces reported afterwards.
- opened / clicked: distinct sends with at least one open (or click, which implies an open)
  / click by a person; opens and clicks the scoring model's bot rules flag are left out.
- unsubscribed: unsubscribes through a link in one of the step's emails; bounced: sends
  the server refused permanently, plus bounces reported afterwards.
- converted: leads who were sent one of the step's emails and reached hot, accepted or
  customer after it.
- time to hot: from enrolment to the lead's first promotion to hot after it.

The report reads counters: the enrolment tallies, and the outcome tallies (sent and refused
by step, kept by a trigger; the rest from the outcome rows `nurture.analytics.outcomes`
computes when a lead's activity changes), by the day of the enrolment, so its cost does not
grow with the scenario. A report first counts the leads named since the last catch-up (the
daemon's qualify job keeps that short). `scenario_report_scan` computes the same figures from
the sends and events themselves: for windows that do not start and end at midnight UTC, and
as the recount the counters are checked against.
"""

from __future__ import annotations

import csv
import io
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, time, timedelta

from nurture.analytics.outcomes import catch_up
from nurture.lifecycle import CONVERTED
from nurture.scenario.compiler import CompiledScenario
from nurture.scenario.model import Step
from nurture.scoring.engine import CompiledScoring
from nurture.store import Store
from nurture.store.reports import ScenarioActivity
from nurture.vocabulary import EnrolmentStatus, EventType, SendStatus, Stage


@dataclass
class StepRow:
    step: str
    kind: str
    entered: int = 0
    sent: int = 0
    delivered: int = 0
    opened: int = 0
    clicked: int = 0
    unsubscribed: int = 0
    bounced: int = 0
    converted: int = 0
    bot_events: int = 0
    machine_opened: int = 0  # distinct emails opened by machines (proxies, scanners)
    machine_clicked: int = 0  # distinct emails whose links machines followed

    @property
    def is_email(self) -> bool:
        return self.kind == "send_email"

    def rate(self, part: str) -> float | None:
        """`part` as a share of delivered emails."""
        value: int = getattr(self, part)
        return value / self.delivered if self.delivered else None


@dataclass
class ScenarioReport:
    scenario_id: str
    name: str
    enrolled: int
    active: int
    finished: dict[str, int]
    steps: list[StepRow]
    hot: int
    time_to_hot: list[timedelta] = field(default_factory=list)
    converted_total: int = 0  # leads converted after one of the scenario's emails
    unsubscribes_by_day: dict[str, int] = field(default_factory=dict)  # UTC day (ISO) → unsubscribes
    uncounted: int = 0  # leads whose latest activity waits for the daemon to be counted
    hot_median: timedelta | None = None  # from the counters (which keep no list of times)

    @property
    def median_time_to_hot(self) -> timedelta | None:
        if self.hot_median is not None:
            return self.hot_median
        ordered = sorted(self.time_to_hot)
        if not ordered:
            return None
        middle = len(ordered) // 2
        return ordered[middle] if len(ordered) % 2 else (ordered[middle - 1] + ordered[middle]) / 2

    def totals(self) -> StepRow:
        total = StepRow("all emails", "send_email")
        for row in self.steps:
            if row.is_email:
                for name in (
                    "sent",
                    "delivered",
                    "opened",
                    "clicked",
                    "unsubscribed",
                    "bounced",
                    "bot_events",
                    "machine_opened",
                    "machine_clicked",
                ):
                    setattr(total, name, getattr(total, name) + getattr(row, name))
        total.converted = self.converted_total
        return total


# Names of leads a report counts itself before it reads; beyond that (after an upgrade, or
# with no daemon running) it reads the counters as they are and says how many wait.
CATCH_UP_LIMIT = 20_000


def scenario_report(
    store: Store,
    compiled: CompiledScenario,
    scoring: CompiledScoring | None,
    since: datetime | None = None,
    until: datetime | None = None,
) -> ScenarioReport:
    """The report of one scenario (all its versions), for enrolments in [since, until), from
    the counters (see the module's docstring)."""
    if not _by_day(since) or not _by_day(until):
        return scenario_report_scan(store, compiled, scoring, since, until)
    days = None if since is None and until is None else (_day(since, ""), _day(until, "9999-12-31"))
    sid = compiled.id
    catch_up(store, scoring, limit=CATCH_UP_LIMIT)
    store.tallies.fold()
    with store.reading() as conn:
        uncounted = store.outcomes.pending(conn)
        outcomes = store.outcomes.counts(conn, sid, days)
        hot, hot_median = store.outcomes.hot(conn, sid, days)
        enrolments = store.tallies.count(conn, "enrolment", ("b", "c", "day"), a=sid)
    rows = _step_rows(store, compiled, since, until)
    report = ScenarioReport(
        scenario_id=sid,
        name=compiled.scenario.name,
        enrolled=0,
        active=0,
        finished={},
        steps=list(rows.values()),
        hot=hot,
        uncounted=uncounted,
        hot_median=hot_median,
    )
    finished: dict[str, int] = defaultdict(int)
    for (status, reason, day), n in sorted(enrolments.items()):
        if days and not days[0] <= day < days[1]:
            continue
        report.enrolled += n
        if status not in (EnrolmentStatus.ACTIVE, EnrolmentStatus.PARKED):
            finished[reason or status] += n
        elif status == EnrolmentStatus.ACTIVE:
            report.active += n
    for (step, metric, detail), n in sorted(outcomes.items()):
        if metric == "converted_lead":
            report.converted_total += n
            continue
        row = rows.get(step)
        if row is None:
            continue
        if metric == "refused":
            row.bounced += n
        elif metric == "bounced":
            row.bounced += n
            row.delivered -= n
        elif metric == "unsubscribed":
            row.unsubscribed += n
            report.unsubscribes_by_day[detail] = report.unsubscribes_by_day.get(detail, 0) + n
        elif metric in _COUNTED:
            setattr(row, metric, getattr(row, metric) + n)
    report.unsubscribes_by_day = dict(sorted(report.unsubscribes_by_day.items()))
    if compiled.scenario.steps:
        rows[compiled.scenario.steps[0].id].entered += report.enrolled
    for row in rows.values():
        row.delivered += row.sent
    report.finished = dict(finished)
    return report


def _step_rows(
    store: Store, compiled: CompiledScenario, since: datetime | None, until: datetime | None
) -> dict[str, StepRow]:
    """A row per step of the scenario; over its whole life, with the visits each step counted."""
    rows = {s.id: StepRow(s.id, _kind(s)) for s in compiled.scenario.steps}
    if not (since or until):
        for step, entered in store.reports.step_visits(compiled.id):
            if step in rows:
                rows[step].entered += entered
    return rows


_COUNTED = ("sent", "opened", "clicked", "machine_opened", "machine_clicked", "bot_events", "converted")


def _by_day(moment: datetime | None) -> bool:
    """Whether a window's bound falls on a day of the counters (midnight UTC), or is open."""
    return moment is None or moment.astimezone(UTC).time() == time(0)


def _day(moment: datetime | None, open_end: str) -> str:
    return open_end if moment is None else moment.astimezone(UTC).date().isoformat()


def scenario_report_scan(
    store: Store,
    compiled: CompiledScenario,
    scoring: CompiledScoring | None,
    since: datetime | None = None,
    until: datetime | None = None,
) -> ScenarioReport:
    """The report of one scenario (all its versions), for enrolments in [since, until), from
    the sends, events and stage changes themselves.

    Read a few thousand leads at a time: what is kept between chunks is the counts (and the
    times to hot), so memory does not grow with the number of enrolments."""
    sid = compiled.id
    rows = _step_rows(store, compiled, since, until)
    report = ScenarioReport(
        scenario_id=sid,
        name=compiled.scenario.name,
        enrolled=0,
        active=0,
        finished={},
        steps=list(rows.values()),
        hot=0,
    )
    finished: dict[str, int] = defaultdict(int)
    for found in store.reports.scenario_activity(sid, since, until):
        _add_chunk(report, rows, found, scoring, finished)
    if compiled.scenario.steps:
        rows[compiled.scenario.steps[0].id].entered += report.enrolled
    for row in rows.values():
        row.delivered += row.sent
    report.finished = dict(finished)
    return report


def _add_chunk(
    report: ScenarioReport,
    rows: dict[str, StepRow],
    found: ScenarioActivity,
    scoring: CompiledScoring | None,
    finished: dict[str, int],
) -> None:
    enrolments, sends, events, changes = found.enrolments, found.sends, found.events, found.changes
    by_send = {s.id: s for s in sends}
    converted_leads: set[int] = set()
    for s in sends:
        row = rows.get(s.step)
        if row is None:
            continue
        if s.status == SendStatus.SENT:
            row.sent += 1
        elif s.status == SendStatus.BOUNCED:
            row.bounced += 1
        later = changes.get(s.lead_id, [])
        if s.sent_at is not None and any(at >= s.sent_at and stage in CONVERTED for at, stage in later):
            row.converted += 1
            converted_leads.add(s.lead_id)
    report.converted_total += len(converted_leads)

    opened: dict[str, set[int]] = defaultdict(set)
    clicked: dict[str, set[int]] = defaultdict(set)
    machine_opened: dict[str, set[int]] = defaultdict(set)
    machine_clicked: dict[str, set[int]] = defaultdict(set)
    # (type, send referred to, whether a machine, how many, UTC day): raw events one by one,
    # pruned events as their daily rollups.
    seen: list[tuple[str, object, bool, int, str]] = []
    for _lead_id, evs in events.items():
        machine = scoring.machine_activity(evs) if scoring else {}
        seen.extend(
            (e.type, e.props.get("send"), index in machine, 1, e.at.date().isoformat()) for index, e in enumerate(evs)
        )
    for _lead_id, rolled in found.rolled.items():
        seen.extend(
            (r.type, r.send_id, scoring is not None and r.verdict == "machine", r.n, r.day.isoformat()) for r in rolled
        )
    for type_, ref, is_machine, n, day in seen:
        send = by_send.get(ref) if isinstance(ref, int) else None
        if send is None or send.step not in rows:
            continue
        row = rows[send.step]
        if is_machine and type_ in ("open", "click", EventType.HONEYPOT):
            row.bot_events += n
            (machine_opened if type_ == "open" else machine_clicked)[send.step].add(send.id)
            continue
        if type_ == "click":
            clicked[send.step].add(send.id)
            opened[send.step].add(send.id)
        elif type_ == "open":
            opened[send.step].add(send.id)
        elif type_ == "unsubscribe":
            row.unsubscribed += n
            report.unsubscribes_by_day[day] = report.unsubscribes_by_day.get(day, 0) + n
        elif type_ == EventType.BOUNCE and send.status == SendStatus.SENT:
            row.bounced += n
            row.delivered -= n
    for step, row in rows.items():
        row.opened += len(opened[step])
        row.clicked += len(clicked[step])
        row.machine_opened += len(machine_opened[step])
        row.machine_clicked += len(machine_clicked[step])

    for r in enrolments:
        first = next(
            (at for at, stage in changes.get(r.lead_id, []) if stage == Stage.HOT and at >= r.enrolled_at), None
        )
        if first is not None:
            report.hot += 1
            report.time_to_hot.append(first - r.enrolled_at)
        if r.status not in (EnrolmentStatus.ACTIVE, EnrolmentStatus.PARKED):
            finished[r.exit_reason or r.status] += 1
        elif r.status == EnrolmentStatus.ACTIVE:
            report.active += 1
    report.enrolled += len(enrolments)


def _kind(step: Step) -> str:
    return str(step.type)


def report_csv(reports: Sequence[ScenarioReport]) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    columns = ("entered", "sent", "delivered", "opened", "clicked", "unsubscribed", "bounced", "converted")
    writer.writerow(["scenario", "step", "kind", *columns])
    for report in reports:
        for row in report.steps:
            writer.writerow([report.scenario_id, row.step, row.kind, *(getattr(row, c) for c in columns)])
    return out.getvalue()
