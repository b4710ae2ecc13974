"""Enhanced status codes decide what a refusal means for the recipient (RFC 3463)."""

from __future__ import annotations

import pytest

from nurture.mail.status import Verdict, classify_reply

CASES = [
    ("550 5.1.1 <a@x.example>: Recipient address rejected: User unknown", Verdict.HARD),
    ("smtp;550 5.1.10 RESOLVER.ADR.RecipientNotFound; Recipient not found", Verdict.HARD),
    ("550 5.2.1 The email account that you tried to reach is disabled", Verdict.HARD),
    ("552 5.2.2 mailbox full", Verdict.SOFT),
    ("552 5.2.3 message too large", Verdict.POLICY),
    ("553 5.1.8 sender address domain does not exist", Verdict.POLICY),
    ("550-5.7.26 Unauthenticated email from acme.example is not accepted", Verdict.POLICY),
    ("554 5.7.1 Service unavailable; client host [203.0.113.25] blocked", Verdict.POLICY),
    ("554 5.6.0 message content rejected", Verdict.POLICY),
    ("421 4.7.0 Try again later, closing connection", Verdict.POLICY),  # about us: never counted against them
    ("452 4.2.2 mailbox full", Verdict.SOFT),
    ("451 4.3.0 temporary local problem", Verdict.SOFT),
    ("550 5.4.4 unable to route", Verdict.SOFT),
    ("250 2.0.0 OK", Verdict.DELIVERED),
    # Without an enhanced code the words decide, and an unreadable refusal only counts.
    ("550 Requested action not taken: mailbox unavailable", Verdict.HARD),
    ("554 delivery error: dd This user doesn't have a yahoo.com account", Verdict.HARD),
    ("550 Message rejected because it was listed by Spamhaus", Verdict.POLICY),
    ("554 go away", Verdict.SOFT),
    ("host mx.example.net [10.1.2.3] said: 421 too busy", Verdict.SOFT),
]


@pytest.mark.parametrize(("reply", "verdict"), CASES)
def test_reply_verdict(reply: str, verdict: Verdict) -> None:
    assert classify_reply(reply).verdict is verdict


def test_codes_are_read_from_replies_not_from_addresses_or_numbers() -> None:
    status = classify_reply("550-5.1.1 The email account does not exist 10.2.3.4 v1.2.3")
    assert (status.code, status.enhanced) == (550, "5.1.1")
    assert classify_reply("host 192.5.1.1 said hello").enhanced is None
