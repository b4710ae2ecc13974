"""What to do with one feedback event: suppress, unsubscribe, count, or only record it.

- A hard bounce (the mailbox does not exist) suppresses the address.
- A complaint unsubscribes the lead from all marketing and suppresses the address.
- Soft bounces are counted; `limit` of them within `period` suppress the address.
- Policy bounces (content, reputation, authentication) never suppress: they are about
  the message or the sender, and count towards the scenario's reputation instead.
- An unsubscribe reported by the ESP unsubscribes the lead.
- A report that cannot be tied to a send (no verified return path) and does not come from
  an authenticated webhook is recorded and changes nothing: anyone can send a bounce.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from nurture.feedback.events import FeedbackEvent, FeedbackKind


@dataclass(frozen=True)
class SoftBouncePolicy:
    limit: int = 3
    period: timedelta = timedelta(days=30)


@dataclass(frozen=True)
class Decision:
    suppress: str | None = None  # the reason recorded with the suppression
    unsubscribe: bool = False
    counts_soft: bool = False
    note: str = ""  # what the lead's timeline says, before the receiver's own words


def decide(
    event: FeedbackEvent, *, authenticated: bool, recent_soft_bounces: int, policy: SoftBouncePolicy
) -> Decision:
    """`recent_soft_bounces` counts the address's earlier soft bounces within the period."""
    if not authenticated:
        return Decision(note="unverified report: recorded, nothing changed")
    where = f" ({event.status})" if event.status else ""
    if event.kind is FeedbackKind.HARD_BOUNCE:
        return Decision(suppress="hard_bounce", note=f"hard bounce{where}: address suppressed")
    if event.kind is FeedbackKind.COMPLAINT:
        return Decision(
            suppress="complaint", unsubscribe=True, note="spam complaint: unsubscribed from all marketing, suppressed"
        )
    if event.kind is FeedbackKind.SOFT_BOUNCE:
        count = recent_soft_bounces + 1
        days = policy.period.days
        if count >= policy.limit:
            return Decision(
                suppress="soft_bounces",
                counts_soft=True,
                note=f"soft bounce{where}, {count} within {days} days: address suppressed",
            )
        return Decision(counts_soft=True, note=f"soft bounce{where}, {count} of {policy.limit} within {days} days")
    if event.kind is FeedbackKind.POLICY_BOUNCE:
        return Decision(note=f"refused by policy{where}: the address is not suppressed")
    if event.kind is FeedbackKind.UNSUBSCRIBE:
        return Decision(unsubscribe=True, note=f"unsubscribed through {event.source}")
    return Decision(note=str(event.kind).replace("_", " "))
