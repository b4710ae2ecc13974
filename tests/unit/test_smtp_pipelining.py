"""PIPELINING (RFC 2920): to a server that offers it, the pool writes MAIL, RCPT and DATA
together and reads their three replies, however they arrive; the same bytes go on the wire as
one at a time, and every refusal means what it means without pipelining."""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path

import aiosmtplib
import pytest
import trustme

from nurture.config import Settings
from nurture.mail.message import BuiltMessage
from nurture.mail.sender import DeliveryError, SmtpPool


class _Relay:
    """An SMTP server that keeps what each read of the socket brought (so a test can see which
    commands came together) and answers as told: `refuse` maps a command to its reply,
    `trickle` writes every reply a byte at a time, `data_after_refusal` answers DATA with 354
    even when the envelope was refused (as a broken server might); `hang_up_after` closes the
    connection right after replying to that command, `silent_after` answers nothing more after
    it; `slow` writes each byte of the MAIL reply that many seconds apart."""

    def __init__(self, *, pipelining: bool = True, trickle: bool = False) -> None:
        self.pipelining = pipelining
        self.trickle = trickle
        self.refuse: dict[bytes, bytes] = {}
        self.data_after_refusal = False
        self.hang_up_after: bytes | None = None
        self.silent_after: bytes | None = None
        self.slow = 0.0
        self.glue = b""  # written right after the 354, unasked
        self.reads: list[bytes] = []
        self.bodies: list[bytes] = []
        self.connections = 0

    async def _reply(self, writer: asyncio.StreamWriter, reply: bytes) -> None:
        if self.slow and reply.startswith(b"250 2.1.0"):
            for i in range(len(reply)):
                writer.write(reply[i : i + 1])
                await asyncio.sleep(self.slow)
            return
        if not self.trickle:
            writer.write(reply)
        for i in range(len(reply) if self.trickle else 0):
            writer.write(reply[i : i + 1])
            await writer.drain()
            await asyncio.sleep(0)
        await writer.drain()

    async def serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        writer.write(b"220 relay\r\n")
        pending = b""
        body: bytes | None = None
        envelope_ok = True
        silent = False
        while chunk := await reader.read(65536):
            self.reads.append(chunk)
            pending += chunk
            while b"\r\n" in pending:
                line, pending = pending.split(b"\r\n", 1)
                if body is not None:
                    if line == b".":
                        self.bodies.append(body)
                        body = None
                        await self._reply(writer, self.refuse.get(b"BODY", b"250 2.0.0 queued\r\n"))
                    else:
                        body += line + b"\r\n"
                    continue
                verb = line.split(b" ", 1)[0].upper()
                if silent:
                    continue
                if verb == b"EHLO":
                    offered = b"250-PIPELINING\r\n" if self.pipelining else b""
                    await self._reply(writer, b"250-relay\r\n" + offered + b"250 SIZE 1000000\r\n")
                elif verb == b"MAIL":
                    reply = self.refuse.get(b"MAIL", b"250 2.1.0 ok\r\n")
                    envelope_ok = reply.startswith(b"2")
                    await self._reply(writer, reply)
                elif verb == b"RCPT":
                    reply = self.refuse.get(b"RCPT", b"250 2.1.5 ok\r\n") if envelope_ok else b"503 5.5.1 need MAIL\r\n"
                    envelope_ok = envelope_ok and reply.startswith(b"2")
                    await self._reply(writer, reply)
                elif verb == b"DATA":
                    if envelope_ok and b"DATA" in self.refuse:
                        await self._reply(writer, self.refuse[b"DATA"])
                    elif envelope_ok or self.data_after_refusal:
                        body = b""
                        await self._reply(writer, b"354 go on\r\n" + self.glue)
                    else:
                        await self._reply(writer, b"554 5.5.1 no valid recipients\r\n")
                elif verb == b"RSET":
                    envelope_ok = True
                    await self._reply(writer, b"250 2.0.0 ok\r\n")
                elif verb == b"NOOP":
                    await self._reply(writer, b"250 2.0.0 noop\r\n")
                elif verb == b"QUIT":
                    await self._reply(writer, b"221 bye\r\n")
                else:
                    await self._reply(writer, b"502 5.5.2 what\r\n")
                if verb == self.hang_up_after:
                    writer.close()
                    return
                silent = verb == self.silent_after
        writer.close()


