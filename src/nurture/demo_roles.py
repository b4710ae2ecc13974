"""The people of `nurture demo`: readers, their mailboxes, sales and marketing, on a seeded model.

Every decision is a roll of `chance(seed, ...)` over stable names (an address, a send's
idempotency key, a lead's promotion time), never of the order things happened in or the
wall clock, so one seed tells the same story on any machine. Each role acts through the
product's own paths:

- readers open, click, browse, register for and attend the webinar and fill in forms (the
  events the tracking endpoints record), and some leave everything through the preference
  centre's store call;
- their mailboxes answer at the SMTP capture: an address that does not exist refuses RCPT
  with `550 5.1.1`, a full one with `452 4.2.2` on some days, so the real send path
  classifies both; a few people mark an email as spam, which reaches nurture as an ARF
  report through the real report reader and feedback handler;
- sales owners (the scoring file's routing) accept, reject with reasons, recycle and win
  deals through `nurture.lifecycle.feedback`, the call `nurture sales ...` makes, at rates
  that grow with the lead's fit and engagement;
- marketing resumes a scenario the reputation guard paused, the next working morning.
"""

from __future__ import annotations

import functools
import hashlib
import heapq
import itertools
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from aiosmtpd.handlers import Mailbox

from nurture.clock import Clock
from nurture.config import Settings
from nurture.consent.model import ALL_TOPICS, ConsentRecord, ConsentSource, ConsentStatus
from nurture.errors import NurtureError
from nurture.feedback.reports import ReportReader
from nurture.jobs.feedback import FeedbackHandler
from nurture.lifecycle import feedback
from nurture.mail.verp import ReturnPath, return_path_from_settings
from nurture.store import Store
from nurture.store.sends import SentEmail
from nurture.timeutil import zone
from nurture.vocabulary import Stage

DEFAULT_SEED = 7

Scorer = Callable[[Any, datetime], tuple[int, int]]  # (fit, engagement) of a lead as of a time

# What a reader of each email does, by template: (link clicked, chance of a click, follow-up event).
AUDIENCE: dict[str, tuple[str, float, str | None]] = {
    "welcome": ("whitepaper", 0.5, "download"),
    "case_study": ("case-study", 0.45, None),
    "case_study_reminder": ("case-study", 0.3, None),
    "webinar_invite": ("webinar", 0.4, "webinar_registered"),
    "pricing_followup": ("pricing-call", 0.3, "form_fill"),
    "reengage_question": ("still-interested", 0.35, None),
    "reengage_value": ("benchmarks", 0.35, None),
    "reengage_last": ("keep-me", 0.2, None),
    "ja_seminar_thanks": ("", 0.0, None),
    "ja_materials": ("materials", 0.5, "download"),
    "ja_consultation": ("consultation", 0.4, "form_fill"),
}

# Pages of the product's site a reader browses after a click on each link.
PAGES: dict[str, tuple[str, ...]] = {
    "whitepaper": ("/resources/modern-manufacturing-analytics", "/product"),
    "case-study": ("/customers/nordwerk", "/product/quality"),
    "webinar": ("/events/shop-floor-analytics",),
    "benchmarks": ("/resources/benchmarks",),
    "materials": ("/ja/resources",),
}
SITE = "https://acme-analytics.example"

# When people read their email: each has a preferred local hour, most of them early afternoon.
PREFERRED_HOURS = (14, 14, 14, 14, 11, 11, 16, 16, 9, 9)

HARD_BOUNCE_SHARE = 0.04  # addresses that no longer exist
SOFT_BOUNCE_SHARE = 0.04  # mailboxes that are full on some days
COMPLAINER_SHARE = 0.04  # people who mark a marketing email as spam
LEAVER_SHARE = 0.10  # people who unsubscribe once they have read enough

ACCEPT_REASONS = ("demo booked", "budget and timeline confirmed", "evaluating this quarter")
RECYCLE_REASONS = ("not ready: revisit next quarter", "interested, no project yet")
WON_REASONS = ("signed the annual plan", "signed a pilot for two plants")
LOST_REASONS = ("lost to a competitor", "project cancelled")
EVENT_NAMES = {
    "open": "opens",
    "click": "clicks",
    "page_view": "page views",
    "form_fill": "forms filled",
    "webinar_registered": "webinar registrations",
    "webinar_attended": "webinar attendances",
    "download": "downloads",
}
DECISION_MAKERS = ("head", "director", "vp", "chief", "ceo", "cto", "manager", "部長")


