"""Where delivery reports come in: an SMTP listener for the bounce domain (`nurture bounces
serve`) and an IMAP mailbox read on demand (`nurture bounces fetch`).

Both hand each report's events, with the report itself, to a sink (the store, in the
product). A report is acknowledged only after the sink took it: the listener answers 451
when the sink fails, so the reporting server tries again later, and the fetcher leaves the
message unread for the next run.
"""

from __future__ import annotations

import asyncio
import contextlib
import imaplib
import logging
import re
import ssl
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from nurture.errors import NurtureError
from nurture.feedback.events import FeedbackEvent
from nurture.feedback.reports import ReportReader

log = logging.getLogger(__name__)

Sink = Callable[[list[FeedbackEvent], bytes], None]

MAX_REPORT_BYTES = 10 * 1024 * 1024


class IntakeError(NurtureError):
    """The bounce mailbox or listener cannot be used (login refused, no such folder)."""


class BounceHandler:
    """aiosmtpd handler for the bounce domain: accepts mail for its addresses only."""

    def __init__(self, reader: ReportReader, sink: Sink, domains: Sequence[str]) -> None:
        self.reader = reader
        self.sink = sink
        self.domains = {d.lower() for d in domains}

    async def handle_RCPT(self, server: Any, session: Any, envelope: Any, address: str, rcpt_options: list[str]) -> str:
        domain = address.rpartition("@")[2].lower()
        if self.domains and domain not in self.domains:
            return "550 5.1.2 this server takes delivery reports for its bounce domain only"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        data: bytes = envelope.original_content or envelope.content
        if len(data) > MAX_REPORT_BYTES:
            return "552 5.3.4 report too large"
        try:
            events = self.reader.read(data, list(envelope.rcpt_tos))
            await asyncio.to_thread(self.sink, events, data)
        except Exception:  # the store is down or similar: the sender's server keeps the report and retries
            log.exception("could not record a delivery report")
            return "451 4.3.0 could not record the report now, try again later"
        return "250 OK report received"


@dataclass(frozen=True)
class ImapMailbox:
    host: str
    port: int = 993
    username: str = ""
    password: str = field(default="", repr=False)
    folder: str = "INBOX"
    tls: bool = True  # implicit TLS (993); else STARTTLS when `starttls`, else plain (loopback tests)
    starttls: bool = False
    processed_folder: str | None = None  # move handled messages here; else they are only marked read
    timeout: float = 30.0


@dataclass
class FetchStats:
    messages: int = 0
    events: int = 0
    not_reports: int = 0
    failed: int = 0


_UIDS = re.compile(rb"\d+")


def fetch_reports(mailbox: ImapMailbox, reader: ReportReader, sink: Sink, limit: int = 500) -> FetchStats:
    """Read the unread messages of the bounce mailbox (at most `limit`), hand their events to
    `sink`, and mark each handled one read (or move it). A message whose sink call fails is
    left unread and the run stops, so nothing is skipped."""
    stats = FetchStats()
    client = _connect(mailbox)
    try:
        _check(client.login(mailbox.username, mailbox.password), "login")
        _check(client.select(_quote(mailbox.folder)), f"select folder {mailbox.folder!r}")
        status, found = client.uid("SEARCH", "UNSEEN")
        _check((status, found), "search")
        uids = _UIDS.findall(found[0] or b"")[:limit] if found else []
        for uid in uids:
            status, parts = client.uid("FETCH", uid.decode(), "(BODY.PEEK[])")
            raw = next((p[1] for p in parts if isinstance(p, tuple) and len(p) > 1), None) if status == "OK" else None
            if not isinstance(raw, bytes):
                stats.failed += 1
                continue
            stats.messages += 1
            events = reader.read(raw[:MAX_REPORT_BYTES])
            try:
                sink(events, raw)
            except Exception:
                log.exception("could not record a delivery report; it stays unread for the next run")
                stats.failed += 1
                break
            stats.events += len(events)
            stats.not_reports += not events
            _done(client, uid.decode(), mailbox.processed_folder)
        if mailbox.processed_folder:
            client.expunge()
    finally:
        with contextlib.suppress(imaplib.IMAP4.error, OSError):
            client.logout()
    return stats


def _connect(mailbox: ImapMailbox) -> imaplib.IMAP4:
    try:
        if mailbox.tls:
            return imaplib.IMAP4_SSL(
                mailbox.host, mailbox.port, ssl_context=ssl.create_default_context(), timeout=mailbox.timeout
            )
        client = imaplib.IMAP4(mailbox.host, mailbox.port, timeout=mailbox.timeout)
        if mailbox.starttls:
            client.starttls(ssl.create_default_context())
        return client
    except (OSError, imaplib.IMAP4.error) as exc:
        raise IntakeError(f"cannot reach the bounce mailbox at {mailbox.host}:{mailbox.port}: {exc}") from exc


def _check(answer: tuple[str, Any], what: str) -> None:
    status, detail = answer
    if status != "OK":
        raise IntakeError(f"bounce mailbox: {what} failed: {detail!r}")


def _quote(folder: str) -> str:
    return '"' + folder.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _done(client: imaplib.IMAP4, uid: str, processed_folder: str | None) -> None:
    client.uid("STORE", uid, "+FLAGS", "(\\Seen)")
    if processed_folder:
        status, _ = client.uid("COPY", uid, _quote(processed_folder))
        if status != "OK":
            client.create(_quote(processed_folder))
            client.uid("COPY", uid, _quote(processed_folder))
        client.uid("STORE", uid, "+FLAGS", "(\\Deleted)")
