"""SMTP delivery: a pool of reused aiosmtplib connections, a rate limit, and what a failure means.

Every failure is tagged with the phase of the conversation it came in (see `replies`): a
permanent refusal of the recipient's mailbox suppresses the address; a refusal of the
content fails that send; a refusal of the connection or of our sender pauses the pool (with
a growing backoff) so no other lead is tried against a server that refuses everyone.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import aiosmtplib
from aiosmtplib.protocol import MAX_RESPONSE_LENGTH, SMTPProtocol
from aiosmtplib.response import SMTPResponse

from nurture.config import Settings
from nurture.errors import NurtureError
from nurture.mail.message import PLAIN_ADDRESS, BuiltMessage, MessageError
from nurture.mail.replies import Action, Phase, Verdict, classify_reply, unreachable

RETRY, BOUNCE, FAIL, PAUSE = Action.RETRY, Action.BOUNCE, Action.FAIL, Action.PAUSE
SOFT_BOUNCE = Action.SOFT_BOUNCE


@dataclass(frozen=True)
class Outcome:
    """What the send job does next. A server-wide refusal is retried like a transient
    failure (`action` RETRY) and says so with `pause`: the pool itself holds sending back."""

    action: str
    code: int | None
    text: str
    pause: bool = False
    phase: Phase | None = None
    status: str | None = None


class DeliveryError(NurtureError):
    """A message was not delivered; `verdict` says where the conversation failed and why."""

    def __init__(self, verdict: Verdict) -> None:
        self.verdict = verdict
        super().__init__(verdict.text)


def verdict_at(exc: BaseException, phase: Phase) -> Verdict:
    """The verdict on `exc`, raised while the pool was at `phase` of sending one message."""
    if isinstance(exc, DeliveryError):
        return exc.verdict
    if isinstance(exc, aiosmtplib.SMTPAuthenticationError):
        # Our credentials, not the recipient: pause until an operator fixes them.
        return classify_reply(Phase.CONNECT, exc.code, f"login failed: {exc.message}")
    if isinstance(exc, aiosmtplib.SMTPConnectResponseError | aiosmtplib.SMTPHeloError):
        return classify_reply(Phase.GREETING, exc.code, exc.message)
    if isinstance(exc, aiosmtplib.SMTPRecipientsRefused):
        refused = exc.recipients[0] if exc.recipients else None
        if refused is None:
            return unreachable(Phase.RCPT, "recipients refused")
        return classify_reply(Phase.RCPT, refused.code, refused.message)
    if isinstance(exc, aiosmtplib.SMTPRecipientRefused):
        return classify_reply(Phase.RCPT, exc.code, exc.message)
    if isinstance(exc, aiosmtplib.SMTPSenderRefused):
        return classify_reply(Phase.MAIL, exc.code, exc.message)
    if isinstance(exc, aiosmtplib.SMTPDataError):  # refused DATA, or the body (also when pipelined)
        return classify_reply(Phase.DATA, exc.code, exc.message)
    if isinstance(exc, aiosmtplib.SMTPResponseException) and not isinstance(exc, aiosmtplib.SMTPServerDisconnected):
        return classify_reply(phase, exc.code, exc.message)
    if isinstance(exc, aiosmtplib.SMTPException | OSError | asyncio.TimeoutError):
        return unreachable(phase, f"{type(exc).__name__}: {exc}")
    return Verdict(Action.FAIL, None, f"{type(exc).__name__}: {exc}", phase)


def classify(exc: BaseException) -> Outcome:
    """What to do after `exc` was raised while sending one message."""
    phase = Phase.DATA
    if isinstance(exc, aiosmtplib.SMTPConnectError | aiosmtplib.SMTPAuthenticationError):
        phase = Phase.CONNECT
    verdict = verdict_at(exc, phase)
    action = RETRY if verdict.action is PAUSE else verdict.action
    return Outcome(action, verdict.code, verdict.text, verdict.pauses, verdict.phase, verdict.status)


class Pause:
    """Sending held back after a server-wide refusal: the first pause lasts `base` seconds,
    each refusal right after a pause doubles it up to `ceiling`; a delivery ends it. Measured
    on a monotonic timer (tests pass their own)."""

    def __init__(self, base: float, ceiling: float, timer: Callable[[], float] = time.monotonic) -> None:
        self.base, self.ceiling, self.timer = base, ceiling, timer
        self.until = 0.0
        self.length = 0.0
        self.reason = ""
        self.count = 0  # pauses since the last delivery

    def remaining(self) -> float:
        return max(0.0, self.until - self.timer())

    def start(self, reason: str) -> None:
        """Pause after a refusal; refusals of connections opened before the pause began (the
        pool's other connections) do not lengthen it."""
        if self.base <= 0 or self.remaining() > 0:
            return
        self.length = self.base if self.count == 0 else min(self.ceiling, self.length * 2)
        self.count += 1
        self.until = self.timer() + self.length
        self.reason = reason

    def end(self) -> None:
        self.count, self.until, self.reason = 0, 0.0, ""


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
        self.pause = Pause(settings.smtp_pause_seconds, settings.smtp_pause_max_seconds)

    @property
    def paused(self) -> bool:
        """Whether sending is held back after a server-wide refusal (see `pause.reason`)."""
        return self.pause.remaining() > 0

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

    async def send(
        self,
        message: BuiltMessage,
        before_data: Callable[[], Awaitable[object]] | None = None,
        *,
        paced: bool = False,
    ) -> None:
        """Deliver one message. `before_data()`, when given, is awaited after the server has
        taken the envelope and before the body goes out: nothing is delivered until the
        body's final dot is accepted, so the caller's bookkeeping of its previous message
        can finish meanwhile. If it raises, the connection is dropped mid-envelope and the
        server discards the transaction. `paced`: the caller has already waited for the rate
        limit (`limiter.acquire()`).

        The transaction is driven with MAIL, RCPT and DATA rather than `sendmail`, whose
        address parsing and sizing scan repeat what `build_message` already did.
        """
        if self.paused:
            reason = f"sending paused for {self.pause.remaining():.0f}s after {self.pause.reason}"
            raise DeliveryError(Verdict(PAUSE, None, reason, Phase.CONNECT))
        if not paced:
            await self.limiter.acquire()
        client = await self._acquire()
        healthy = False
        phase = Phase.CONNECT
        try:
            if not client.is_connected:
                await client.connect()  # TLS and login happen here; any failure drops the client
                phase = Phase.GREETING
                await self._greet(client)
            try:
                phase = Phase.MAIL
                stuffed = self._pipelined(client, message.data)
                if stuffed is None:
                    await self._envelope(client, message)
                else:
                    phase, failure = await self._envelope_and_data(client, message)
                    if failure is not None:
                        raise failure
                if before_data is not None:
                    phase = Phase.DATA
                    try:
                        await before_data()
                    except Exception as exc:  # the caller's own failure, not the server's
                        raise _Untagged(exc) from exc
                phase = Phase.DATA
                if stuffed is None:
                    await self._data(client, message.data)
                else:
                    await self._body(client, stuffed)
                healthy = True
            except aiosmtplib.SMTPResponseException as exc:
                # A refused message leaves a usable session once reset.
                healthy = not isinstance(exc, aiosmtplib.SMTPServerDisconnected) and await self._reset(client)
                raise
        except _Untagged as wrapper:
            raise wrapper.original from None
        except (TimeoutError, aiosmtplib.SMTPException, OSError) as exc:
            verdict = verdict_at(exc, phase)
            if verdict.pauses:
                self.pause.start(verdict.text)
            raise DeliveryError(verdict) from exc
        finally:
            if not healthy:
                client.close()
                client = self._client()
            self._idle.put_nowait(client)
        self.pause.end()

    @staticmethod
    def _commands(client: aiosmtplib.SMTP, message: BuiltMessage) -> tuple[bytes, bytes]:
        """MAIL (with SIZE, RFC 1870) and RCPT, each a command line, as aiosmtplib's `mail` and
        `rcpt` write them, but without parsing both addresses again for every message:
        `build_message` made them bare addresses, which the check below confirms."""
        for address in (message.envelope_from, message.recipient):
            if not PLAIN_ADDRESS.match(address):
                raise MessageError(f"not a bare address: {address!r}")
        size = f" SIZE={len(message.data)}".encode() if client.supports_extension("size") else b""
        return (
            b"MAIL FROM:<" + message.envelope_from.encode("ascii") + b">" + size + b"\r\n",
            b"RCPT TO:<" + message.recipient.encode("ascii") + b">\r\n",
        )

    @staticmethod
    def _refusal(
        message: BuiltMessage, mail: SMTPResponse, rcpt: SMTPResponse | None
    ) -> aiosmtplib.SMTPResponseException | None:
        """aiosmtplib's error for a refused MAIL or RCPT, as its `mail` and `rcpt` raise it."""
        if mail.code != aiosmtplib.SMTPStatus.completed:
            return aiosmtplib.SMTPSenderRefused(mail.code, mail.message, message.envelope_from)
        if rcpt is not None and rcpt.code not in (aiosmtplib.SMTPStatus.completed, aiosmtplib.SMTPStatus.will_forward):
            return aiosmtplib.SMTPRecipientRefused(rcpt.code, rcpt.message, message.recipient)
        return None

    @classmethod
    async def _envelope(cls, client: aiosmtplib.SMTP, message: BuiltMessage) -> None:
        """MAIL and RCPT, one at a time, with aiosmtplib's errors."""
        mail, rcpt = cls._commands(client, message)
        mail_reply = await client.execute_command(mail[:-2])
        refusal = cls._refusal(message, mail_reply, None)
        if refusal is None:
            refusal = cls._refusal(message, mail_reply, await client.execute_command(rcpt[:-2]))
        if refusal is not None:
            raise refusal

    def _pipelined(self, client: aiosmtplib.SMTP, data: bytes) -> bytes | None:
        """The body as it goes after DATA when this message's commands can go together
        (RFC 2920: the server offers PIPELINING, and the pool reads the replies itself);
        None to send them one at a time."""
        if not (self.settings.smtp_pipelining and _plain_protocol(client.protocol)):
            return None
        if client.is_ehlo_or_helo_needed or not client.supports_extension("pipelining"):
            return None
        return dot_stuffed(data)

    @classmethod
    async def _envelope_and_data(
        cls, client: aiosmtplib.SMTP, message: BuiltMessage
    ) -> tuple[Phase, aiosmtplib.SMTPException | None]:
        """MAIL, RCPT and DATA in one write, their three replies read together: one round trip
        where one at a time takes three. Returns the phase the conversation reached and, unless
        the server now waits for the body, the error one at a time would have raised there: the
        first refusal, even when the server hung up or fell silent after it (a 421 closes the
        connection without answering the rest of the group); else the lost connection."""
        mail, rcpt = cls._commands(client, message)
        replies: list[SMTPResponse] = []
        broken: aiosmtplib.SMTPException | None = None
        try:
            await _exchange(client, mail + rcpt + b"DATA\r\n", 3, replies)
        except (
            aiosmtplib.SMTPServerDisconnected,
            aiosmtplib.SMTPTimeoutError,
            aiosmtplib.SMTPResponseException,
        ) as exc:
            broken = exc  # `_exchange` closed the session
        refusal = cls._refusal(message, replies[0], replies[1] if len(replies) > 1 else None) if replies else None
        if refusal is not None:
            waits = len(replies) == 3 and replies[2].code == aiosmtplib.SMTPStatus.start_input
            if waits or refusal.code == aiosmtplib.SMTPStatus.domain_unavailable:
                # A server that takes DATA after a refused envelope waits for a body no one
                # sends; one that said 421 is closing (aiosmtplib drops such a session too):
                # the session is of no further use.
                client.close()
            return Phase.MAIL, refusal
        if broken is not None:
            return (Phase.DATA if len(replies) == 2 else Phase.MAIL), broken
        if replies[2].code != aiosmtplib.SMTPStatus.start_input:
            return Phase.DATA, aiosmtplib.SMTPDataError(replies[2].code, replies[2].message)
        return Phase.DATA, None

    @staticmethod
    async def _body(client: aiosmtplib.SMTP, stuffed: bytes) -> None:
        """The body after the server's 354, and its verdict."""
        replies: list[SMTPResponse] = []
        await _exchange(client, stuffed, 1, replies)
        (reply,) = replies
        if reply.code != aiosmtplib.SMTPStatus.completed:
            raise aiosmtplib.SMTPDataError(reply.code, reply.message)

    @classmethod
    async def _data(cls, client: aiosmtplib.SMTP, data: bytes) -> None:
        """DATA and the body, the same bytes on the wire as aiosmtplib's `data` sends and with
        the same errors, but without its two regular-expression passes over every message (line
        endings, then dot-stuffing: 0.4 M instructions a message, a sixth of the sender's work):
        `build_message` ends every line in CRLF, so stuffing is one bytes replace. Anything else,
        or an aiosmtplib whose protocol is not the one this was written against, goes through
        `data`. The replies are read as a pipelined group's are (`_exchange`), so a stray reply
        is never taken for the verdict on the body here either."""
        stuffed = dot_stuffed(data)
        if stuffed is None or client.is_ehlo_or_helo_needed or not _plain_protocol(client.protocol):
            await client.data(data)
            return
        replies: list[SMTPResponse] = []
        await _exchange(client, b"DATA\r\n", 1, replies)
        (reply,) = replies
        if reply.code != aiosmtplib.SMTPStatus.start_input:
            raise aiosmtplib.SMTPDataError(reply.code, reply.message)
        await cls._body(client, stuffed)

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


def dot_stuffed(data: bytes) -> bytes | None:
    """`data` as it goes after DATA (RFC 5321 4.5.2: a line that starts with a dot gets another
    one, and a line of one dot ends it), for a message whose every line ends in CRLF; None for
    any other (a lone CR or LF), which aiosmtplib's `data` normalises first."""
    crlf = data.count(b"\r\n")
    if data.count(b"\n") != crlf or data.count(b"\r") != crlf:
        return None
    if not data.endswith(b"\r\n"):
        data += b"\r\n"
    stuffed = data.replace(b"\r\n.", b"\r\n..")
    if stuffed.startswith(b"."):
        stuffed = b"." + stuffed
    return stuffed + b".\r\n"


_DATA_OURSELVES = aiosmtplib.__version__.split(".")[0] == "5"  # the release whose DATA exchange the pool repeats


def _plain_protocol(protocol: object) -> bool:
    """aiosmtplib's own protocol, with the state `_exchange` reads (5.x), on asyncio's own event
    loop, whose transports look up the protocol's `data_received` at every read (another loop,
    uvloop, need not); anything else sends one command at a time and DATA through `client.data`."""
    return (
        _DATA_OURSELVES
        and type(protocol) is SMTPProtocol
        and all(name in vars(protocol) for name in ("_command_lock", "_buffer", "_response_waiter"))
        and type(asyncio.get_running_loop()).__module__.startswith("asyncio.")
    )


async def _exchange(client: aiosmtplib.SMTP, data: bytes, count: int, replies: list[SMTPResponse]) -> None:
    """Write `data` (one or more commands) and read `count` replies to it, in order, into
    `replies`: when the connection breaks, those that came before are there. As with one
    command at a time, the timeout bounds the wait for each whole reply, not for each read.

    aiosmtplib's reader hands over one reply per read and drops bytes that arrive while a
    parsed reply waits to be picked up, so replies to commands written together could be
    lost. While the group is read, every byte the server sends goes to the protocol's buffer,
    and replies are parsed from it in order. A lost connection or an EOF still fails the wait
    (aiosmtplib sets its error on the protocol's waiter). A server that says more than it is
    asked leaves replies no command can be paired with: its session carries no other message.
    """
    protocol = client.protocol
    if protocol is None or protocol._command_lock is None:  # lost, e.g. while `before_data` ran
        raise aiosmtplib.SMTPServerDisconnected("Server not connected")
    lock = protocol._command_lock
    loop = asyncio.get_running_loop()
    buffer = protocol._buffer
    if buffer:
        client.close()
        raise aiosmtplib.SMTPServerDisconnected("Unrequested data from the server")
    timeout = client.timeout
    deadline = None if timeout is None else loop.time() + timeout

    def received(chunk: bytes) -> None:
        buffer.extend(chunk)
        waiter = protocol._response_waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(_ARRIVED)

    try:
        async with lock:
            protocol.data_received = received  # type: ignore[method-assign,assignment]
            try:
                protocol.write(data)
                while len(replies) < count:
                    reply = protocol._read_response_from_buffer()
                    if reply is not None:
                        replies.append(reply)
                        deadline = None if timeout is None else loop.time() + timeout
                        continue
                    if len(buffer) > MAX_RESPONSE_LENGTH:
                        raise aiosmtplib.SMTPResponseException(
                            aiosmtplib.SMTPStatus.invalid_response, "Response too long"
                        )
                    waiter = protocol._response_waiter
                    if waiter is None or protocol.transport is None:
                        raise aiosmtplib.SMTPServerDisconnected("Connection lost")
                    try:
                        await asyncio.wait_for(waiter, None if deadline is None else deadline - loop.time())
                    except TimeoutError as exc:
                        raise aiosmtplib.SMTPReadTimeoutError("Timed out waiting for server response") from exc
                    protocol._response_waiter = loop.create_future() if protocol.transport is not None else None
                if buffer:
                    client.close()
            finally:
                del protocol.data_received
                if protocol._response_waiter is not None and protocol._response_waiter.done():
                    protocol._response_waiter = loop.create_future() if protocol.transport is not None else None
    except (aiosmtplib.SMTPServerDisconnected, aiosmtplib.SMTPTimeoutError, aiosmtplib.SMTPResponseException):
        if len(replies) < count:  # the session's state is unknown: it carries no other message
            client.close()
        raise


_ARRIVED = SMTPResponse(-1, "")  # what the waiter holds when bytes arrived, not a whole reply


class _Untagged(Exception):
    """Carries an exception of the caller's `before_data` through the pool unclassified."""

    def __init__(self, original: Exception) -> None:
        self.original = original
