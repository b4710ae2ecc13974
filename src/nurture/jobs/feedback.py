"""Acting on feedback: each report's events are recorded and decided on (suppress,
unsubscribe, count a soft bounce), the lead's timeline gets the decision with the
receiver's own words, and scenarios whose recent sends draw too many complaints or hard
bounces are paused, with marketing told.

One report is one transaction: either everything it caused is stored, or nothing (the
intake then leaves it for a retry). A webhook event seen before changes nothing again.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from html import escape

from nurture.clock import Clock
from nurture.config import Settings
from nurture.feedback.events import FeedbackEvent, FeedbackKind
from nurture.feedback.policy import SoftBouncePolicy, decide
from nurture.feedback.reputation import ReputationPolicy, judge
from nurture.store import Connection, Store
from nurture.store.feedback import SendTarget
from nurture.vocabulary import NotificationKind, SendStatus

# Sources whose requests were verified by signature or credentials: their recipient is trusted.
ESP_SOURCES = frozenset({"ses", "sendgrid", "mailgun", "postmark"})
_TIMELINE_KINDS = {
    FeedbackKind.HARD_BOUNCE,
    FeedbackKind.SOFT_BOUNCE,
    FeedbackKind.POLICY_BOUNCE,
    FeedbackKind.COMPLAINT,
    FeedbackKind.UNSUBSCRIBE,
}


@dataclass
class FeedbackStats:
    events: int = 0
    duplicates: int = 0
    unverified: int = 0
    suppressed: int = 0
    paused: list[str] = field(default_factory=list)


def soft_policy(settings: Settings) -> SoftBouncePolicy:
    return SoftBouncePolicy(settings.soft_bounce_limit, timedelta(days=settings.soft_bounce_days))


def reputation_policy(settings: Settings) -> ReputationPolicy:
    return ReputationPolicy(
        window=settings.reputation_window,
        min_sends=settings.reputation_min_sends,
        max_complaint_rate=settings.max_complaint_rate,
        max_hard_bounce_rate=settings.max_hard_bounce_rate,
    )


class FeedbackHandler:
    def __init__(self, store: Store, settings: Settings, clock: Clock) -> None:
        self.store = store
        self.settings = settings
        self.clock = clock
        self.soft = soft_policy(settings)
        self.reputation = reputation_policy(settings)

    def handle(self, events: list[FeedbackEvent], report: bytes | None = None) -> FeedbackStats:
        """Record and act on the events of one report or webhook request, in one transaction."""
        stats = FeedbackStats()
        now = self.clock.now()
        touched: set[str] = set()
        with self.store.transaction() as conn:
            for event in events:
                scenario = self._one(conn, event, now, stats)
                if scenario:
                    touched.add(scenario)
            for scenario_id in sorted(touched):
                if self._guard(conn, scenario_id, now):
                    stats.paused.append(scenario_id)
        return stats

    def _one(self, conn: Connection, event: FeedbackEvent, now: datetime, stats: FeedbackStats) -> str | None:
        esp = event.source in ESP_SOURCES
        target: SendTarget | None = None
        if event.send_id is not None or (esp and event.message_id):
            target = self.store.feedback.target(conn, event.send_id, event.message_id if esp else None)
        authenticated = esp or target is not None
        email = target.email if target else (event.recipient or "").strip().lower()
        lead_id = target.lead_id if target else (self.store.feedback.lead_id(conn, email) if esp and email else None)
        if esp and target is None and lead_id is None:
            authenticated = False  # a verified event about nobody we know
        recent = self.store.feedback.soft_bounces(conn, email, now - self.soft.period) if email else 0
        decision = decide(event, authenticated=authenticated, recent_soft_bounces=recent, policy=self.soft)
        fresh = self.store.feedback.record(
            conn, event, target=target, lead_id=lead_id, authenticated=authenticated, decision=decision.note, now=now
        )
        stats.events += 1
        if not fresh:
            stats.duplicates += 1
            return None
        if not authenticated:
            stats.unverified += 1
            return None
        if decision.suppress and email:
            self.store.leads.suppress(conn, email, decision.suppress, f"{event.source}: {event.diagnostic}"[:1000])
            stats.suppressed += 1
        elif decision.unsubscribe and email:
            self.store.leads.suppress(conn, email, "unsubscribe", f"{event.source}: unsubscribed")
        if lead_id is not None and event.kind in _TIMELINE_KINDS:
            reply = f" — {event.source}: {event.diagnostic}" if event.diagnostic else ""
            self.store.leads.log_activity(conn, lead_id, f"email_{event.kind}", decision.note + reply, "nurture", now)
            if decision.suppress or decision.unsubscribe:
                self.store.enrolments.wake(conn, lead_id, now)
        if lead_id is not None and event.kind in (FeedbackKind.OPEN, FeedbackKind.CLICK):
            props = {"send": target.send_id if target else None, "source": event.source, "user_agent": event.user_agent}
            if event.url:
                props["url"] = event.url
            self.store.events.record(
                conn,
                lead_id,
                str(event.kind),
                event.occurred_at or now,
                props,
                external_id=f"{event.source}:{event.event_id}" if event.event_id else None,
            )
        if target and event.kind in (FeedbackKind.HARD_BOUNCE, FeedbackKind.COMPLAINT):
            return target.scenario_id
        return None

    def _guard(self, conn: Connection, scenario_id: str, now: datetime) -> bool:
        """Pause `scenario_id` when its recent sends are over a limit; True when it was paused now."""
        verdict = judge(self.store.feedback.outcomes(conn, scenario_id, self.reputation.window), self.reputation)
        if not verdict.pause or not self.store.feedback.pause(conn, scenario_id, "; ".join(verdict.reasons), now):
            return False
        if self.settings.marketing_email:
            text = (
                f"nurture paused the scenario '{scenario_id}': {'; '.join(verdict.reasons)}.\n\n"
                "Its emails are held back, not dropped. Look at the bounces and complaints on the dashboard, "
                f"then resume it with `nurture scenario resume {scenario_id}` or the dashboard's button.\n"
                f"{self.settings.base_url.rstrip('/')}/scenarios/{scenario_id}\n"
            )
            self.store.notifications.add(
                conn,
                [
                    {
                        "key": f"paused:{scenario_id}:{now.isoformat()}"[:100],
                        "kind": NotificationKind.MESSAGE,
                        "target": self.settings.marketing_email,
                        "subject": f"Scenario paused: {scenario_id}",
                        "payload": {"text": text, "html": f"<pre>{escape(text)}</pre>"},
                        "status": SendStatus.PENDING,
                        "attempts": 0,
                        "created_at": now,
                        "next_attempt_at": now,
                    }
                ],
            )
        return True
