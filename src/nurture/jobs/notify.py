"""The notify job: deliver the notification outbox to sales, by email and signed webhook.

Webhooks are JSON POSTs signed with HMAC-SHA256 over `timestamp.body`:
`X-Nurture-Signature: t=<unix>,v1=<hex>`; `X-Nurture-Delivery` carries the
notification's key, the same on every retry, so receivers can ignore repeats.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import urllib.error
import urllib.request
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from nurture.clock import Clock
from nurture.config import Settings
from nurture.jobs.retry import retry_at
from nurture.mail.message import build_message, message_id_for
from nurture.mail.sender import BOUNCE, SmtpPool, classify
from nurture.store import Store
from nurture.store.leads import StageChange
from nurture.store.notifications import ClaimedNotification
from nurture.store.queue import Lease
from nurture.vocabulary import NotificationKind, NotificationStatus, Stage


def signature(secret: str, timestamp: int, body: bytes) -> str:
    mac = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={mac}"


def verify_signature(secret: str, header: str, body: bytes) -> bool:
    try:
        parts = dict(item.split("=", 1) for item in header.split(","))
        expected = signature(secret, int(parts["t"]), body)
    except (KeyError, ValueError):
        return False
    return hmac.compare_digest(expected, header)


def render_account(payload: dict[str, Any]) -> tuple[str, str]:
    """Text and HTML of a hot-account email to its owner: the account and its engaged people."""
    lines = [
        f"The account {payload['account']} is hot: engagement {payload.get('engagement')} "
        f"from {len(payload.get('people', []))} engaged people (of {payload.get('size') or '?'} known).",
        "",
        "Engaged people:",
        *[f"  - {p['email']} (own engagement {p['engagement']})" for p in payload.get("people", [])],
        "",
        f"Open the account: {payload['link']}",
    ]
    text = "\n".join(lines) + "\n"
    from html import escape

    return text, '<pre style="font-family: Helvetica, Arial, sans-serif">' + escape(text) + "</pre>"


def render_summary(payload: dict[str, Any]) -> tuple[str, str]:
    """Text and HTML of a hot-lead (or hot-account) email to its owner."""
    if payload.get("event") == "account.hot":
        return render_account(payload)
    lead, score = payload["lead"], payload["score"]
    lines = [
        f"{lead['name'] or lead['email']} ({lead['email']}) is hot.",
        f"Company: {lead.get('company') or '-'} · {lead.get('industry') or '-'} · {lead.get('company_size') or '?'} "
        f"people · {lead.get('country') or '-'}",
        f"Title: {lead.get('job_title') or '-'}",
        f"Score: fit grade {score['grade']} ({score['fit']}), engagement {score['engagement']}",
        "",
        "Why hot:",
        *[f"  - {reason}" for reason in payload["why"]],
        "",
        "Last activities:",
        *[
            f"  - {a['at'][:16].replace('T', ' ')} {a['type']} {a.get('url') or a.get('link') or ''}".rstrip()
            for a in payload["last_activities"]
        ],
        "",
        f"Open the lead: {payload['link']}",
    ]
    text = "\n".join(lines) + "\n"
    from html import escape

    html = '<pre style="font-family: Helvetica, Arial, sans-serif">' + escape(text) + "</pre>"
    return text, html


@dataclass
class NotifyStats:
    sent: int = 0
    retried: int = 0
    failed: int = 0


class Notifier:
    def __init__(
        self,
        store: Store,
        settings: Settings,
        clock: Clock,
        pool: SmtpPool,
        *,
        worker: str,
        sender: str = "nurture <nurture@localhost>",
    ) -> None:
        self.store = store
        self.settings = settings
        self.clock = clock
        self.pool = pool
        self.worker = worker
        self.sender = sender
        self.lease = timedelta(seconds=max(settings.lease_seconds, settings.smtp_timeout * 3))

    def _finish(self, row: ClaimedNotification, ok: bool, error: str | None, permanent: bool = False) -> bool:
        """Record an attempt's outcome; returns whether the row will be tried again."""
        now = self.clock.now()
        again = None
        if ok:
            status = NotificationStatus.SENT
        else:
            again = (
                None
                if permanent
                else retry_at(row.attempts, self.settings.max_attempts, self.settings.retry_base_seconds, now)
            )
            status = NotificationStatus.PENDING if again else NotificationStatus.FAILED
        self.store.notifications.finish(self.worker, row.id, status, now, error, again)
        return again is not None

    async def drain_once(self, limit: int = 100) -> NotifyStats:
        stats = NotifyStats()
        lease = Lease(self.lease)
        rows = await asyncio.to_thread(self.store.notifications.claim, self.worker, self.clock.now(), limit, self.lease)
        for index, row in enumerate(rows):
            if lease.past_half():
                # Never start a delivery on a lease that may run out: the rest go back.
                await asyncio.to_thread(self.store.notifications.release, self.worker, [r.id for r in rows[index:]])
                break
            try:
                if row.kind == NotificationKind.WEBHOOK:
                    await asyncio.to_thread(self._post, row)
                else:
                    await self._email(row)
            except Exception as exc:  # every failure is retried with backoff, then kept as failed
                permanent = isinstance(exc, urllib.error.HTTPError) and 400 <= exc.code < 500 and exc.code != 429
                permanent = permanent or (classify(exc).action == BOUNCE and row.kind == NotificationKind.EMAIL)
                again = await asyncio.to_thread(self._finish, row, False, f"{type(exc).__name__}: {exc}", permanent)
                if again:
                    stats.retried += 1
                else:
                    stats.failed += 1
                continue
            await asyncio.to_thread(self._finish, row, True, None)
            stats.sent += 1
        return stats

    async def _email(self, row: ClaimedNotification) -> None:
        if row.kind in (NotificationKind.DIGEST, NotificationKind.MESSAGE):
            text, html = row.payload["text"], row.payload["html"]
        else:
            text, html = render_summary(row.payload)
        key = f"notify-{row.id}-{row.key}".replace(":", "-")[:60]
        message = build_message(
            sender=self.sender,
            to_email=row.target,
            to_name=None,
            subject=row.subject,
            text=text,
            html=html,
            message_id=message_id_for(key, self.settings.mail_domain),
            unsubscribe_url=None,  # mail to colleagues: no list to leave
            unsubscribe_mailto=None,
            idempotency_key=key,
            date=self.clock.now(),
        )
        await self.pool.send(message)

    def _post(self, row: ClaimedNotification) -> None:
        body = json.dumps(row.payload, ensure_ascii=False, sort_keys=True).encode("utf-8")
        timestamp = int(self.clock.now().timestamp())
        request = urllib.request.Request(
            row.target,
            data=body,
            method="POST",
            headers={
                "Content-Type": "application/json",
                "User-Agent": "nurture-webhook/1",
                "X-Nurture-Delivery": row.key,
                "X-Nurture-Signature": signature(self.settings.secret_key, timestamp, body),
            },
        )
        with urllib.request.urlopen(request, timeout=self.settings.smtp_timeout) as response:
            if not 200 <= response.status < 300:
                raise urllib.error.HTTPError(row.target, response.status, "unexpected status", response.headers, None)


