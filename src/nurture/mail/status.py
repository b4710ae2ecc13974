"""What an SMTP reply or a delivery status says about the recipient, by its enhanced status
code (RFC 3463), whether the reply came during the SMTP session or later in a DSN.

Only a permanent failure about the recipient's mailbox suppresses the address: X.1.x
(addressing) and X.2.x (mailbox) with class 5. Policy, content and reputation refusals
(X.7.x), like failures of the system or the network, say nothing against the recipient and
never suppress. Transient failures (class 4) count as soft bounces.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import StrEnum


class Verdict(StrEnum):
    DELIVERED = "delivered"
    HARD = "hard"  # the mailbox does not exist or is disabled: suppress the address
    SOFT = "soft"  # transient or unclear: count, suppress after several within a period
    POLICY = "policy"  # refused for the message or the sender (content, reputation, authentication)


# An enhanced status code as servers write it, alone or after the basic code ("550 5.1.1 ...",
# "550-5.1.1 ..."), not inside an IP address or a version number.
_ENHANCED = re.compile(r"(?<![\d.])([245])\.(\d{1,3})\.(\d{1,3})(?![\d.]*\d)")
_BASIC = re.compile(r"^\s*(?:smtp;\s*)?([245]\d\d)(?=[\s-]|$)", re.I)

# Addressing codes that are about our side, not the recipient's mailbox.
_SENDER_ADDRESSING = {"1.7", "1.8"}  # bad sender mailbox syntax / sender's system address

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
        klass, subject, detail = enhanced.split(".")
        if klass == "2":
            return Verdict.DELIVERED
        if klass == "4":
            return Verdict.SOFT
        if subject == "1":
            return Verdict.POLICY if f"{subject}.{detail}" in _SENDER_ADDRESSING else Verdict.HARD
        if subject == "2":
            if detail == "2":
                return Verdict.SOFT  # mailbox full: RFC 3463 says treat it as transient
            if detail == "3":
                return Verdict.POLICY  # message too large for the mailbox: about the message
            return Verdict.HARD
        if subject == "4" and detail == "4":
            return Verdict.SOFT  # unable to route: often a DNS failure that passes
        return Verdict.POLICY
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