def chance(*parts: object) -> float:
    """A number in [0, 1) that depends only on `parts`: the demo's one source of randomness."""
    digest = hashlib.sha256("|".join(map(str, parts)).encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def next_local_hour(after: datetime, hour: int, tz: ZoneInfo) -> datetime:
    """The next time it is `hour`:xx in `tz` after `after` (a few minutes past the hour)."""
    local = after.astimezone(tz)
    candidate = local.replace(hour=hour, minute=5 + int(chance("minute", after) * 40), second=0, microsecond=0)
    if candidate <= local:
        candidate += timedelta(days=1)
    return candidate.astimezone(UTC)


def working_morning(after: datetime, days: int, minute: int) -> datetime:
    """10:xx UTC on the `days`-th working day after `after` (at least the next morning)."""
    day = after.astimezone(UTC).replace(hour=10, minute=minute % 60, second=0, microsecond=0)
    if day <= after:
        day += timedelta(days=1)
    moved = 0
    while day.weekday() >= 5 or moved < days - 1:
        if day.weekday() < 5:
            moved += 1
        day += timedelta(days=1)
    return day


@dataclass
class Tally:
    """What the people of the demo did, for the summary."""

    counts: Counter[str] = field(default_factory=Counter)

    def add(self, what: str, n: int = 1) -> None:
        self.counts[what] += n


class Agenda:
    """Things people will do at a later simulated time, done in time order (ties in the
    order they were planned), when the clock reaches them."""

    def __init__(self) -> None:
        self._items: list[tuple[datetime, int, Callable[[datetime], None]]] = []
        self._seq = itertools.count()

    def plan(self, at: datetime, action: Callable[[datetime], None]) -> None:
        heapq.heappush(self._items, (at, next(self._seq), action))

    def next_at(self) -> datetime | None:
        return self._items[0][0] if self._items else None

    def run_due(self, now: datetime) -> int:
        done = 0
        while self._items and self._items[0][0] <= now:
            at, _, action = heapq.heappop(self._items)
            action(at)
            done += 1
        return done


class People:
    """The audience model: who each address belongs to and how its owner behaves."""

    def __init__(self, store: Store, seed: int) -> None:
        self.store = store
        self.seed = seed
        self.addresses: dict[str, int] = {}
        with store.reading() as conn:
            for row in store.reports.every_lead(conn):
                self.addresses[row.email.lower()] = row.id

    def roll(self, *parts: object) -> float:
        return chance(self.seed, *parts)

    def mailbox(self, address: str) -> str:
        """'gone' (hard bounce), 'flaky' (full on some days) or 'ok'."""
        address = address.strip().strip("<>").lower()
        if address not in self.addresses:
            return "ok"  # sales owners and marketing: their mailboxes work
        roll = self.roll("mailbox", address)
        if roll < HARD_BOUNCE_SHARE:
            return "gone"
        return "flaky" if roll < HARD_BOUNCE_SHARE + SOFT_BOUNCE_SHARE else "ok"

    def full_on(self, address: str, day: datetime) -> bool:
        return self.roll("full", address.strip().strip("<>").lower(), day.date().isoformat()) < 0.5

    def complains(self, address: str) -> bool:
        return self.roll("complains", address.lower()) < COMPLAINER_SHARE

    def leaves(self, address: str) -> bool:
        return self.roll("leaves", address.lower()) < LEAVER_SHARE

    def hour(self, lead_id: int) -> int:
        return PREFERRED_HOURS[int(self.roll("hour", lead_id) * len(PREFERRED_HOURS))]

    def interest(self, lead_id: int) -> float:
        """How much more (or less) than the average reader this person clicks: 0.6 to 1.6."""
        return 0.6 + 1.0 * self.roll("interest", lead_id)


class CaptureMailbox(Mailbox):
    """The demo's SMTP server: a Maildir for what it accepts, and the recipients' mailboxes'
    answers at RCPT: 550 5.1.1 for an address that does not exist, 452 4.2.2 for a full one."""

    def __init__(self, maildir: Path, people: People, clock: Clock, tally: Tally) -> None:
        super().__init__(maildir)
        self.people, self.clock, self.tally = people, clock, tally

    async def handle_RCPT(self, server: Any, session: Any, envelope: Any, address: str, rcpt_options: list[str]) -> str:
        state = self.people.mailbox(address)
        if state == "gone":
            self.tally.add("hard bounces at SMTP")
            return f"550 5.1.1 <{address}>: Recipient address rejected: User unknown in virtual mailbox table"
        if state == "flaky" and self.people.full_on(address, self.clock.now()):
            self.tally.add("soft bounces at SMTP")
            return f"452 4.2.2 <{address}>: Mailbox full, try again later"
        envelope.rcpt_tos.append(address)
        return "250 OK"


def arf_report(send: SentEmail, recipient: str, return_path: str, at: datetime) -> bytes:
    """A mailbox provider's feedback-loop report (RFC 5965) about one email, as it arrives
    at the bounce address: the report fields and the original's headers."""
    date = format_datetime(at)
    text = (
        f"From: Feedback Loop <fbl@mailbox-provider.example>\r\n"
        f"To: {return_path}\r\n"
        f"Subject: Complaint about a message from acme-analytics.example\r\n"
        f"Date: {date}\r\n"
        f"MIME-Version: 1.0\r\n"
        f'Content-Type: multipart/report; report-type=feedback-report; boundary="arf"\r\n\r\n'
        f"--arf\r\nContent-Type: text/plain; charset=us-ascii\r\n\r\n"
        f"A recipient marked this message as spam.\r\n\r\n"
        f"--arf\r\nContent-Type: message/feedback-report\r\n\r\n"
        f"Feedback-Type: abuse\r\nUser-Agent: ProviderFBL/2.1\r\nVersion: 1\r\n"
        f"Original-Mail-From: <{return_path}>\r\nOriginal-Rcpt-To: <{recipient}>\r\nArrival-Date: {date}\r\n\r\n"
        f"--arf\r\nContent-Type: text/rfc822-headers\r\n\r\n"
        f"Return-Path: <{return_path}>\r\nFrom: Acme Analytics <hello@acme-analytics.example>\r\n"
        f"To: {recipient}\r\nSubject: {send.subject.encode('ascii', 'replace').decode()}\r\n"
        f"Message-ID: {send.message_id or ''}\r\n\r\n"
        f"--arf--\r\n"
    )
    return text.encode("ascii", "replace")


class Readers:
    """Turns sent emails into what their readers do, as the tracking endpoints would record it.

    Each person has a preferred hour of the day: they open their email then, and click more
    often when an email arrives in that hour than when it waited in the inbox (which is what
    `send_time: optimal` learns from their opens and exploits)."""

    def __init__(self, store: Store, people: People, agenda: Agenda, tally: Tally, complaints: Complaints) -> None:
        self.store, self.people, self.agenda, self.tally, self.complaints = store, people, agenda, tally, complaints
        self.leads: dict[int, Any] = {}
        self.pending: list[tuple[int, str, datetime, dict[str, Any], str]] = []
        self.received: Counter[int] = Counter()
        self.left: set[int] = set()
        self.complained: set[int] = set()

    def lead(self, lead_id: int) -> Any:
        if lead_id not in self.leads:
            self.leads[lead_id] = self.store.leads.by_id(lead_id)
        return self.leads[lead_id]

    def react(self, since: datetime) -> None:
        """Plan what readers do with the emails sent since `since` (this round's): each open,
        click, page view or form is recorded when its simulated time comes, as the tracking
        endpoints would record it then."""
        with self.store.reading() as conn:
            rows = self.store.sends.sent_since(conn, since)
        for row in rows:
            self._read(row)

    def flush(self) -> None:
        """Record the events whose time came (one transaction)."""
        if not self.pending:
            return
        with self.store.transaction() as conn:
            for lead_id, kind, at, props, key in self.pending:
                self.store.events.record(conn, lead_id, kind, at, props, key)
                self.tally.add(EVENT_NAMES.get(kind, kind))
        self.pending.clear()

    def _later(self, at: datetime, lead_id: int, kind: str, props: dict[str, Any], key: str) -> None:
        self.agenda.plan(at, lambda _: self.pending.append((lead_id, kind, at, props, key)))

    def _read(self, row: SentEmail) -> None:
        lead = self.lead(row.lead_id)
        if lead is None:
            return
        self.received[row.lead_id] += 1
        address = lead.email
        people = self.people
        if people.complains(address) and self.received[row.lead_id] >= 2 and row.lead_id not in self.complained:
            self.complained.add(row.lead_id)
            self.agenda.plan(row.sent_at + timedelta(hours=3), lambda at: self.complaints.file(row, address, at))
            return
        link, click_rate, follow_up = AUDIENCE.get(row.template, ("", 0.2, None))
        roll = people.roll("read", row.idempotency_key)
        tz = zone(lead.timezone)
        hour = people.hour(row.lead_id)
        arrived = row.sent_at
        on_time = arrived.astimezone(tz).hour == hour
        click_rate = min(0.95, click_rate * people.interest(row.lead_id) * (1.6 if on_time else 0.8))
        opened = next_local_hour(arrived, hour, tz) if not on_time else arrived + timedelta(minutes=7)
        if roll >= 0.7:
            return  # not read
        later = functools.partial(self._later, lead_id=row.lead_id)
        later(opened, kind="open", props={"send": row.id}, key=f"demo-open-{row.id}")
        if people.leaves(address) and row.lead_id not in self.left and people.roll("leave", row.idempotency_key) < 0.4:
            self.left.add(row.lead_id)
            self.agenda.plan(opened + timedelta(minutes=3), lambda at: self._leave(row, at))
            return
        if not link or roll >= click_rate:
            return
        clicked = opened + timedelta(minutes=2 + int(roll * 20))
        # As the tracking endpoint records a click: which email, journey and step.
        props = {"link": link, "send": row.id, "scenario": row.scenario_id, "step": row.step}
        later(clicked, kind="click", props={**props, "sent_at": arrived.isoformat()}, key=f"demo-click-{row.id}")
        for n, page in enumerate(PAGES.get(link, ())[: 1 + int(people.roll("pages", row.id) * 2)]):
            later(clicked + timedelta(minutes=1 + n), kind="page_view", props={"url": SITE + page},
                  key=f"demo-page-{row.id}-{n}")  # fmt: skip
        if follow_up == "form_fill":
            if people.roll("form", row.id) < 0.6:
                later(clicked + timedelta(minutes=6), kind="form_fill", props={"form": "demo-request", "send": row.id},
                      key=f"demo-form-{row.id}")  # fmt: skip
        elif follow_up:
            later(clicked + timedelta(minutes=5), kind=follow_up, props={"send": row.id}, key=f"demo-follow-{row.id}")
            if follow_up == "webinar_registered" and people.roll("attends", row.lead_id) < 0.5:
                later(clicked + timedelta(days=2), kind="webinar_attended", props={"webinar": "shop-floor-analytics"},
                      key=f"demo-attended-{row.lead_id}")  # fmt: skip
        if people.roll("pricing", row.lead_id) < 0.3:
            for n in range(2):
                later(clicked + timedelta(minutes=30 + n), kind="page_view", props={"url": f"{SITE}/pricing"},
                      key=f"demo-pricing-{row.id}-{n}")  # fmt: skip

    def _leave(self, row: SentEmail, at: datetime) -> None:
        """'Leave everything' on the preference page the email's link opens (its store call)."""
        lead = self.lead(row.lead_id)
        record = ConsentRecord(
            ALL_TOPICS, ConsentStatus.WITHDRAWN, ConsentSource.PREFERENCES, at, "preference centre",
            None, "demo reader", f"send {row.id}",
        )  # fmt: skip
        self.store.consents.leave_all(lead.id, lead.email, record, row.id)
        self.tally.add("unsubscribes")


class Complaints:
    """Spam complaints: an ARF report per complaint, through the real reader and handler."""

    def __init__(self, store: Store, settings: Settings, clock: Clock, tally: Tally) -> None:
        path = return_path_from_settings(settings)
        if path is None:
            raise NurtureError("the demo needs a bounce domain for its complaint reports")
        self.return_path: ReturnPath = path
        self.reader = ReportReader(path)
        self.handler = FeedbackHandler(store, settings, clock)
        self.tally = tally

    def file(self, send: SentEmail, recipient: str, at: datetime) -> None:
        verp = self.return_path.address(send.id)
        report = arf_report(send, recipient, verp, at)
        stats = self.handler.handle(self.reader.read(report, [verp]), report)
        self.tally.add("complaints", stats.events - stats.duplicates)
        self.tally.add("scenarios paused by the reputation guard", len(stats.paused))


class Sales:
    """Sales owners deciding on hot leads, then on the deals they accepted.

    A hot lead is looked at one or two working mornings after its promotion by its owner
    (the scoring file's routing put them on the lead): accepted with a chance that grows with
    fit and engagement, else rejected with the reason its profile gives, or recycled; an
    accepted lead's deal is won or lost a week or two later, again more often for a good fit."""

    def __init__(self, store: Store, people: People, agenda: Agenda, tally: Tally, score: Scorer) -> None:
        self.store, self.people, self.agenda, self.tally = store, people, agenda, tally
        self.score = score  # (fit, engagement) of a lead as of a time, as `nurture score explain` shows it
        self.planned: set[tuple[int, str]] = set()
        self.converted: dict[str, datetime] = {}  # email → when sales first accepted the lead

    def review(self) -> None:
        """Plan a look at each lead that became hot since the last review."""
        for row in self.store.reports.inbox(hot_limit=10_000, recent_limit=0).hot:
            promoted = row.promoted_at
            if promoted is None:
                continue
            key = (row.id, promoted.isoformat())
            if key in self.planned:
                continue
            self.planned.add(key)
            days = 1 + int(self.people.roll("triage-delay", *key) * 2)
            minute = int(self.people.roll("triage-minute", *key) * 50)
            self.agenda.plan(working_morning(promoted, days, minute), functools.partial(self._triage, key))

    def _odds(self, lead: Any, at: datetime, base: float) -> float:
        fit, engagement = self.score(lead, at)
        return min(0.9, max(0.05, base + 0.55 * min(fit, 100) / 100 + 0.3 * min(engagement, 80) / 80))

    def _decide(self, lead: Any, action: str, reason: str, at: datetime, what: str) -> None:
        """`action` as `nurture sales <action> EMAIL --reason REASON --by OWNER` does it."""
        feedback(self.store, lead.email, action, reason, lead.owner or "sales", at)
        if action in ("accept", "won"):
            self.converted.setdefault(lead.email, at)
        self.tally.add(what)

    def _triage(self, key: tuple[int, str], at: datetime) -> None:
        lead = self.store.leads.by_id(key[0])
        if lead is None or lead.lifecycle_stage != Stage.HOT:
            return
        roll = self.people.roll("triage", *key)
        accept = self._odds(lead, at, -0.05)
        if roll < accept:
            self._decide(lead, "accept", ACCEPT_REASONS[int(self.people.roll("why", *key) * 3)], at, "accepted")
            days = 2 + int(self.people.roll("deal-delay", *key) * 3)
            self.agenda.plan(working_morning(at, days, 30), lambda when: self._deal(key, when))
        elif roll < accept + (1 - accept) * 0.6:
            self._decide(lead, "reject", self._rejection(lead, key), at, "rejected")
        else:
            self._decide(lead, "recycle", RECYCLE_REASONS[int(self.people.roll("why", *key) * 2)], at, "recycled")

    def _rejection(self, lead: Any, key: tuple[int, str]) -> str:
        title = (lead.job_title or "").lower()
        if (lead.company_size or 0) < 200:
            return "company too small"
        if not any(word in title for word in DECISION_MAKERS):
            return "not a decision maker"
        return "no budget" if self.people.roll("no-budget", *key) < 0.5 else "already uses a competitor"

    def _deal(self, key: tuple[int, str], at: datetime) -> None:
        lead = self.store.leads.by_id(key[0])
        if lead is None or lead.lifecycle_stage != Stage.ACCEPTED:
            return
        roll = self.people.roll("deal", *key)
        win = self._odds(lead, at, 0.25)
        if roll < win:
            self._decide(lead, "won", WON_REASONS[int(self.people.roll("won-why", *key) * 2)], at, "deals won")
        elif roll < win + (1 - win) * 0.5:
            self._decide(lead, "reject", LOST_REASONS[int(self.people.roll("lost-why", *key) * 2)], at, "deals lost")
        else:
            self._decide(lead, "recycle", "budget moved to next year", at, "deals recycled")


class Marketing:
    """Marketing reads the reputation guard's email and resumes a paused scenario the next
    working morning (what `nurture scenario resume` does)."""

    def __init__(self, store: Store, agenda: Agenda, tally: Tally) -> None:
        self.store, self.agenda, self.tally = store, agenda, tally
        self.planned: set[tuple[str, str]] = set()

    def review(self) -> None:
        for pause in self.store.feedback.paused().values():
            key = (pause.scenario_id, pause.paused_at.isoformat())
            if key not in self.planned:
                self.planned.add(key)
                self.agenda.plan(working_morning(pause.paused_at, 1, 0), functools.partial(self._resume, key[0]))

    def _resume(self, scenario_id: str, at: datetime) -> None:
        if self.store.feedback.resume(scenario_id, "marketing", at):
            self.tally.add("scenarios resumed by marketing")


def write_outcomes(path: Path, readers: Readers, sales: Sales, end: datetime) -> tuple[int, int]:
    """The CRM's view for `nurture score learn`: every lead that was mailed, converted when
    sales accepted it (a sales-qualified opportunity, won or not since: what `score backtest`
    counts as good), as of its acceptance; the others as of the end. Returns (rows, converted)."""
    lines = ["email,converted,at"]
    for lead_id in sorted(readers.received):
        email = readers.lead(lead_id).email
        at = sales.converted.get(email)
        lines.append(f"{email},{'yes' if at else 'no'},{(at or end).astimezone(UTC).isoformat()}")
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return len(lines) - 1, sum(1 for line in lines[1:] if ",yes," in line)
