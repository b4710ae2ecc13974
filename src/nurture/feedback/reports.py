"""Delivery status notifications (RFC 3464) and complaint reports (ARF, RFC 5965) read
into `FeedbackEvent`s.

Standard reports are read field by field with the standard library's MIME parser (which
splits `message/delivery-status` into its per-recipient blocks); reports in an MTA's own
words (Yahoo's and qmail's "Failure Notice", old Exim texts) go to flufl.bounce, which
knows those formats, and the status is then read from the reply quoted next to each
address it finds.

Which send a report is about comes from the per-send return path (VERP) it was addressed
to, or that it quotes: the envelope recipient, `Delivered-To`/`X-Original-To`/`To`, the
report's `X-Postfix-Sender` or `Original-Mail-From`, and the `Return-Path` of the original
message. Only an address whose MAC checks out names a send.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from email.message import Message
from email.parser import BytesParser, HeaderParser
from email.policy import compat32
from email.utils import getaddresses, parsedate_to_datetime

from flufl.bounce import all_failures

from nurture.feedback.events import BOUNCE_KINDS, FeedbackEvent, FeedbackKind
from nurture.mail.status import classify_reply, find_enhanced
from nurture.mail.verp import ReturnPath

_ADDRESS_HEADERS = ("Delivered-To", "X-Original-To", "Envelope-To", "To")
_COMPLAINT_TYPES = {"abuse", "fraud", "virus", "other"}  # "not-spam" and "auth-failure" are not complaints
_REPLY = re.compile(r"(?<!\d)([245]\d\d)(?:[ :-]+([245]\.\d{1,3}\.\d{1,3}))?[ :-]")


def _text(value: object) -> str:
    return " ".join(str(value or "").split())


def _address(field: object) -> str | None:
    """`rfc822; anna@x.example` or `<anna@x.example>` → `anna@x.example`."""
    text = _text(field)
    if ";" in text:
        text = text.split(";", 1)[1]
    text = text.strip().strip("<>").strip()
    return text or None


def _parts(message: Message) -> Iterable[Message]:
    yield from message.walk()


def _original(message: Message) -> Message | None:
    """The returned message (or its headers) inside a report."""
    for part in _parts(message):
        kind = part.get_content_type()
        if kind == "message/rfc822":
            payload = part.get_payload()
            if isinstance(payload, list) and payload and isinstance(payload[0], Message):
                return payload[0]
        if kind == "text/rfc822-headers":
            raw = part.get_payload(decode=True)
            if isinstance(raw, bytes):
                return HeaderParser(policy=compat32).parsestr(raw.decode("utf-8", "replace"))
    return None


def _when(value: object) -> datetime | None:
    """A report's date in UTC (a date without a zone is read as UTC)."""
    try:
        when = parsedate_to_datetime(_text(value)) if value else None
    except (TypeError, ValueError):
        return None
    if when is None:
        return None
    return when.replace(tzinfo=UTC) if when.tzinfo is None else when.astimezone(UTC)


