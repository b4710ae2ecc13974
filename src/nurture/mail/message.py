"""Build the MIME bytes of one send: text + HTML alternatives, UTF-8, RFC 8058 headers.

Messages are assembled directly as bytes with the standard library's encoders
(RFC 2047 encoded words for headers, quoted-printable bodies) rather than through
`EmailMessage`, whose header objects cost milliseconds per message; the bytes go to
the server unchanged with SMTP `sendmail`.
"""

from __future__ import annotations

import binascii
import re
from dataclasses import dataclass
from datetime import datetime, timedelta
from email.header import Header
from email.utils import format_datetime, formataddr, getaddresses
from functools import lru_cache

from nurture.errors import NurtureError
from nurture.mail.dkim import Signers, signers

_CONTROL = re.compile(r"[\x00-\x1f\x7f]+")
# A bare address: nothing that could end the address or add parameters on an SMTP command line.
PLAIN_ADDRESS = re.compile(r"^[^@\s<>(),;:\"\[\]\\]+@[A-Za-z0-9](?:[A-Za-z0-9.-]*[A-Za-z0-9])?$")

_LIST_ID = re.compile(r"^[A-Za-z0-9_-]+(?:\.[A-Za-z0-9_-]+)+$")


class MessageError(NurtureError):
    """A message cannot be built (e.g. an unusable address); retrying will not help."""


@dataclass(frozen=True)
class BuiltMessage:
    envelope_from: str
    recipient: str
    message_id: str
    data: bytes


def clean_header(value: str) -> str:
    """One line of header text: control characters (CR, LF, ...) collapse to a space."""
    if value.isprintable() and "  " not in value and value[:1] != " " and value[-1:] != " ":
        return value  # printable text has no whitespace but the space, so there is nothing to collapse
    return " ".join(_CONTROL.sub(" ", value).split())


@lru_cache(maxsize=256)
def parse_address(value: str) -> tuple[str, str]:
    """(display name, address) from 'Name <addr>' or 'addr'; refuses anything else."""
    if _CONTROL.search(value):
        raise MessageError(f"address contains control characters: {value!r}")
    if PLAIN_ADDRESS.match(value):
        return "", value
    name, addr = getaddresses([value])[0]
    if not PLAIN_ADDRESS.match(addr):
        raise MessageError(f"not an email address: {value!r}")
    return clean_header(name), addr


@lru_cache(maxsize=1024)
def _address_header(name: str, addr: str) -> str:
    return formataddr((name, addr), charset="utf-8") if name else addr


def _text_header(name: str, value: str) -> str:
    value = clean_header(value)
    if value.isascii() and len(value) + len(name) + 2 <= 78:
        return value
    charset = "us-ascii" if value.isascii() else "utf-8"
    return Header(value, charset, header_name=name).encode(linesep="\r\n")


def _quoted_printable(text: str) -> bytes:
    body = text.replace("\r\n", "\n").replace("\r", "\n")
    encoded = binascii.b2a_qp(body.encode("utf-8"), istext=True)
    return encoded.replace(b"\n", b"\r\n")


@lru_cache(maxsize=64)
def _date_header(seconds: datetime, offset: timedelta | None) -> str:
    return format_datetime(seconds)


def date_header(date: datetime) -> str:
    """`format_datetime(date)`, which shows the second and the UTC offset only: kept for the
    same second and offset, as every message of a batch has about the same date."""
    return _date_header(date.replace(microsecond=0), date.utcoffset())


def build_message(
    *,
    sender: str,
    to_email: str,
    to_name: str | None,
    subject: str,
    text: str,
    html: str,
    message_id: str,
    unsubscribe_url: str | None,
    unsubscribe_mailto: str | None,
    idempotency_key: str,
    reply_to: str | None = None,
    date: datetime | None = None,
    list_id: str | None = None,
    list_name: str | None = None,
    return_path: str | None = None,
    signer: Signers | None = None,
) -> BuiltMessage:
    """`list_id` (a dot-atom such as 'welcome.acme.example') and `list_name` make the List-Id
    header (RFC 2919): receivers expect it beside List-Unsubscribe on bulk mail. `return_path` is the envelope
    sender (a per-send bounce address), else the From address. `signer` adds a DKIM signature
    (one per key, when several keys sign)."""
    from_name, from_addr = parse_address(sender)
    _, to_addr = parse_address(to_email)
    # Marketing mail carries List-Unsubscribe (RFC 2369) with one-click (RFC 8058); mail to
    # colleagues (alerts to sales, digests) has no list to leave and carries neither.
    targets = [f"<{clean_header(unsubscribe_url)}>"] if unsubscribe_url else []
    if unsubscribe_url and unsubscribe_mailto:
        targets.append(f"<mailto:{clean_header(unsubscribe_mailto)}?subject=unsubscribe>")
    boundary = f"=_nurture_{idempotency_key}"
    headers = [
        ("From", _address_header(from_name, from_addr)),
        ("To", _address_header(clean_header(to_name or ""), to_addr)),
    ]
    if reply_to:
        headers.append(("Reply-To", _address_header(*parse_address(reply_to))))
    headers += [
        ("Subject", _text_header("Subject", subject)),
        ("Message-ID", clean_header(message_id)),
    ]
    if date is not None:
        headers.append(("Date", date_header(date)))
    headers.append(("MIME-Version", "1.0"))
    if list_id:
        if not _LIST_ID.match(list_id):
            raise MessageError(f"not a List-Id (letters, digits, '.', '_', '-' and a dot): {list_id!r}")
        name = clean_header(list_name or "")
        headers.append(("List-Id", formataddr((name, list_id), charset="utf-8") if name else f"<{list_id}>"))
    if targets:
        headers += [("List-Unsubscribe", ", ".join(targets)), ("List-Unsubscribe-Post", "List-Unsubscribe=One-Click")]
    headers += [
        ("X-Nurture-Key", clean_header(idempotency_key)),
        ("Content-Type", f'multipart/alternative; boundary="{boundary}"'),
    ]
    parts = []
    for subtype, content in (("plain", text), ("html", html)):
        parts.append(
            f'--{boundary}\r\nContent-Type: text/{subtype}; charset="utf-8"\r\n'
            "Content-Transfer-Encoding: quoted-printable\r\n\r\n".encode("ascii")
            + _quoted_printable(content)
            + b"\r\n"
        )
    body = b"".join(parts) + f"--{boundary}--\r\n".encode("ascii")
    stamp = int(date.timestamp()) if date is not None else None
    signed = list(headers)  # every signature covers the same headers, not the other signatures
    for one in reversed(signers(signer)):
        headers.insert(0, ("DKIM-Signature", one.signature_header(signed, body, stamp)))
    head = "".join(f"{name}: {value}\r\n" for name, value in headers).encode("ascii")
    envelope_from = parse_address(return_path)[1] if return_path else from_addr
    return BuiltMessage(envelope_from, to_addr, clean_header(message_id), head + b"\r\n" + body)


def message_id_for(idempotency_key: str, domain: str) -> str:
    """The same key always gives the same Message-ID, so a resend can be recognised downstream."""
    return f"<{idempotency_key}@{domain}>"
