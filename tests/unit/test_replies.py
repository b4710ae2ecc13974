"""SMTP replies judged by phase and enhanced status code (RFC 3463)."""

from __future__ import annotations

import pytest

from nurture.mail.replies import Action, Phase, classify_reply, enhanced_status, unreachable

G, M, R, D = Phase.GREETING, Phase.MAIL, Phase.RCPT, Phase.DATA


@pytest.mark.parametrize(
    ("phase", "code", "message", "action"),
    [
        # Only a permanent refusal of the recipient's address or mailbox is a bounce.
        (R, 550, "5.1.1 no such user", Action.BOUNCE),
        (R, 552, "5.2.2 mailbox full", Action.SOFT_BOUNCE),  # a passing state: counted, not suppressed
        (R, 550, "mailbox unavailable", Action.BOUNCE),  # no enhanced code: the basic code says mailbox
        (R, 554, "5.7.1 relay access denied", Action.FAIL),
        (R, 450, "4.2.1 mailbox busy", Action.RETRY),
        (R, 421, "4.4.2 closing", Action.PAUSE),
        # At the end of DATA the content was judged: a bounce only when clearly about the mailbox.
        (D, 554, "5.7.1 message content rejected", Action.FAIL),
        (D, 550, "5.6.0 bad content", Action.FAIL),
        (D, 554, "transaction failed", Action.FAIL),
        (D, 552, "5.2.2 mailbox full", Action.SOFT_BOUNCE),
        (D, 552, "5.2.3 message too large for this mailbox", Action.FAIL),
        (D, 451, "4.3.0 local error", Action.RETRY),
        # Refusals of us, not of a message: pause.
        (G, 554, "5.7.1 client host blocked", Action.PAUSE),
        (G, 421, "too many connections", Action.PAUSE),
        (M, 550, "5.7.1 sender reputation", Action.PAUSE),
        (M, 553, "5.1.8 sender domain does not exist", Action.FAIL),
        (M, 552, "5.3.4 message too big for system", Action.FAIL),
        (R, 553, "5.1.7 bad sender address syntax", Action.FAIL),
        (M, 451, "4.7.1 rate limited", Action.RETRY),
        (Phase.CONNECT, 535, "5.7.8 login failed", Action.PAUSE),
    ],
)
def test_a_reply_is_judged_by_where_it_came_and_its_enhanced_code(
    phase: Phase, code: int, message: str, action: Action
) -> None:
    verdict = classify_reply(phase, code, message)
    assert verdict.action is action
    assert verdict.text == f"{phase.value.upper()}: {code} {message}"


def test_the_enhanced_code_is_read_only_at_the_start_of_the_reply() -> None:
    assert enhanced_status("5.7.1 blocked") == "5.7.1"
    assert enhanced_status("blocked, see 5.7.1") is None
    assert classify_reply(D, 554, "5.7.1 no").status == "5.7.1"


def test_no_reply_before_a_transaction_pauses_and_during_one_retries() -> None:
    assert unreachable(Phase.CONNECT, "ConnectionRefusedError").action is Action.PAUSE
    assert unreachable(Phase.DATA, "TimeoutError").action is Action.RETRY