def queue_digests(store: Store, scoring: Any, now: datetime) -> int:
    """One email per owner listing the leads that became hot in the last day (once per day)."""
    from html import escape

    with store.transaction() as conn:
        by_owner: dict[str, list[StageChange]] = {}
        for row in store.leads.stage_changes(conn, Stage.HOT, now - timedelta(days=1)):
            if row.owner:
                by_owner.setdefault(row.owner, []).append(row)
        made = 0
        for owner, leads in by_owner.items():
            key = f"digest:{owner}:{now.date().isoformat()}"
            if store.notifications.exists(conn, key):
                continue
            lines = [f"{len(leads)} new hot lead(s) in the last 24 hours:", ""]
            lines += [
                f"- {' '.join(p for p in (r.first_name, r.last_name) if p) or r.email} ({r.email}), "
                f"{r.company or '-'}: {r.reason}"
                for r in leads
            ]
            text = "\n".join(lines) + "\n"
            digest = {
                "key": key,
                "kind": NotificationKind.DIGEST,
                "lead_id": None,
                "target": owner,
                "subject": f"Daily digest: {len(leads)} new hot lead(s)",
                "payload": {"text": text, "html": f"<pre>{escape(text)}</pre>"},
                "status": NotificationStatus.PENDING,
                "attempts": 0,
                "created_at": now,
                "next_attempt_at": now,
            }
            store.notifications.add(conn, [digest])
            made += 1
        return made
