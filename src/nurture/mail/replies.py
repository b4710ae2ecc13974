"""What an SMTP reply means for the message, its recipient and the server.

A reply is judged by where in the conversation it came (the greeting, MAIL, RCPT or the
end of DATA) and by its enhanced status code (RFC 3463: class.subject.detail, where subject
1 is the address, 2 the mailbox, 3 the mail system, 4 network and routing, 5 the protocol,
6 content and 7 security or policy). Only a permanent failure about the recipient's address
or mailbox is a bounce that suppresses the recipient. A refusal of the whole connection
(a greeting that is not 220, a 421, a 5.7.x refusal of our sender, a login failure, a
server that cannot be reached) says nothing about any recipient: sending pauses and is
retried later. A rejection of the content (5.6.x, 5.7.x at DATA) fails that one send and
keeps the reply. Pure: no I/O, no SMTP library.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import StrEnum


class Phase(StrEnum):
    """Where in the SMTP conversation a reply (or a failure) came."""

    CONNECT = "connect"  # reaching the server, TLS, login
    GREETING = "greeting"  # the server's banner and EHLO/HELO
    MAIL = "mail"
    RCPT = "rcpt"
    DATA = "data"


class Action(StrEnum):
    RETRY = "retry"  # transient: try this message again later
    BOUNCE = "bounce"  # the recipient's address or mailbox is permanently refused: suppress it
    FAIL = "fail"  # this message is refused for good; the recipient is not to blame
    PAUSE = "pause"  # the server refuses us, not this message: pause sending, retry it later


@dataclass(frozen=True)
class Verdict:
    action: Action
    code: int | None
    text: str  # for `last_error`: the phase and the server's own words
    phase: Phase
    status: str | None = None  # the enhanced status code, e.g. "5.7.1"

    @property
    def pauses(self) -> bool:
        return self.action is Action.PAUSE


ENHANCED = re.compile(r"^\s*([245])\.(\d{1,3})\.(\d{1,3})\b")
# Basic codes that, without an enhanced code, are about the recipient's mailbox (RFC 5321 4.2.3).
MAILBOX_CODES = frozenset({550, 551, 553})


def enhanced_status(message: str) -> str | None:
    """The RFC 3463 status code a reply text starts with, if any."""
    match = ENHANCED.match(message)
    return ".".join(match.groups()) if match else None


def classify_reply(phase: Phase, code: int, message: str) -> Verdict:
    """What to do after the server answered `code message` at `phase`."""
    status = enhanced_status(message)
    subject = int(status.split(".")[1]) if status else None
    text = f"{phase.value.upper()}: {code} {message}".strip()

    def verdict(action: Action) -> Verdict:
        return Verdict(action, code, text, phase, status)

    if code == 421 or phase in (Phase.CONNECT, Phase.GREETING):
        return verdict(Action.PAUSE)  # the server is closing or refuses the connection itself
    if 400 <= code < 500:
        return verdict(Action.RETRY)
    if code < 500:  # not an error reply at all (a protocol surprise): try again later
        return verdict(Action.RETRY)
    if phase is Phase.MAIL:
        # Refused as a sender: policy or reputation (5.7.x) means every message would be.
        return verdict(Action.PAUSE if subject == 7 else Action.FAIL)
    if phase is Phase.RCPT:
        if subject in (1, 2) or (subject is None and code in MAILBOX_CODES):
            return verdict(Action.BOUNCE)
        return verdict(Action.FAIL)
    # DATA: the content was judged; only a reply clearly about the mailbox is a bounce.
    if subject in (1, 2):
        return verdict(Action.BOUNCE)
    return verdict(Action.FAIL)


def unreachable(phase: Phase, error: str) -> Verdict:
    """No reply at all: the server could not be reached, or the connection broke or timed
    out. Before a transaction began, the server is down for everyone: pause. During one, the
    message is retried."""
    action = Action.PAUSE if phase in (Phase.CONNECT, Phase.GREETING) else Action.RETRY
    return Verdict(action, None, f"{phase.value.upper()}: {error}", phase)