class ReportReader:
    """Reads reports for one bounce set-up (`return_path` checks the per-send addresses)."""

    def __init__(self, return_path: ReturnPath | None) -> None:
        self.return_path = return_path

    def read(self, data: bytes, envelope_recipients: Sequence[str] = ()) -> list[FeedbackEvent]:
        """The events a report carries, or [] when it is no delivery or complaint report
        (an out-of-office reply, a person answering)."""
        message = BytesParser(policy=compat32).parsebytes(data)
        original = _original(message)
        send_id = self._send_id(message, original, envelope_recipients)
        message_id = _text(original["Message-ID"]) if original is not None and original["Message-ID"] else None
        for part in _parts(message):
            kind = part.get_content_type()
            if kind == "message/feedback-report":
                return self._complaint(part, original, send_id, message_id)
            if kind == "message/delivery-status":
                return self._delivery_status(part, send_id, message_id)
        return self._free_text(message, send_id, message_id)

    def _send_id(self, message: Message, original: Message | None, envelope: Sequence[str]) -> int | None:
        if self.return_path is None:
            return None
        candidates = list(envelope)
        for header in _ADDRESS_HEADERS:
            candidates += [addr for _, addr in getaddresses([str(v) for v in message.get_all(header, [])])]
        for part in _parts(message):
            if part.get_content_type() in ("message/delivery-status", "message/feedback-report"):
                payload = part.get_payload()
                blocks = payload if isinstance(payload, list) else []
                for block in blocks:
                    for field in ("X-Postfix-Sender", "Original-Mail-From"):
                        found = _address(block[field]) if isinstance(block, Message) and block[field] else None
                        if found:
                            candidates.append(found)
        if original is not None:
            candidates += [_address(v) or "" for v in original.get_all("Return-Path", [])]
        for candidate in candidates:
            send_id = self.return_path.send_id(candidate)
            if send_id is not None:
                return send_id
        return None

    def _complaint(
        self, part: Message, original: Message | None, send_id: int | None, message_id: str | None
    ) -> list[FeedbackEvent]:
        payload = part.get_payload()
        fields = payload[0] if isinstance(payload, list) and payload else None
        if not isinstance(fields, Message):
            return []
        feedback_type = _text(fields["Feedback-Type"]).lower()
        if feedback_type not in _COMPLAINT_TYPES:
            return []
        recipient = _address(fields["Original-Rcpt-To"])
        if recipient is None and original is not None:
            addresses = getaddresses([str(v) for v in original.get_all("To", [])])
            recipient = addresses[0][1] if addresses and "@" in addresses[0][1] else None
        agent = _text(fields["User-Agent"])
        return [
            FeedbackEvent(
                FeedbackKind.COMPLAINT,
                "arf",
                recipient=recipient,
                send_id=send_id,
                message_id=message_id,
                diagnostic=f"Feedback-Type: {feedback_type}" + (f"; User-Agent: {agent}" if agent else ""),
                occurred_at=_when(fields["Arrival-Date"] or fields["Received-Date"]),
            )
        ]

    def _delivery_status(self, part: Message, send_id: int | None, message_id: str | None) -> list[FeedbackEvent]:
        payload = part.get_payload()
        blocks = [b for b in payload if isinstance(b, Message)] if isinstance(payload, list) else []
        per_message, recipients = (blocks[0], blocks[1:]) if blocks else (Message(), [])
        arrived = _when(per_message["Arrival-Date"])
        events = []
        for block in recipients:
            action = _text(block["Action"]).lower()
            recipient = _address(block["Final-Recipient"] or block["Original-Recipient"])
            if not action or recipient is None:
                continue
            diagnostic = _text(block["Diagnostic-Code"])
            status = find_enhanced(_text(block["Status"])) or None
            reply = classify_reply(diagnostic.split(";", 1)[-1] if ";" in diagnostic else diagnostic, enhanced=status)
            if action == "delayed":
                kind = FeedbackKind.DELAYED
            elif action in ("delivered", "relayed", "expanded"):
                kind = FeedbackKind.DELIVERED
            else:
                kind = BOUNCE_KINDS[reply.verdict]
                if kind is FeedbackKind.DELIVERED:  # "failed" with a 2.x.x status is a broken report
                    kind = FeedbackKind.SOFT_BOUNCE
            events.append(
                FeedbackEvent(
                    kind,
                    "dsn",
                    recipient=recipient,
                    send_id=send_id,
                    message_id=message_id,
                    status=reply.enhanced,
                    code=reply.code,
                    diagnostic=diagnostic or _text(block["Status"]),
                    occurred_at=_when(block["Last-Attempt-Date"]) or arrived,
                )
            )
        return events

    def _free_text(self, message: Message, send_id: int | None, message_id: str | None) -> list[FeedbackEvent]:
        if not any("@" in addr for _, addr in getaddresses([str(v) for v in message.get_all("From", [])])):
            return []  # every MTA's report has a sender; the detectors need one too
        try:
            temporary, permanent = all_failures(message)
        except Exception:  # a detector tripped over a hostile or broken message: not a report we can read
            return []
        if not temporary and not permanent:
            return []
        texts = []
        for part in _parts(message):
            payload = part.get_payload(decode=True) if part.get_content_maintype() == "text" else None
            if isinstance(payload, bytes):
                try:
                    texts.append(payload.decode(part.get_content_charset() or "utf-8", "replace"))
                except LookupError:  # a charset Python does not know
                    texts.append(payload.decode("utf-8", "replace"))
        body = "\n".join(texts)
        events = []
        for raw, is_permanent in [(a, False) for a in sorted(temporary)] + [(a, True) for a in sorted(permanent)]:
            recipient = raw.decode("utf-8", "replace") if isinstance(raw, bytes) else str(raw)
            at = body.lower().find(recipient.lower())
            nearby = body[at : at + 600] if at >= 0 else body[:600]
            reply = _REPLY.search(nearby)
            text = " ".join(nearby[reply.start() :].split("\n\n", 1)[0].split()) if reply else ""
            judged = classify_reply(text, code=int(reply.group(1)) if reply else (550 if is_permanent else 450))
            kind = BOUNCE_KINDS[judged.verdict]
            if kind is FeedbackKind.DELIVERED or (not is_permanent and kind is FeedbackKind.HARD_BOUNCE):
                kind = FeedbackKind.SOFT_BOUNCE
            events.append(
                FeedbackEvent(
                    kind,
                    "dsn",
                    recipient=recipient,
                    send_id=send_id,
                    message_id=message_id,
                    status=judged.enhanced,
                    code=judged.code,
                    diagnostic=text or ("permanent failure" if is_permanent else "temporary failure"),
                )
            )
        return events