def _message(n: int) -> BuiltMessage:
    data = f"Subject: {n}\r\nMessage-ID: <{n}@acme.example>\r\n\r\n.line {n}\r\n".encode()
    return BuiltMessage("bounce@acme.example", f"lead{n}@alpha.example", f"<{n}@acme.example>", data)


@asynccontextmanager
async def _serving(relay: _Relay, tls: ssl.SSLContext | None = None, **settings: object) -> AsyncIterator[SmtpPool]:
    """A pool of one connection to `relay`, served on a port of its own while the block runs."""
    server = await asyncio.start_server(relay.serve, "127.0.0.1", 0, ssl=tls)
    port = server.sockets[0].getsockname()[1]
    pool = SmtpPool(Settings(smtp_port=port, smtp_pool_size=1, **settings))  # type: ignore[arg-type]
    try:
        yield pool
    finally:
        await pool.close()
        server.close()
        await server.wait_closed()


def _outcome(exc: DeliveryError) -> str:
    return f"{exc.verdict.phase.name}: {exc.verdict.action.name} {exc.verdict.code}"


async def _send_all(
    relay: _Relay, count: int, *, heal: bool = False, tls: ssl.SSLContext | None = None, **settings: object
) -> list[str]:
    """Send `count` messages over one pool; what became of each. `heal`: the relay behaves
    once the first message is done (no refusal, nothing glued)."""
    async with _serving(relay, tls, **settings) as pool:
        outcomes = []
        for n in range(count):
            try:
                await pool.send(_message(n))
                outcomes.append("sent")
            except DeliveryError as exc:
                outcomes.append(_outcome(exc))
            if heal:
                relay.refuse.clear()
                relay.glue = b""
        return outcomes


def _commands(relay: _Relay) -> list[list[bytes]]:
    """The commands of each read, verbs only, body lines left out."""
    verbs = (b"EHLO", b"MAIL", b"RCPT", b"DATA", b"RSET", b"QUIT")
    return [
        [line.split(b" ")[0] for line in read.split(b"\r\n") if line.split(b" ")[0] in verbs] for read in relay.reads
    ]


def test_to_a_server_that_offers_it_the_envelope_and_data_go_in_one_write_with_the_same_bytes() -> None:
    pipelined, one_at_a_time = _Relay(), _Relay(pipelining=False)
    assert asyncio.run(_send_all(pipelined, 3)) == ["sent"] * 3
    assert asyncio.run(_send_all(one_at_a_time, 3)) == ["sent"] * 3
    assert [c for c in _commands(pipelined) if c and c[0] == b"MAIL"] == [[b"MAIL", b"RCPT", b"DATA"]] * 3
    assert [c for c in _commands(one_at_a_time) if c and c[0] in (b"MAIL", b"RCPT", b"DATA")] == [
        [b"MAIL"],
        [b"RCPT"],
        [b"DATA"],
    ] * 3
    # The same conversation, byte for byte, and the same bodies (dot-stuffed as without).
    assert b"".join(pipelined.reads) == b"".join(one_at_a_time.reads)
    assert pipelined.bodies == one_at_a_time.bodies and b"..line 0\r\n" in pipelined.bodies[0]


def test_the_setting_turns_pipelining_off() -> None:
    relay = _Relay()
    assert asyncio.run(_send_all(relay, 2, smtp_pipelining=False)) == ["sent"] * 2
    assert [b"MAIL", b"RCPT", b"DATA"] not in _commands(relay)


