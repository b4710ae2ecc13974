"""What a delivery status says about the recipient, by its enhanced status code (RFC 3463),
read from a DSN, a complaint report or an ESP webhook (the replies of our own SMTP session
are judged in `replies`, from the same table).

The table of codes is `codes`: a permanent failure about the recipient's address or mailbox
is a hard bounce that suppresses the address; a passing state of the mailbox (full) is a
soft bounce, counted; anything about the sender, the policy or the message (X.7.x, X.6.x,
X.1.7, X.1.8, X.2.3) never suppresses. Transient failures of the receiving system or the
network count as soft bounces; permanent ones say nothing against the recipient.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import StrEnum

from nurture.mail.codes import About, about


class Verdict(StrEnum):
    DELIVERED = "delivered"
    HARD = "hard"  # the mailbox does not exist or is disabled: suppress the address
    SOFT = "soft"  # transient or unclear: count, suppress after several within a period
    POLICY = "policy"  # refused for the message or the sender (content, reputation, authentication)


# An enhanced status code as servers write it, alone or after the basic code ("550 5.1.1 ...",
# "550-5.1.1 ..."), not inside an IP address or a version number.
_ENHANCED = re.compile(r"(?<![\d.])([245])\.(\d{1,3})\.(\d{1,3})(?![\d.]*\d)")
_BASIC = re.compile(r"^\s*(?:smtp;\s*)?([245]\d\d)(?=[\s-]|$)", re.I)

# Without an enhanced code, the words of the reply decide, conservatively.
_MAILBOX_GONE = re.compile(
    r"user unknown|unknown user|no such (?:user|mailbox|recipient)|does not exist|doesn'?t have an? .* account|"
    r"mailbox (?:unavailable|not found|disabled)|invalid (?:recipient|mailbox|address)|"
    r"recipient (?:not found|rejected)|"
    r"address rejected|account (?:disabled|has been disabled|is disabled|closed)|unrouteable address",
    re.I,
)
_POLICY_WORDS = re.compile(
    r"spam|block(?:ed|list)|blacklist|reputation|policy|dmarc|spf|dkim|authenticat|content rejected|"
    r"not accepted|denied|listed",
    re.I,
)


# (what the code is about, permanent) -> the verdict
BY_CODE: dict[tuple[About, bool], Verdict] = {
    (About.RECIPIENT, True): Verdict.HARD,
    (About.RECIPIENT, False): Verdict.SOFT,
    (About.MAILBOX, True): Verdict.SOFT,
    (About.MAILBOX, False): Verdict.SOFT,
    (About.SENDER, True): Verdict.POLICY,
    (About.SENDER, False): Verdict.POLICY,
    (About.MESSAGE, True): Verdict.POLICY,
    (About.MESSAGE, False): Verdict.POLICY,
    (About.SYSTEM, True): Verdict.POLICY,
    (About.SYSTEM, False): Verdict.SOFT,
}


@dataclass(frozen=True)
class ReplyStatus:
    """One reply or delivery status, as received and as understood."""

    code: int | None  # the basic reply code (550), when there is one
    enhanced: str | None  # "5.1.1"
    text: str
    verdict: Verdict


def find_enhanced(text: str) -> str | None:
    """The first enhanced status code in a reply or diagnostic text."""
    match = _ENHANCED.search(text)
    return ".".join(match.groups()) if match else None


def find_basic(text: str) -> int | None:
    match = _BASIC.match(text)
    return int(match.group(1)) if match else None


def verdict_for(enhanced: str | None, code: int | None = None, text: str = "") -> Verdict:
    """The verdict for an enhanced status code, else for a basic code and the reply's words."""
    if enhanced:
        klass = enhanced.split(".")[0]
        if klass == "2":
            return Verdict.DELIVERED
        return BY_CODE[(about(enhanced), klass == "5")]
    if code is None:
        return Verdict.SOFT
    if 200 <= code < 300:
        return Verdict.DELIVERED
    if code < 500:
        return Verdict.SOFT
    if _POLICY_WORDS.search(text):
        return Verdict.POLICY
    if _MAILBOX_GONE.search(text):
        return Verdict.HARD
    return Verdict.SOFT  # a permanent refusal we cannot read: counted, not acted on at once


def classify_reply(text: str, code: int | None = None, enhanced: str | None = None) -> ReplyStatus:
    """Read a reply (`550 5.1.1 <x>: user unknown`), a DSN diagnostic (`smtp; 550 ...`) or a
    status given apart (`enhanced`), and judge it."""
    text = " ".join(text.split())
    code = code if code is not None else find_basic(text)
    enhanced = enhanced or find_enhanced(text)
    return ReplyStatus(code, enhanced, text, verdict_for(enhanced, code, text))
