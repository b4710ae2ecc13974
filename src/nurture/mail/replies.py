"""What an SMTP reply means for the message, its recipient and the server.

A reply is judged first by where in the conversation it came (the greeting, MAIL, RCPT or
the end of DATA), then by its enhanced status code (RFC 3463), read in the table `codes`
that delivery reports and ESP webhooks are judged by too (see `status`).

- A refusal of the whole connection (a greeting that is not 220, a 421, a login failure, a
  server that cannot be reached) or of our sender by policy at MAIL (5.7.x) says nothing
  about any recipient: sending pauses and is retried later. Any other refusal at MAIL
  fails that send; nothing at MAIL is held against a recipient.
- A transient reply (4xx) is retried.
- At RCPT or DATA, a permanent reply about the recipient's address or mailbox (5.1.1,
  5.2.1, ...) is a bounce that suppresses the recipient; one about a passing state of the
  mailbox (5.2.2 mailbox full) fails the send and counts as a soft bounce; one about the
  sender, the policy or the message (5.7.x, 5.6.x, 5.2.3, 5.1.7, 5.1.8) or the receiving
  system fails that one send and keeps the reply.
Pure: no I/O, no SMTP library.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import StrEnum

from nurture.mail.codes import About, about


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
    SOFT_BOUNCE = "soft_bounce"  # the mailbox refuses for now (full): fail the send, count a soft bounce
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
    kind = about(status) if status else None
    text = f"{phase.value.upper()}: {code} {message}".strip()

    def verdict(action: Action) -> Verdict:
        return Verdict(action, code, text, phase, status)

    if code == 421 or phase in (Phase.CONNECT, Phase.GREETING):
        return verdict(Action.PAUSE)  # the server is closing or refuses the connection itself
    if code < 500:  # transient, or not an error reply at all (a protocol surprise): try again later
        return verdict(Action.RETRY)
    if phase is Phase.MAIL:
        # Nothing at MAIL is about a recipient. Refused by policy or reputation (5.7.x): every
        # message would be, so sending pauses; anything else fails this send.
        return verdict(Action.PAUSE if status and status.split(".")[1] == "7" else Action.FAIL)
    if kind is None:
        # No enhanced code: at RCPT the basic code can say "mailbox"; after DATA it cannot.
        mailbox = phase is Phase.RCPT and code in MAILBOX_CODES
        return verdict(Action.BOUNCE if mailbox else Action.FAIL)
    return verdict(PERMANENT[kind])


# What a permanent reply at RCPT or at the end of DATA does, by what its code is about.
PERMANENT: dict[About, Action] = {
    About.RECIPIENT: Action.BOUNCE,
    About.MAILBOX: Action.SOFT_BOUNCE,
    About.SENDER: Action.FAIL,
    About.MESSAGE: Action.FAIL,
    About.SYSTEM: Action.FAIL,
}


def unreachable(phase: Phase, error: str) -> Verdict:
    """No reply at all: the server could not be reached, or the connection broke or timed
    out. Before a transaction began, the server is down for everyone: pause. During one, the
    message is retried."""
    action = Action.PAUSE if phase in (Phase.CONNECT, Phase.GREETING) else Action.RETRY
    return Verdict(action, None, f"{phase.value.upper()}: {error}", phase)
