"""Build the MIME message for one send: text + HTML alternatives, UTF-8, RFC 8058 headers."""

from __future__ import annotations

import re
from email.headerregistry import Address
from email.message import EmailMessage
from email.policy import SMTP
from email.utils import format_datetime, getaddresses

from nurture.errors import NurtureError

_CONTROL = re.compile(r"[\x00-\x1f\x7f]+")


class MessageError(NurtureError):
    """A message cannot be built (e.g. an unusable address); retrying will not help."""


def clean_header(value: str) -> str:
    """One line of header text: control characters (CR, LF, ...) collapse to a space."""
    return " ".join(_CONTROL.sub(" ", value).split())


def parse_address(value: str) -> Address:
    name, addr = getaddresses([clean_header(value)])[0]
    if "@" not in addr:
        raise MessageError(f"not an email address: {value!r}")
    local, _, domain = addr.rpartition("@")
    try:
        return Address(display_name=clean_header(name), username=local, domain=domain)
    except (ValueError, IndexError) as exc:
        raise MessageError(f"not an email address: {value!r} ({exc})") from exc


def build_message(
    *,
    sender: str,
    to_email: str,
    to_name: str | None,
    subject: str,
    text: str,
    html: str,
    message_id: str,
    unsubscribe_url: str,
    unsubscribe_mailto: str | None,
    idempotency_key: str,
    reply_to: str | None = None,
    date: object = None,
) -> EmailMessage:
    message = EmailMessage(policy=SMTP)
    message["From"] = parse_address(sender)
    recipient = parse_address(to_email)
    message["To"] = Address(
        display_name=clean_header(to_name or ""), username=recipient.username, domain=recipient.domain
    )
    if reply_to:
        message["Reply-To"] = parse_address(reply_to)
    message["Subject"] = clean_header(subject)
    message["Message-ID"] = message_id
    if date is not None:
        message["Date"] = format_datetime(date)  # type: ignore[arg-type]
    targets = [f"<{unsubscribe_url}>"]
    if unsubscribe_mailto:
        targets.append(f"<mailto:{unsubscribe_mailto}?subject=unsubscribe>")
    message["List-Unsubscribe"] = ", ".join(targets)
    message["List-Unsubscribe-Post"] = "List-Unsubscribe=One-Click"
    message["X-Nurture-Key"] = idempotency_key
    message.set_content(text, charset="utf-8")
    message.add_alternative(html, subtype="html", charset="utf-8")
    return message


def message_id_for(idempotency_key: str, domain: str) -> str:
    """The same key always gives the same Message-ID, so a resend can be recognised downstream."""
    return f"<{idempotency_key}@{domain}>"
