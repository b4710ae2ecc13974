"""The one shape every delivery report, complaint and ESP event is read into."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

from nurture.mail.status import Verdict


class FeedbackKind(StrEnum):
    HARD_BOUNCE = "hard_bounce"  # the mailbox is gone: suppress
    SOFT_BOUNCE = "soft_bounce"  # transient: counted; several within a period suppress
    POLICY_BOUNCE = "policy_bounce"  # refused for the message or the sender: never suppresses
    DELAYED = "delayed"  # still trying: nothing to do
    COMPLAINT = "complaint"  # marked as spam: unsubscribe from all marketing and suppress
    DELIVERED = "delivered"
    OPEN = "open"
    CLICK = "click"
    UNSUBSCRIBE = "unsubscribe"


BOUNCE_KINDS = {
    Verdict.HARD: FeedbackKind.HARD_BOUNCE,
    Verdict.SOFT: FeedbackKind.SOFT_BOUNCE,
    Verdict.POLICY: FeedbackKind.POLICY_BOUNCE,
    Verdict.DELIVERED: FeedbackKind.DELIVERED,
}


@dataclass(frozen=True)
class FeedbackEvent:
    """One thing a receiver or an ESP reported about one message to one recipient.

    `send_id` is set only when the report proved which send it is about (a verified per-send
    return path, or an ESP event carrying the send's id inside a signed request); reports
    without it are kept for the record but change nothing."""

    kind: FeedbackKind
    source: str  # "dsn", "arf", "ses", "sendgrid", "mailgun", "postmark"
    recipient: str | None = None
    send_id: int | None = None
    message_id: str | None = None
    status: str | None = None  # enhanced status code, "5.1.1"
    code: int | None = None  # basic reply code, 550
    diagnostic: str = ""  # the receiver's reply or the report's words, as given
    occurred_at: datetime | None = None
    event_id: str | None = None  # the provider's id, so a redelivered webhook counts once
    user_agent: str | None = None  # opens and clicks: lets scoring tell machines from people
    url: str | None = None  # clicks

    @property
    def suppresses(self) -> bool:
        """Whether this event alone suppresses the recipient."""
        return self.kind in (FeedbackKind.HARD_BOUNCE, FeedbackKind.COMPLAINT)