def test_replies_that_arrive_a_byte_at_a_time_are_all_read_in_order() -> None:
    relay = _Relay(trickle=True)
    assert asyncio.run(_send_all(relay, 3)) == ["sent"] * 3
    assert len(relay.bodies) == 3 and relay.connections == 1


@pytest.mark.parametrize(
    ("command", "reply", "outcome"),
    [
        (b"MAIL", b"550 5.7.1 sender refused\r\n", "MAIL: PAUSE 550"),
        (b"RCPT", b"550 5.1.1 no such user\r\n", "RCPT: BOUNCE 550"),
        (b"RCPT", b"451 4.7.1 greylisted\r\n", "RCPT: RETRY 451"),
        (b"DATA", b"554 5.7.1 not from you\r\n", "DATA: FAIL 554"),
        (b"DATA", b"421 4.3.2 shutting down\r\n", "DATA: PAUSE 421"),
        (b"BODY", b"554 5.6.0 content refused\r\n", "DATA: FAIL 554"),
    ],
)
def test_a_refusal_in_the_group_means_what_it_means_one_at_a_time_and_the_session_goes_on(
    command: bytes, reply: bytes, outcome: str
) -> None:
    results = {}
    for pipelining in (True, False):
        relay = _Relay(pipelining=pipelining)
        relay.refuse[command] = reply
        first = asyncio.run(_send_all(relay, 1))
        relay.refuse.clear()
        results[pipelining] = first, relay.connections
    assert results[True] == results[False]
    assert results[True][0] == [outcome]


def test_after_a_refusal_the_same_connection_carries_the_next_message() -> None:
    relay = _Relay()
    relay.refuse[b"RCPT"] = b"550 5.1.1 no such user\r\n"

    assert asyncio.run(_send_all(relay, 2, heal=True)) == ["RCPT: BOUNCE 550", "sent"]
    assert relay.connections == 1 and len(relay.bodies) == 1


def test_a_server_that_takes_data_after_refusing_the_recipient_gets_no_body_and_a_new_connection() -> None:
    relay = _Relay()
    relay.refuse[b"RCPT"] = b"550 5.1.1 no such user\r\n"
    relay.data_after_refusal = True

    assert asyncio.run(_send_all(relay, 2, heal=True)) == ["RCPT: BOUNCE 550", "sent"]
    # The first session waited for a body that never came; the next message went on a new one.
    assert relay.connections == 2 and len(relay.bodies) == 1


def test_before_data_runs_once_the_envelope_is_accepted_and_before_any_body_byte() -> None:
    relay = _Relay()
    seen: list[tuple[list[list[bytes]], int]] = []

    async def scenario() -> None:
        async def before_data() -> None:
            seen.append((_commands(relay), len(relay.bodies)))

        async with _serving(relay) as pool:
            await pool.send(_message(0), before_data)

    asyncio.run(scenario())
    ((commands, bodies),) = seen
    assert commands[-1] == [b"MAIL", b"RCPT", b"DATA"] and bodies == 0
    assert relay.reads[-2].startswith(b"Subject: 0")  # the body went out after, alone


def test_a_failing_before_data_leaves_the_server_without_a_body_and_drops_the_connection() -> None:
    relay = _Relay()

    async def scenario() -> None:
        async def before_data() -> None:
            raise RuntimeError("the previous send's mark did not commit")

        async with _serving(relay) as pool:
            with pytest.raises(RuntimeError):
                await pool.send(_message(0), before_data)
            await pool.send(_message(1))

    asyncio.run(scenario())
    assert [b.split(b"\r\n")[0] for b in relay.bodies] == [b"Subject: 1"] and relay.connections == 2
    assert b"Subject: 0" not in b"".join(relay.reads)


