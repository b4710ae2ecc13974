"""Turning an outbox row into the bytes of an email: render, sign links, assemble MIME.

This is the CPU-heavy half of sending. `Composer` holds only plain settings, so it can run
in the sending process or in worker processes beside it (`NURTURE_RENDER_PROCESSES`),
which then render the next messages while the sender talks SMTP.
"""

from __future__ import annotations

import multiprocessing
import multiprocessing.connection
import os
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from nurture.mail.deliverability import add_open_pixel
from nurture.mail.dkim import Signers
from nurture.mail.footer import SenderIdentity
from nurture.mail.links import LinkTracker
from nurture.mail.message import BuiltMessage, MessageError, build_message, message_id_for
from nurture.mail.names import full_name
from nurture.mail.tracking import Links
from nurture.mail.verp import ReturnPath
from nurture.scenario.expr import Record
from nurture.scenario.templates import TemplateError, TemplateStore
from nurture.store.leads import lead_view

Composed = BuiltMessage | TemplateError | MessageError


@dataclass
class Composer:
    templates_dir: Path
    base_url: str
    secret_key: str
    mail_domain: str
    unsubscribe_mailto: str | None = None
    scenario_names: dict[str, str] = field(default_factory=dict)
    scenario_utm: dict[str, dict[str, str]] = field(default_factory=dict)
    name_order: str = "auto"
    untracked_opens: frozenset[str] = frozenset()  # scenarios that turned open tracking off
    list_domain: str | None = None  # List-Id is <scenario id>.<this>, else .<mail_domain>
    signer: Signers | None = None
    return_path: ReturnPath | None = None
    sender: SenderIdentity | None = None
    confirmation_valid_hours: int = 168
    _templates: TemplateStore | None = field(default=None, repr=False)

    @property
    def templates(self) -> TemplateStore:
        if self._templates is None:
            self._templates = TemplateStore(self.templates_dir)
        return self._templates

    @property
    def _sender(self) -> dict[str, Any]:
        return (self.sender or SenderIdentity("", "")).as_context()

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_templates": None}  # each process loads the templates itself

    def compose(self, row: Mapping[str, Any], lead_row: Mapping[str, Any], now: datetime) -> BuiltMessage:
        if row.get("kind") == "confirmation":
            return self.compose_confirmation(row, lead_row, now)
        lead = lead_view(lead_row)
        links = Links(self.base_url, self.secret_key, row["id"], lead_row["id"])
        tracker = LinkTracker(links.click, self.base_url, self.scenario_utm.get(row["scenario_id"]))
        unsubscribe_url = links.unsubscribe()
        name = full_name(lead.fields, self.name_order)
        context = {
            "lead": Record(lead.fields),
            "score": Record(lead.score),
            "scenario": self.scenario_names.get(row["scenario_id"], row["scenario_id"]),
            "unsubscribe_url": unsubscribe_url,
            "link": tracker.tracked_named,
            "full_name": name,
            "now": now,
            "sender": self._sender,
        }
        rendered = self.templates.render(row["template"], row["subject"], context)
        body = tracker.html(rendered.html)
        text = tracker.text(rendered.text)
        # A hidden link no person sees: scanners follow every link, so a request for it marks one.
        hidden = f'<a href="{links.honeypot()}" style="display:none" aria-hidden="true" tabindex="-1"></a>'
        html = body.replace("</body>", hidden + "</body>", 1) if "</body>" in body else body + hidden
        if row["scenario_id"] not in self.untracked_opens:
            html = add_open_pixel(html, links.open_pixel())
        return build_message(
            sender=row["sender"],
            to_email=lead_row["email"],
            to_name=name,
            subject=rendered.subject,
            text=text,
            html=html,
            message_id=message_id_for(row["idempotency_key"], self.mail_domain),
            unsubscribe_url=unsubscribe_url,
            unsubscribe_mailto=self.unsubscribe_mailto,
            idempotency_key=row["idempotency_key"],
            reply_to=row["reply_to"],
            date=now,
            list_id=f"{row['scenario_id'].replace('_', '-')}.{self.list_domain or self.mail_domain}",
            list_name=self.scenario_names.get(row["scenario_id"], row["scenario_id"]),
            return_path=self.return_path.address(row["id"]) if self.return_path else None,
            signer=self.signer,
        )

    def compose_confirmation(self, row: Mapping[str, Any], lead_row: Mapping[str, Any], now: datetime) -> BuiltMessage:
        """The built-in double opt-in email for the topic in the row's `step`: a signed link
        that works for `confirmation_valid_hours`, and the sender's identity."""
        from nurture.consent.pages import render_confirmation_email
        from nurture.consent.tokens import confirmation_token, preferences_token

        valid_for = timedelta(hours=self.confirmation_valid_hours)
        base = self.base_url.rstrip("/")
        token = confirmation_token(self.secret_key, lead_row["id"], row["step"], now, valid_for)
        preferences_url = f"{base}/u/{preferences_token(self.secret_key, lead_row['id'])}"
        email = render_confirmation_email(
            sender=self.sender or SenderIdentity("", ""),
            email=lead_row["email"],
            first_name=lead_row["first_name"],
            last_name=lead_row["last_name"],
            country=lead_row["country"],
            topic=row["step"],
            confirm_url=f"{base}/consent/confirm/{token}",
            preferences_url=preferences_url,
            expires_at=now + valid_for,
            timezone=lead_row["timezone"],
        )
        return build_message(
            sender=row["sender"],
            to_email=lead_row["email"],
            to_name=full_name(lead_view(lead_row).fields, self.name_order),
            subject=email.subject,
            text=email.text,
            html=email.html,
            message_id=message_id_for(row["idempotency_key"], self.mail_domain),
            unsubscribe_url=preferences_url,
            unsubscribe_mailto=self.unsubscribe_mailto,
            idempotency_key=row["idempotency_key"],
            date=now,
            return_path=self.return_path.address(row["id"]) if self.return_path is not None else None,
            signer=self.signer,
        )

    def compose_one(self, row: Mapping[str, Any], lead_row: Mapping[str, Any], now: datetime) -> Composed:
        """The message, or the error that stopped it (a broken template, an unusable address, or
        anything else that made this one message impossible to build: it fails alone)."""
        try:
            return self.compose(row, lead_row, now)
        except (TemplateError, MessageError) as exc:
            return exc
        except Exception as exc:
            return MessageError(f"the message could not be built: {type(exc).__name__}: {exc}")

    def compose_many(
        self, items: Sequence[tuple[Mapping[str, Any], Mapping[str, Any]]], now: datetime
    ) -> list[Composed]:
        """A chunk in a render process: templates are looked at afresh once per chunk."""
        self.templates.refresh()
        return [self.compose_one(row, lead_row, now) for row, lead_row in items]


_worker: Composer | None = None


def start_worker(composer: Composer) -> None:
    """Initialiser of a render process. The process ends with its daemon, even one killed
    outright: it would otherwise wait forever on a queue nobody writes to."""
    global _worker
    _worker = composer
    parent = multiprocessing.parent_process()
    if parent is not None:
        threading.Thread(target=_exit_with, args=(parent.sentinel,), daemon=True).start()


def _exit_with(parent_sentinel: int) -> None:
    multiprocessing.connection.wait([parent_sentinel])
    os._exit(0)


def compose_in_worker(items: Sequence[tuple[Mapping[str, Any], Mapping[str, Any]]], now: datetime) -> list[Composed]:
    assert _worker is not None, "render process started without a composer"
    return _worker.compose_many(items, now)
