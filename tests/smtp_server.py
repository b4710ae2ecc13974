"""A real SMTP server (aiosmtpd) for tests: records what arrives and can misbehave on cue."""

from __future__ import annotations

import asyncio
import email
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from email.message import EmailMessage
from email.policy import default
from typing import Any

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass(frozen=True)
class Delivery:
    """One accepted message: its Message-ID, the EHLO name of the client that sent it, and
    when the server accepted it (monotonic clock of the test process)."""

    message_id: str
    client: str
    at: float


@dataclass
class Recorder:
    """aiosmtpd handler. `rcpts` lists every RCPT address in order of arrival, and
    `mail_options` the MAIL parameters of every accepted message;
    `mail_reply`, when set, is the reply every MAIL gets; `rcpt_replies` maps an address to
    the reply its RCPT gets;
    `greeting_reply`, when set, is the banner every new connection gets instead of 220,
    after which the server hangs up; `drop_next` closes the connection on the next N DATA commands; `delay` stalls DATA.
    `pipelining`: whether EHLO offers PIPELINING (RFC 2920), as Postfix and most relays do.
    `deliveries` timestamps every accepted message; `wait_for` blocks a test thread until a
    condition on them holds."""

    messages: list[EmailMessage] = field(default_factory=list)
    rcpts: list[str] = field(default_factory=list)
    mail_options: list[list[str]] = field(default_factory=list)
    raw: list[bytes] = field(default_factory=list)  # each accepted message as received
    mail_from: list[str] = field(default_factory=list)  # each accepted message's envelope sender
    mail_reply: str | None = None
    greeting_reply: str | None = None
    rcpt_replies: dict[str, str] = field(default_factory=dict)
    data_replies: list[str] = field(default_factory=list)
    drop_next: int = 0
    delay: float = 0.0
    pipelining: bool = True
    deliveries: list[Delivery] = field(default_factory=list)
    in_data: int = 0  # DATA commands being answered right now
    lock: threading.Lock = field(default_factory=threading.Lock)
    changed: threading.Condition = field(init=False)

    def __post_init__(self) -> None:
        self.changed = threading.Condition(self.lock)

    async def handle_EHLO(
        self, server: Any, session: Any, envelope: Any, hostname: str, responses: list[str]
    ) -> list[str]:
        session.host_name = hostname
        if self.pipelining:
            responses.insert(-1, "250-PIPELINING")
        return responses

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
        with self.changed:
            self.in_data += 1
        try:
            return await self._data(server, session, envelope)
        finally:
            with self.changed:
                self.in_data -= 1
                self.changed.notify_all()

    async def _data(self, server: Any, session: Any, envelope: Any) -> str:
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
            self.deliveries.append(Delivery(str(message["Message-ID"]), str(session.host_name), time.monotonic()))
            self.changed.notify_all()
        return "250 Message accepted"

    def wait_for(self, condition: Callable[[list[Delivery]], bool], what: str, timeout: float = 120) -> None:
        """Block until `condition(deliveries)` holds; fail after `timeout` seconds naming `what`."""
        deadline = time.monotonic() + timeout
        with self.changed:
            while not condition(self.deliveries):
                left = deadline - time.monotonic()
                if left <= 0:
                    accepted = len(self.deliveries)
                    raise AssertionError(f"SMTP server: waited {timeout:.0f}s for {what}; {accepted} accepted")
                self.changed.wait(min(left, 0.5))

    def wait_until_idle(self, timeout: float = 60) -> None:
        """Until no DATA command is being answered (a stalled one finished or was abandoned)."""
        deadline = time.monotonic() + timeout
        with self.changed:
            while self.in_data:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(f"SMTP server: waited {timeout:.0f}s for {self.in_data} DATA replies to end")
                self.changed.wait(min(left, 0.5))

    def wait_for_messages(self, count: int, timeout: float = 120) -> None:
        self.wait_for(lambda d: len(d) >= count, f"{count} accepted messages", timeout)

    def by_recipient(self) -> dict[str, list[EmailMessage]]:
        found: dict[str, list[EmailMessage]] = {}
        for message in self.messages:
            found.setdefault(str(message["To"].addresses[0].addr_spec), []).append(message)
        return found


class _Smtp(SMTP):  # type: ignore[misc]
    """aiosmtpd's server, with a banner the test can replace by a refusal."""

    async def _handle_client(self) -> None:
        reply = self.event_handler.greeting_reply
        if reply:
            await self.push(reply)
            assert self.transport is not None
            self.transport.close()
            return
        await super()._handle_client()


class _Controller(Controller):  # type: ignore[misc]
    """Binds a port the system picks (port 0) and learns it, so no other process on a busy
    machine can take the port between choosing and binding it."""

    def factory(self) -> SMTP:
        return _Smtp(self.handler, **self.SMTP_kwargs)

    def _create_server(self) -> Any:
        return self._bind()

    async def _bind(self) -> asyncio.AbstractServer:
        server = await self.loop.create_server(self._factory_invoker, host=self.hostname, port=0)
        self.port = int(server.sockets[0].getsockname()[1])
        return server


class SmtpServer:
    def __init__(self) -> None:
        self.recorder = Recorder()
        self.controller = _Controller(self.recorder, hostname="127.0.0.1", port=0)

    @property
    def port(self) -> int:
        return int(self.controller.port)

    def __enter__(self) -> SmtpServer:
        self.controller.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.controller.stop()

    @property
    def messages(self) -> list[EmailMessage]:
        return self.recorder.messages
