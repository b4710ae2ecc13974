"""Lifecycle stages: who may move a lead where, and the hand-over of hot leads to sales.

    cold ──score──▶ warm ──score──▶ hot ──sales──▶ accepted ──sales──▶ customer
      ▲                              │ └─sales─▶ rejected
      └──────── recycled ◀──sales────┘

The score moves leads among cold, warm and recycled and makes them hot (`SCORED`); an
account, as an account, is cold or hot by its own line and gets one hand-off when it
turns hot (`account_hand_over`), listing its engaged people;
every other move is sales feedback (`FEEDBACK`, allowed from `ALLOWED_FROM`). Every
change is recorded with who or what made it and why.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any, Protocol
from urllib.parse import quote

from nurture.errors import NurtureError
from nurture.scenario.expr import EventRecord
from nurture.scoring.engine import CompiledScoring, ScoreResult
from nurture.scoring.model import Owner
from nurture.store import Connection, Store
from nurture.vocabulary import NotificationKind, NotificationStatus, Stage

# Stages the score may change; sales owns the rest.
SCORED = (Stage.COLD, Stage.WARM, Stage.RECYCLED)
# Stages that count as converted (hot or further along, and not turned away).
CONVERTED = (Stage.HOT, Stage.ACCEPTED, Stage.CUSTOMER)

FEEDBACK = {"accept": Stage.ACCEPTED, "reject": Stage.REJECTED, "recycle": Stage.RECYCLED, "won": Stage.CUSTOMER}
ALLOWED_FROM = {
    "accept": {Stage.HOT, Stage.WARM, Stage.COLD, Stage.RECYCLED},
    "reject": {Stage.HOT, Stage.ACCEPTED, Stage.WARM, Stage.COLD},
    "recycle": {Stage.HOT, Stage.ACCEPTED, Stage.REJECTED, Stage.WARM},
    "won": {Stage.HOT, Stage.ACCEPTED, Stage.WARM, Stage.COLD, Stage.RECYCLED},
}


class Routed(Protocol):
    """What owner routing reads of a lead."""

    @property
    def country(self) -> str | None: ...
    @property
    def industry(self) -> str | None: ...


class HandedOver(Protocol):
    """What the hand-over reads of a lead."""

    id: int
    email: str
    first_name: str | None
    last_name: str | None
    company: str | None
    job_title: str | None
    country: str | None
    company_size: int | None
    industry: str | None


def scored_stage(stage: str, result: ScoreResult) -> Stage | None:
    """The stage a score moves a lead of `stage` to, or None when it stays."""
    if stage not in SCORED:
        return None
    if result.hot:
        return Stage.HOT
    if result.warm and stage == Stage.COLD:
        return Stage.WARM
    return None


def feedback_actions(stage: str) -> list[str]:
    """The sales feedback a lead of `stage` may be given."""
    return [action for action, allowed in ALLOWED_FROM.items() if stage in allowed]


def needed_for(scoring: CompiledScoring, grade: str) -> int | None:
    """Engagement a lead of `grade` needs to be hot; None when that grade never is."""
    return {str(g): n for g, n in scoring.model.hot.engagement.items()}.get(grade)


def explain(result: ScoreResult) -> list[str]:
    """The reasons a score is what it is, strongest first."""
    parts = sorted(result.contributions, key=lambda c: -c.points)
    return [f"{c.rule} (+{c.points:g}{', ' + c.note if c.note else ''})" for c in parts if c.points]


def change_stage(
    store: Store, conn: Connection, lead_id: int, old: str, new: str, reason: str, actor: str, now: datetime
) -> None:
    """Move a lead to `new` and record who or what moved it and why."""
    store.leads.set_stage(conn, lead_id, old, new, reason, actor, now)


def change_stages(
    store: Store, conn: Connection, moves: Sequence[tuple[int, str, str]], new: str, actor: str, now: datetime
) -> None:
    """`change_stage` for many leads moving to `new` (lead id, old stage, reason), in one go."""
    store.leads.set_stages(conn, moves, new, actor, now)


def route_owner(scoring: CompiledScoring, row: Routed, turn: int) -> tuple[Owner, bool]:
    """The owner for a lead: a territory (country/industry) match, else the `turn`-th owner
    of the general pool; the flag says whether the round-robin was used."""
    owners = scoring.model.routing.owners
    for owner in owners:
        in_country = not owner.countries or (row.country or "") in owner.countries
        in_industry = not owner.industries or (row.industry or "") in owner.industries
        if (owner.countries or owner.industries) and in_country and in_industry:
            return owner, False
    pool = [o for o in owners if not o.countries and not o.industries] or list(owners)
    return pool[turn % len(pool)], True


def assign_owner(store: Store, conn: Connection, scoring: CompiledScoring, row: Routed) -> Owner:
    """Route a lead to its owner, taking the next round-robin turn when the pool is used."""
    turn = int(store.settings.get(conn, "owner:round_robin") or 0)
    owner, rotated = route_owner(scoring, row, turn)
    if rotated:
        store.settings.put(conn, "owner:round_robin", str(turn + 1))
    return owner


def hand_over(
    scoring: CompiledScoring | None,
    row: HandedOver,
    owner: Owner,
    key: str,
    subject: str,
    why: list[str],
    events: list[EventRecord],
    score: dict[str, Any],
    now: datetime,
    event: str,
) -> list[dict[str, Any]]:
    """Notification rows (email to the owner, webhook when configured) that hand a lead to sales.

    Without a scoring file (a project's `default_owner` receives hand-offs) there is no
    webhook, and the link points at the default dashboard address."""
    dashboard = scoring.model.routing.dashboard_url if scoring is not None else "http://localhost:8025"
    webhook = scoring.model.routing.webhook_url if scoring is not None else None
    payload = {
        "event": event,
        "lead": {
            "id": row.id,
            "email": row.email,
            "name": " ".join(p for p in (row.first_name, row.last_name) if p),
            "company": row.company,
            "job_title": row.job_title,
            "country": row.country,
            "company_size": row.company_size,
            "industry": row.industry,
        },
        "score": score,
        "why": why,
        "last_activities": [
            {
                "type": e.type,
                "at": e.at.isoformat(),
                **{k: str(v) for k, v in e.props.items() if k in ("url", "link", "asset")},
            }
            for e in sorted(events, key=lambda e: e.at)[-5:]
        ],
        "owner": {"name": owner.name, "email": owner.email},
        "link": f"{dashboard.rstrip('/')}/leads/{row.id}",
        "at": now.isoformat(),
    }
    rows = [
        {
            "key": f"{key}:email",
            "kind": NotificationKind.EMAIL,
            "lead_id": row.id,
            "target": owner.email,
            "subject": subject,
            "payload": payload,
            "status": NotificationStatus.PENDING,
            "attempts": 0,
            "created_at": now,
            "next_attempt_at": now,
        }
    ]
    if webhook:
        rows.append(
            {
                **rows[0],
                "key": f"{key}:webhook",
                "kind": NotificationKind.WEBHOOK,
                "target": webhook,
                "subject": "",
            }
        )
    return rows


def account_hand_over(
    scoring: CompiledScoring,
    account: str,
    owner: Owner,
    key: str,
    detail: dict[str, Any],
    lead_id: int | None,
    now: datetime,
) -> list[dict[str, Any]]:
    """One hand-off for a hot account (email to its owner, webhook when configured), listing
    the engaged people, instead of one alert per colleague."""
    people = detail.get("people", [])
    payload = {
        "event": "account.hot",
        "account": account,
        "engagement": detail.get("engagement"),
        "size": detail.get("size"),
        "people": people,
        "owner": {"name": owner.name, "email": owner.email},
        "link": f"{scoring.model.routing.dashboard_url.rstrip('/')}/leads?q={quote(account)}",
        "at": now.isoformat(),
    }
    subject = f"Hot account: {account} ({len(people)} engaged people, engagement {detail.get('engagement')})"
    rows = [
        {
            "key": f"{key}:email",
            "kind": NotificationKind.EMAIL,
            "lead_id": lead_id,
            "target": owner.email,
            "subject": subject,
            "payload": payload,
            "status": NotificationStatus.PENDING,
            "attempts": 0,
            "created_at": now,
            "next_attempt_at": now,
        }
    ]
    if scoring.model.routing.webhook_url:
        rows.append(
            {
                **rows[0],
                "key": f"{key}:webhook",
                "kind": NotificationKind.WEBHOOK,
                "target": scoring.model.routing.webhook_url,
                "subject": "",
            }
        )
    return rows


def feedback(store: Store, email: str, action: str, reason: str, actor: str, now: datetime) -> tuple[str, str]:
    """Apply sales feedback; returns (old stage, new stage).

    Recycling sends the lead back to nurture: its engagement starts afresh (so it is not
    promoted again at once) and the re-engagement scenario's entry criteria see it.
    """
    if action not in FEEDBACK:
        raise NurtureError(f"unknown feedback {action!r}; use one of {', '.join(FEEDBACK)}")
    if not reason.strip():
        raise NurtureError("feedback needs a reason")
    lead = store.leads.by_email(email)
    if lead is None:
        raise NurtureError(f"no lead with email {email}")
    old, new = lead.lifecycle_stage, FEEDBACK[action]
    if old not in ALLOWED_FROM[action]:
        raise NurtureError(f"cannot {action} a lead that is {old}")
    with store.transaction() as conn:
        change_stage(store, conn, lead.id, old, new, reason, actor, now)
        store.leads.log_activity(conn, lead.id, f"feedback:{action}", reason, actor, now)
        if action == "recycle":
            store.leads.restart_engagement(conn, lead.id, now)
        # Scenarios that exit on these stages should see the change at once.
        store.enrolments.wake(conn, lead.id, now)
    return old, new


def log_activity(store: Store, email: str, kind: str, note: str, actor: str, now: datetime) -> None:
    """Record what sales did or learned about a lead (a call, a meeting, a survey answer)."""
    lead = store.leads.by_email(email)
    if lead is None:
        raise NurtureError(f"no lead with email {email}")
    if not kind.strip():
        raise NurtureError("an activity needs a kind, e.g. call, meeting, survey")
    with store.transaction() as conn:
        store.leads.log_activity(conn, lead.id, kind.strip(), note, actor, now)
