"""The pool sends DATA itself (no regular-expression passes over the message): the bytes on
the wire must be exactly those aiosmtplib's own `data` sends, for every kind of message."""

from __future__ import annotations

import asyncio
from typing import Any

import aiosmtplib
import pytest
from aiosmtplib.protocol import PERIOD_REGEX, normalize_message_line_endings
from hypothesis import given, settings
from hypothesis import strategies as st

from nurture.config import Settings
from nurture.mail.message import BuiltMessage, build_message
from nurture.mail.sender import SmtpPool, dot_stuffed

LINES = st.lists(st.sampled_from(["", ".", "..", ".x", "a.b", " .", "=2E", "a", "\r", "\n", "\r\n"]), max_size=12)


@settings(max_examples=400, deadline=None)
@given(LINES)
def test_dot_stuffing_is_aiosmtplibs_for_crlf_messages_and_declines_the_rest(pieces: list[str]) -> None:
    data = "".join(pieces).encode()
    stuffed = dot_stuffed(data)
    expected = PERIOD_REGEX.sub(b"..", normalize_message_line_endings(data)) + b".\r\n"
    if stuffed is None:
        assert data.replace(b"\r\n", b"").count(b"\r") + data.replace(b"\r\n", b"").count(b"\n") > 0
    else:
        assert stuffed == expected


class _Wire:
    """A minimal SMTP server keeping every byte a client sends after the greeting."""

    def __init__(self) -> None:
        self.received = bytearray()
        self.data_replies: list[bytes] = []

    async def serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"220 wire\r\n")
        in_data = False
        while line := await reader.readline():
            self.received += line
            if in_data:
                if line == b".\r\n":
                    in_data = False
                    writer.write(self.data_replies.pop(0) if self.data_replies else b"250 ok\r\n")
            elif line.upper().startswith(b"EHLO"):
                writer.write(b"250-wire\r\n250 SIZE 1000000\r\n")
            elif line.upper().startswith(b"DATA"):
                in_data = True
                writer.write(b"354 go on\r\n")
            elif line.upper().startswith(b"QUIT"):
                writer.write(b"221 bye\r\n")
            else:
                writer.write(b"250 ok\r\n")
            await writer.drain()
        writer.close()


def _messages() -> list[BuiltMessage]:
    built = build_message(
        sender="Acme <hello@acme.example>",
        to_email="ann@alpha.example",
        to_name="Ann",
        subject="Dots",
        text=".\n.leading dot\n..two\nlast line .",
        html="<p>.</p>\n.<b>x</b>",
        message_id="<k@acme.example>",
        unsubscribe_url="https://t.example/u/x",
        unsubscribe_mailto=None,
        idempotency_key="k",
    )
    raw = b"Subject: x\r\n\r\n.\r\n.start\r\nno end"
    lone = b"Subject: y\n\n.bare LF\rlone CR\r\n"
    return [built] + [BuiltMessage("hello@acme.example", "ann@alpha.example", "<r@x>", m) for m in (raw, lone)]


def test_the_pool_puts_the_same_bytes_on_the_wire_as_aiosmtplib(monkeypatch: pytest.MonkeyPatch) -> None:
    through_data: list[bytes] = []
    data = aiosmtplib.SMTP.data

    async def counted(self: aiosmtplib.SMTP, message: bytes, **kwargs: Any) -> aiosmtplib.SMTPResponse:
        through_data.append(message)
        return await data(self, message, **kwargs)

    monkeypatch.setattr(aiosmtplib.SMTP, "data", counted)

    async def scenario() -> tuple[bytes, bytes]:
        ours, theirs = _Wire(), _Wire()
        servers = [await asyncio.start_server(w.serve, "127.0.0.1", 0) for w in (ours, theirs)]
        ports = [s.sockets[0].getsockname()[1] for s in servers]
        pool = SmtpPool(Settings(smtp_port=ports[0], smtp_pool_size=1))
        for message in _messages():
            await pool.send(message)
        await pool.close()
        # Only the message with a lone CR and LF went through aiosmtplib's `data`.
        assert through_data == [_messages()[2].data]
        client = aiosmtplib.SMTP(hostname="127.0.0.1", port=ports[1], start_tls=False)
        await client.connect()
        await client.ehlo()
        for message in _messages():
            size = f"SIZE={len(message.data)}".encode()
            await client.execute_command(b"MAIL", f"FROM:<{message.envelope_from}>".encode(), size)
            await client.execute_command(b"RCPT", f"TO:<{message.recipient}>".encode())
            await client.data(message.data)
        await client.quit()
        for server in servers:
            server.close()
        return bytes(ours.received), bytes(theirs.received)

    ours, theirs = asyncio.run(scenario())
    assert b"\r\n..leading dot\r\n" in ours and b"\r\n...two\r\n" in ours and b"\r\n..start\r\n" in ours
    assert ours.split(b"\r\n", 1)[1] == theirs.split(b"\r\n", 1)[1]  # all but the EHLO name


def test_a_refused_body_is_a_data_error_and_the_connection_carries_the_next_message() -> None:
    async def scenario() -> list[str]:
        wire = _Wire()
        wire.data_replies = [b"554 5.6.0 content refused\r\n"]
        server = await asyncio.start_server(wire.serve, "127.0.0.1", 0)
        pool = SmtpPool(Settings(smtp_port=server.sockets[0].getsockname()[1], smtp_pool_size=1))
        outcomes = []
        for message in _messages()[:2]:
            try:
                await pool.send(message)
                outcomes.append("sent")
            except Exception as exc:
                outcomes.append(type(exc).__name__ + ":" + str(getattr(exc, "verdict", exc)))
        await pool.close()
        server.close()
        return outcomes

    outcomes = asyncio.run(scenario())
    assert outcomes[0].startswith("DeliveryError") and outcomes[1] == "sent", outcomes