def test_after_a_group_the_session_answers_aiosmtplibs_own_commands_in_order() -> None:
    relay = _Relay()

    async def scenario() -> list[int]:
        async with _serving(relay) as pool:
            await pool.send(_message(0))
            client = pool._idle.get_nowait()
            codes = [(await client.noop()).code, (await client.rset()).code]
            pool._idle.put_nowait(client)
            await pool.send(_message(1))
            client = pool._idle.get_nowait()
            codes.append((await client.quit()).code)
            pool._idle.put_nowait(client)
            return codes

    assert asyncio.run(scenario()) == [250, 250, 221]


def test_over_implicit_tls_replies_that_arrive_a_byte_at_a_time_are_all_read_in_order(tmp_path: Path) -> None:
    """The pool's reader takes the bytes the TLS layer hands the protocol, as the socket's."""
    authority = trustme.CA()
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    authority.issue_cert("127.0.0.1").configure_cert(context)
    ca_file = tmp_path / "ca.pem"
    authority.cert_pem.write_to_path(str(ca_file))
    relay = _Relay(trickle=True)
    relay.refuse[b"RCPT"] = b"550 5.1.1 no such user\r\n"

    sent = _send_all(relay, 3, heal=True, tls=context, smtp_tls=True, smtp_ca_file=str(ca_file))
    assert asyncio.run(sent) == ["RCPT: BOUNCE 550", "sent", "sent"]
    assert [c for c in _commands(relay) if c and c[0] == b"MAIL"] == [[b"MAIL", b"RCPT", b"DATA"]] * 3
    assert relay.connections == 1 and len(relay.bodies) == 2


def _both_ways(configure: Callable[[_Relay], None], count: int = 1, **settings: object) -> dict[bool, list[str]]:
    """What became of `count` messages sent to a relay set up by `configure`, with and without
    pipelining."""
    results = {}
    for pipelining in (True, False):
        relay = _Relay(pipelining=pipelining)
        configure(relay)
        results[pipelining] = asyncio.run(_send_all(relay, count, **settings))
    return results


@pytest.mark.parametrize(
    ("reply", "outcome"),
    [
        (b"554 5.7.1 rejected by policy\r\n", "DATA: FAIL 554"),
        (b"451 4.3.0 try again later\r\n", "DATA: RETRY 451"),
        (b"421 4.3.2 shutting down\r\n", "DATA: PAUSE 421"),
    ],
)
def test_a_refused_data_command_is_judged_at_data_as_one_at_a_time(reply: bytes, outcome: str) -> None:
    results = _both_ways(lambda relay: relay.refuse.update({b"DATA": reply}))
    assert results[True] == results[False] == [outcome]


@pytest.mark.parametrize(
    ("command", "reply", "outcome"),
    [
        (b"MAIL", b"421 4.7.0 too many connections\r\n", "MAIL: PAUSE 421"),
        (b"RCPT", b"421 4.4.5 shutting down\r\n", "RCPT: PAUSE 421"),
        (b"RCPT", b"550 5.1.1 no such user\r\n", "RCPT: BOUNCE 550"),
        (b"DATA", b"421 4.3.2 shutting down\r\n", "DATA: PAUSE 421"),
    ],
)
def test_a_refusal_the_server_hangs_up_after_is_still_its_verdict(command: bytes, reply: bytes, outcome: str) -> None:
    """RFC 5321 3.8: a server that says 421 closes the connection, without answering the
    commands that came after it in the group."""

    def configure(relay: _Relay) -> None:
        relay.refuse[command] = reply
        relay.hang_up_after = command

    results = _both_ways(configure)
    assert results[True] == results[False] == [outcome]


def test_a_refusal_the_server_then_falls_silent_after_is_still_its_verdict() -> None:
    def configure(relay: _Relay) -> None:
        relay.refuse[b"MAIL"] = b"550 5.1.0 sender unknown\r\n"
        relay.silent_after = b"MAIL"

    results = _both_ways(configure, smtp_timeout=0.5)
    assert results[True] == results[False] == ["MAIL: FAIL 550"]


