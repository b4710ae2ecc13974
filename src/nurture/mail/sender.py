"""SMTP delivery: a pool of reused aiosmtplib connections, a rate limit, and error classes.

Errors are sorted into what to do next: a 4xx reply or a network failure is worth
retrying later; a 5xx reply about the recipient is a bounce and suppresses the address.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import aiosmtplib

from nurture.config import Settings
from nurture.mail.message import PLAIN_ADDRESS, BuiltMessage, MessageError

RETRY, BOUNCE, FAIL = "retry", "bounce", "fail"


@dataclass(frozen=True)
class Outcome:
    action: str
    code: int | None
    text: str


def classify(exc: BaseException) -> Outcome:
    """What to do after `exc` was raised while sending one message."""
    if isinstance(exc, aiosmtplib.SMTPAuthenticationError):
        # Our credentials, not the recipient: keep retrying until an operator fixes them.
        return Outcome(RETRY, exc.code, f"SMTP login failed: {exc.code} {exc.message}")
    if isinstance(exc, aiosmtplib.SMTPRecipientsRefused):
        codes = [r.code for r in exc.recipients]
        text = "; ".join(f"{r.code} {r.message}" for r in exc.recipients)
        return Outcome(BOUNCE if any(c >= 500 for c in codes) else RETRY, max(codes, default=None), text)
    if isinstance(exc, aiosmtplib.SMTPSenderRefused):
        return Outcome(FAIL if exc.code >= 500 else RETRY, exc.code, f"sender refused: {exc.code} {exc.message}")
    if isinstance(exc, aiosmtplib.SMTPResponseException) and not isinstance(exc, aiosmtplib.SMTPServerDisconnected):
        return Outcome(BOUNCE if exc.code >= 500 else RETRY, exc.code, f"{exc.code} {exc.message}")
    if isinstance(exc, aiosmtplib.SMTPException | OSError | asyncio.TimeoutError):
        return Outcome(RETRY, None, f"{type(exc).__name__}: {exc}")
    return Outcome(FAIL, None, f"{type(exc).__name__}: {exc}")


class RateLimiter:
    """Token bucket shared by all connections; rate 0 means no limit.

    It paces real sending, so it reads a monotonic timer; tests pass their own `timer`
    and `sleep`.
    """

    def __init__(
        self,
        rate: float,
        burst: int | None = None,
        *,
        timer: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self.rate = rate
        self.capacity = float(burst or max(1, int(rate)))
        self.tokens = self.capacity
        self.timer = timer
        self.sleep = sleep
        self.updated = timer()
        self._lock = asyncio.Lock()

    async def acquire(self) -> None:
        if self.rate <= 0:
            return
        async with self._lock:
            now = self.timer()
            self.tokens = min(self.capacity, self.tokens + (now - self.updated) * self.rate) - 1
            self.updated = now
            if self.tokens < 0:
                # Take the token now and wait out the debt; the lock keeps later callers behind.
                await self.sleep(-self.tokens / self.rate)


class SmtpPool:
    """Up to `size` open SMTP connections, each used by one message at a time."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.size = max(1, settings.smtp_pool_size)
        self._idle: asyncio.Queue[aiosmtplib.SMTP] = asyncio.Queue()
        self._created = 0
        self.limiter = RateLimiter(settings.send_rate)

    def _client(self) -> aiosmtplib.SMTP:
        s = self.settings
        return aiosmtplib.SMTP(
            hostname=s.smtp_host,
            port=s.smtp_port,
            username=s.smtp_username,
            password=s.smtp_password,
            use_tls=s.smtp_tls,
            start_tls=s.smtp_starttls,
            timeout=s.smtp_timeout,
            local_hostname=s.smtp_helo_name,
            validate_certs=s.smtp_tls or s.smtp_starttls,
            cert_bundle=s.smtp_ca_file,
        )

    async def _acquire(self) -> aiosmtplib.SMTP:
        if self._idle.empty() and self._created < self.size:
            self._created += 1
            return self._client()
        return await self._idle.get()

    async def send(self, message: BuiltMessage, before_data: Callable[[], Awaitable[object]] | None = None) -> None:
        """Deliver one message. `before_data()`, when given, is awaited after the server has
        taken the envelope and before the body goes out: nothing is delivered until the
        body's final dot is accepted, so the caller's bookkeeping of its previous message
        can finish meanwhile. If it raises, the connection is dropped mid-envelope and the
        server discards the transaction.

        The transaction is driven with MAIL, RCPT and DATA rather than `sendmail`, whose
        address parsing and sizing scan repeat what `build_message` already did.
        """
        await self.limiter.acquire()
        client = await self._acquire()
        healthy = False
        try:
            if not client.is_connected:
                await client.connect()  # TLS and login happen here; any failure drops the client
                await self._greet(client)
            try:
                await self._envelope(client, message)
                if before_data is not None:
                    await before_data()
                await client.data(message.data)
                healthy = True
            except aiosmtplib.SMTPResponseException as exc:
                # A refused message leaves a usable session once reset.
                healthy = not isinstance(exc, aiosmtplib.SMTPServerDisconnected) and await self._reset(client)
                raise
        finally:
            if not healthy:
                client.close()
                client = self._client()
            self._idle.put_nowait(client)

    @staticmethod
    async def _envelope(client: aiosmtplib.SMTP, message: BuiltMessage) -> None:
        """MAIL (with SIZE, RFC 1870) and RCPT, as aiosmtplib's `mail` and `rcpt` send them and
        with the same errors, but without parsing both addresses again for every message:
        `build_message` made them bare addresses, which the check below confirms."""
        sender, recipient = message.envelope_from, message.recipient
        for address in (sender, recipient):
            if not PLAIN_ADDRESS.match(address):
                raise MessageError(f"not a bare address: {address!r}")
        size = [f"SIZE={len(message.data)}".encode()] if client.supports_extension("size") else []
        reply = await client.execute_command(b"MAIL", b"FROM:<" + sender.encode("ascii") + b">", *size)
        if reply.code != aiosmtplib.SMTPStatus.completed:
            raise aiosmtplib.SMTPSenderRefused(reply.code, reply.message, sender)
        reply = await client.execute_command(b"RCPT", b"TO:<" + recipient.encode("ascii") + b">")
        if reply.code not in (aiosmtplib.SMTPStatus.completed, aiosmtplib.SMTPStatus.will_forward):
            raise aiosmtplib.SMTPRecipientRefused(reply.code, reply.message, recipient)

    @staticmethod
    async def _greet(client: aiosmtplib.SMTP) -> None:
        """EHLO (HELO if refused) right after connecting, unless connecting did it (TLS,
        login), so the server's extensions (SIZE) are known for the first message too."""
        if client.is_ehlo_or_helo_needed:
            try:
                await client.ehlo()
            except aiosmtplib.SMTPHeloError:
                if not client.is_connected:
                    raise
                await client.helo()

    @staticmethod
    async def _reset(client: aiosmtplib.SMTP) -> bool:
        """After a refused message, RSET so the connection can carry the next one."""
        try:
            await client.rset()
        except (TimeoutError, aiosmtplib.SMTPException, OSError):
            return False
        return True

    async def close(self) -> None:
        while not self._idle.empty():
            client = self._idle.get_nowait()
            if client.is_connected:
                try:
                    await client.quit()
                except (TimeoutError, aiosmtplib.SMTPException, OSError):
                    client.close()
        self._created = 0
