"""A real SMTP server (aiosmtpd) for tests: records what arrives and can misbehave on cue."""

from __future__ import annotations

import asyncio
import email
import socket
import threading
from dataclasses import dataclass, field
from email.message import EmailMessage
from email.policy import default
from typing import Any

from aiosmtpd.controller import Controller


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Recorder:
    """aiosmtpd handler. `rcpts` lists every RCPT address in order of arrival, and
    `mail_options` the MAIL parameters of every accepted message;
    `mail_reply`, when set, is the reply every MAIL gets; `rcpt_replies` maps an address to
    the reply its RCPT gets;
    `drop_next` closes the connection on the next N DATA commands; `delay` stalls DATA."""

    messages: list[EmailMessage] = field(default_factory=list)
    rcpts: list[str] = field(default_factory=list)
    mail_options: list[list[str]] = field(default_factory=list)
    raw: list[bytes] = field(default_factory=list)  # each accepted message as received
    mail_from: list[str] = field(default_factory=list)  # each accepted message's envelope sender
    mail_reply: str | None = None
    rcpt_replies: dict[str, str] = field(default_factory=dict)
    data_replies: list[str] = field(default_factory=list)
    drop_next: int = 0
    delay: float = 0.0
    lock: threading.Lock = field(default_factory=threading.Lock)

    async def handle_MAIL(self, server: Any, session: Any, envelope: Any, address: str, options: Any) -> str:
        if self.mail_reply:
            return self.mail_reply
        envelope.mail_from = address
        envelope.mail_options.extend(options)
        return "250 OK"

    async def handle_RCPT(self, server: Any, session: Any, envelope: Any, address: str, options: Any) -> str:
        self.rcpts.append(address.lower())
        reply = self.rcpt_replies.get(address.lower())
        if reply:
            return reply
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        if self.delay:
            await asyncio.sleep(self.delay)
        with self.lock:
            if self.drop_next > 0:
                self.drop_next -= 1
                server.transport.close()
                return "421 closing"
            if self.data_replies:
                return self.data_replies.pop(0)
            message = email.message_from_bytes(envelope.content, policy=default)
            self.messages.append(message)  # type: ignore[arg-type]
            self.mail_options.append(list(envelope.mail_options))
            self.raw.append(envelope.original_content or envelope.content)
            self.mail_from.append(envelope.mail_from)
        return "250 Message accepted"

    def by_recipient(self) -> dict[str, list[EmailMessage]]:
        found: dict[str, list[EmailMessage]] = {}
        for message in self.messages:
            found.setdefault(str(message["To"].addresses[0].addr_spec), []).append(message)
        return found


class SmtpServer:
    def __init__(self) -> None:
        self.recorder = Recorder()
        self.port = free_port()
        self.controller = Controller(self.recorder, hostname="127.0.0.1", port=self.port)

    def __enter__(self) -> SmtpServer:
        self.controller.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.controller.stop()

    @property
    def messages(self) -> list[EmailMessage]:
        return self.recorder.messages