@pytest.mark.parametrize("command", [b"MAIL", b"RCPT"])
def test_a_server_that_hangs_up_mid_group_leaves_the_message_to_retry_as_one_at_a_time(command: bytes) -> None:
    def configure(relay: _Relay) -> None:
        relay.hang_up_after = command

    results = _both_ways(configure)
    assert [r.split(" ")[:2] for r in results[True]] == [r.split(" ")[:2] for r in results[False]]
    assert results[True][0].endswith("RETRY None")


@pytest.mark.parametrize("command", [b"MAIL", b"RCPT"])
def test_a_session_that_said_421_to_the_envelope_is_not_reused_even_if_the_server_stays(command: bytes) -> None:
    """aiosmtplib closes a session whose server said 421 (closing) to a command; one that
    answered the rest of the group and RSET anyway is no safer to reuse."""
    results = {}
    for pipelining in (True, False):
        relay = _Relay(pipelining=pipelining)
        relay.refuse[command] = b"421 4.3.2 shutting down\r\n"

        outcomes = asyncio.run(_send_all(relay, 2, heal=True, smtp_pause_seconds=0))
        results[pipelining] = outcomes, relay.connections
    assert results[True] == results[False]
    assert results[True][1] == 2


def test_a_connection_lost_while_before_data_runs_leaves_the_message_to_retry() -> None:
    """After the server's 354 the pool waits for the caller; a server that hangs up meanwhile
    (its own timeout, a restart) took no body: the message is retried, as one at a time."""
    results = {}
    for pipelining in (True, False):
        relay = _Relay(pipelining=pipelining)
        relay.hang_up_after = b"DATA" if pipelining else b"RCPT"  # the last command before the wait

        async def scenario(relay: _Relay = relay) -> list[str]:
            async with _serving(relay) as pool:
                clients: list[aiosmtplib.SMTP] = []
                make = pool._client

                def client() -> aiosmtplib.SMTP:
                    clients.append(make())
                    return clients[-1]

                pool._client = client  # type: ignore[method-assign]

                async def before_data() -> None:
                    async with asyncio.timeout(10):
                        while clients[0].protocol is not None:  # until the pool's session has seen the hang-up
                            await asyncio.sleep(0.01)

                try:
                    await pool.send(_message(0), before_data)
                    return ["sent"]
                except DeliveryError as exc:
                    return [_outcome(exc)]

        results[pipelining] = asyncio.run(scenario())
    assert results[True] == results[False] == ["DATA: RETRY None"]


def test_a_reply_dribbled_a_byte_at_a_time_times_out_as_one_reply_would() -> None:
    """The timeout bounds the wait for each whole reply, not for each read: a server that
    writes a byte just inside the timeout cannot hold the connection (and the send) forever."""

    def configure(relay: _Relay) -> None:
        relay.slow = 0.1  # "250 2.1.0 ok\r\n" takes 1.4 s

    results = _both_ways(configure, smtp_timeout=0.4)
    assert results[True] == results[False] == ["MAIL: RETRY None"]


@pytest.mark.parametrize("pipelining", [True, False], ids=["pipelined", "one-at-a-time"])
def test_a_server_that_says_more_than_it_was_asked_gets_no_body_and_a_new_connection(pipelining: bool) -> None:
    """A reply glued after the 354 could only be mistaken for the verdict on the body (here a
    refusal): the message is not marked sent, the session goes, nothing is delivered."""
    relay = _Relay(pipelining=pipelining)
    relay.glue = b"250 2.0.0 queued as early\r\n"
    relay.refuse[b"BODY"] = b"554 5.6.0 content refused\r\n"

    assert asyncio.run(_send_all(relay, 2, heal=True)) == ["DATA: RETRY None", "sent"]
    assert [b.split(b"\r\n")[0] for b in relay.bodies] == [b"Subject: 1"] and relay.connections == 2
