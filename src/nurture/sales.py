"""Sales feedback on leads: accept, reject, recycle, won; and logged activities."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import insert, update

from nurture.errors import NurtureError
from nurture.qualify import change_stage
from nurture.store.repo import E, L, Store
from nurture.store.tables import Activity

ACT = Activity.__table__  # type: ignore[attr-defined]

FEEDBACK = {"accept": "accepted", "reject": "rejected", "recycle": "recycled", "won": "customer"}
ALLOWED_FROM = {
    "accept": {"hot", "warm", "cold", "recycled"},
    "reject": {"hot", "accepted", "warm", "cold"},
    "recycle": {"hot", "accepted", "rejected", "warm"},
    "won": {"hot", "accepted", "warm", "cold", "recycled"},
}


def feedback(store: Store, email: str, action: str, reason: str, actor: str, now: datetime) -> tuple[str, str]:
    """Apply sales feedback; returns (old stage, new stage).

    Recycling sends the lead back to nurture: its engagement starts afresh (so it is not
    promoted again at once) and the re-engagement scenario's entry criteria see it.
    """
    if action not in FEEDBACK:
        raise NurtureError(f"unknown feedback {action!r}; use one of {', '.join(FEEDBACK)}")
    if not reason.strip():
        raise NurtureError("feedback needs a reason")
    lead = store.lead_by_email(email)
    if lead is None:
        raise NurtureError(f"no lead with email {email}")
    old, new = lead.lifecycle_stage, FEEDBACK[action]
    if old not in ALLOWED_FROM[action]:
        raise NurtureError(f"cannot {action} a lead that is {old}")
    with store.engine.begin() as conn:
        change_stage(store, conn, lead.id, old, new, reason, actor, now)
        conn.execute(insert(ACT).values(lead_id=lead.id, at=now, kind=f"feedback:{action}", note=reason, actor=actor))
        if action == "recycle":
            conn.execute(
                update(L).where(L.c.id == lead.id).values(engagement_since=now, score_engagement=0, score_adjustment=0)
            )
        # Scenarios that exit on these stages should see the change at once.
        conn.execute(update(E).where(E.c.lead_id == lead.id, E.c.status == "active").values(due_at=now))
    return old, new


def log_activity(store: Store, email: str, kind: str, note: str, actor: str, now: datetime) -> None:
    lead = store.lead_by_email(email)
    if lead is None:
        raise NurtureError(f"no lead with email {email}")
    if not kind.strip():
        raise NurtureError("an activity needs a kind, e.g. call, meeting, survey")
    with store.engine.begin() as conn:
        conn.execute(insert(ACT).values(lead_id=lead.id, at=now, kind=kind.strip(), note=note, actor=actor))
