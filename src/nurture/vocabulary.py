"""The words stored data is made of: statuses, lifecycle stages, event types, lead fields.

Each is a `StrEnum`, so a member is equal to (and stored as) its plain string: rows
written before these enums existed read the same, and SQL compares them as text.
"""

from __future__ import annotations

from enum import StrEnum


class EnrolmentStatus(StrEnum):
    """Where an enrolment is: still stepping, parked (its step raised; it stays in its
    scenario until an operator resumes it), or finished one way or the other."""

    ACTIVE = "active"
    PARKED = "parked"
    COMPLETED = "completed"
    EXITED = "exited"


class SendStatus(StrEnum):
    """An email in the outbox. `pending` and `sending` are the queue; the rest are outcomes."""

    PENDING = "pending"
    SENDING = "sending"
    SENT = "sent"
    FAILED = "failed"
    BOUNCED = "bounced"
    SUPPRESSED = "suppressed"
    SKIPPED = "skipped"  # not sent: no consent to the scenario's topic (the reason is kept)


class SendKind(StrEnum):
    """What an outbox row sends: a scenario's email, or the double opt-in confirmation."""

    EMAIL = "email"
    CONFIRMATION = "confirmation"


class NotificationStatus(StrEnum):
    """A message to sales in the notification outbox."""

    PENDING = "pending"
    SENDING = "sending"
    SENT = "sent"
    FAILED = "failed"


# Statuses of a row that is still in its queue (leased or waiting), for both outboxes.
QUEUED = (SendStatus.PENDING, SendStatus.SENDING)


class NotificationKind(StrEnum):
    EMAIL = "email"
    WEBHOOK = "webhook"
    DIGEST = "digest"
    MESSAGE = "message"  # a written-out email to a person (e.g. an experiment's decision to its owner)


class PromotionStatus(StrEnum):
    """A promotion the scores asked for: handed to sales, or held for review (over the limits)."""

    RELEASED = "released"
    HELD = "held"


class Stage(StrEnum):
    """A lead's lifecycle stage (see `nurture.lifecycle` for who may move it where)."""

    COLD = "cold"
    WARM = "warm"
    HOT = "hot"
    ACCEPTED = "accepted"
    REJECTED = "rejected"
    RECYCLED = "recycled"
    CUSTOMER = "customer"


class EventType(StrEnum):
    """The behaviour a lead can show; the one list scenarios, scoring and the API accept."""

    OPEN = "open"
    CLICK = "click"
    PAGE_VIEW = "page_view"
    DOWNLOAD = "download"
    FORM_FILL = "form_fill"
    WEBINAR_REGISTERED = "webinar_registered"
    WEBINAR_ATTENDED = "webinar_attended"
    REPLY = "reply"
    INQUIRY = "inquiry"
    UNSUBSCRIBE = "unsubscribe"
    BOUNCE = "bounce"
    CUSTOM = "custom"
    HONEYPOT = "honeypot"  # a request for the hidden link of an email: a scanner, never a person


EVENT_TYPES: tuple[str, ...] = tuple(EventType)

# The lead fields every lead has; scenarios may declare more in `lead_fields`.
STANDARD_FIELDS = (
    "email",
    "first_name",
    "last_name",
    "company",
    "company_size",
    "industry",
    "job_title",
    "country",
    "timezone",
    "source",
    "lifecycle_stage",
    "owner",
    "tags",
    "unsubscribed",
    "bounced",
    "created_at",
)
READ_ONLY_FIELDS = frozenset({"email", "created_at", "unsubscribed", "bounced", "lifecycle_stage"})

# What kind of value each built-in field holds; `validate` uses it to catch comparisons such
# as `lead.company_size >= "100名"` that can never hold.
FIELD_KINDS = {
    **{name: "text" for name in STANDARD_FIELDS},
    "company_size": "number",
    "unsubscribed": "boolean",
    "bounced": "boolean",
    "tags": "list",
    "created_at": "time",
}

# Fields nurture itself reads when a lead has them, without a scenario declaring them:
# `language` picks an email's language variant, `name_order` overrides how names are written.
OPTIONAL_FIELDS = ("language", "name_order")

__all__ = [
    "EVENT_TYPES",
    "FIELD_KINDS",
    "OPTIONAL_FIELDS",
    "QUEUED",
    "READ_ONLY_FIELDS",
    "STANDARD_FIELDS",
    "EnrolmentStatus",
    "EventType",
    "NotificationKind",
    "NotificationStatus",
    "SendStatus",
    "Stage",
]
