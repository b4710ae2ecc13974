"""One table of enhanced status codes (RFC 3463, the IANA registry) decides what a code
means for the recipient, whether it arrives in our own SMTP session (`replies`, after the
phase rules) or later in a DSN, a complaint report or an ESP webhook (`status`).

Every registered code is listed here with what each path does with it:
- later (DSN/webhook), class 5 and class 4: HARD suppresses the address, SOFT is counted
  (several within a period suppress), POLICY never suppresses;
- in the session, a 5xx reply at RCPT or at the end of DATA: BOUNCE suppresses,
  SOFT_BOUNCE fails the send and counts a soft bounce, FAIL fails the send only;
- in the session, a 5xx reply at MAIL: PAUSE (the server refuses our sender by policy,
  5.7.x: sending pauses) or FAIL; nothing at MAIL is held against a recipient.
"""

from __future__ import annotations

import pytest

from nurture.mail.codes import CODES
from nurture.mail.replies import Action, Phase, classify_reply
from nurture.mail.status import Verdict
from nurture.mail.status import classify_reply as classify_status

HARD, SOFT, POLICY = Verdict.HARD, Verdict.SOFT, Verdict.POLICY
BOUNCE, SOFT_BOUNCE, FAIL, PAUSE = Action.BOUNCE, Action.SOFT_BOUNCE, Action.FAIL, Action.PAUSE

# subject.detail, later 5.x.x, later 4.x.x, session 5xx at RCPT/DATA, session 5xx at MAIL
TABLE = [
    ("0.0", POLICY, SOFT, FAIL, FAIL),  # Other undefined status
    ("1.0", HARD, SOFT, BOUNCE, FAIL),  # Other address status
    ("1.1", HARD, SOFT, BOUNCE, FAIL),  # Bad destination mailbox address
    ("1.2", HARD, SOFT, BOUNCE, FAIL),  # Bad destination system address
    ("1.3", HARD, SOFT, BOUNCE, FAIL),  # Bad destination mailbox address syntax
    ("1.4", HARD, SOFT, BOUNCE, FAIL),  # Destination mailbox address ambiguous
    ("1.5", POLICY, SOFT, FAIL, FAIL),  # Destination address valid
    ("1.6", HARD, SOFT, BOUNCE, FAIL),  # Destination mailbox has moved, no forwarding address
    ("1.7", POLICY, POLICY, FAIL, FAIL),  # Bad sender's mailbox address syntax
    ("1.8", POLICY, POLICY, FAIL, FAIL),  # Bad sender's system address
    ("1.9", POLICY, SOFT, FAIL, FAIL),  # Message relayed to non-compliant mailer
    ("1.10", HARD, SOFT, BOUNCE, FAIL),  # Recipient address has null MX
    ("2.0", HARD, SOFT, BOUNCE, FAIL),  # Other or undefined mailbox status
    ("2.1", HARD, SOFT, BOUNCE, FAIL),  # Mailbox disabled, not accepting messages
    ("2.2", SOFT, SOFT, SOFT_BOUNCE, FAIL),  # Mailbox full
    ("2.3", POLICY, POLICY, FAIL, FAIL),  # Message length exceeds administrative limit
    ("2.4", SOFT, SOFT, SOFT_BOUNCE, FAIL),  # Mailing list expansion problem
    ("3.0", POLICY, SOFT, FAIL, FAIL),  # Other or undefined mail system status
    ("3.1", POLICY, SOFT, FAIL, FAIL),  # Mail system full
    ("3.2", POLICY, SOFT, FAIL, FAIL),  # System not accepting network messages
    ("3.3", POLICY, POLICY, FAIL, FAIL),  # System not capable of selected features
    ("3.4", POLICY, POLICY, FAIL, FAIL),  # Message too big for system
    ("3.5", POLICY, SOFT, FAIL, FAIL),  # System incorrectly configured
    ("3.6", POLICY, SOFT, FAIL, FAIL),  # Requested priority was changed
    ("4.0", POLICY, SOFT, FAIL, FAIL),  # Other or undefined network or routing status
    ("4.1", POLICY, SOFT, FAIL, FAIL),  # No answer from host
    ("4.2", POLICY, SOFT, FAIL, FAIL),  # Bad connection
    ("4.3", POLICY, SOFT, FAIL, FAIL),  # Directory server failure
    ("4.4", SOFT, SOFT, SOFT_BOUNCE, FAIL),  # Unable to route
    ("4.5", POLICY, SOFT, FAIL, FAIL),  # Mail system congestion
    ("4.6", POLICY, SOFT, FAIL, FAIL),  # Routing loop detected
    ("4.7", POLICY, SOFT, FAIL, FAIL),  # Delivery time expired
    ("5.0", POLICY, SOFT, FAIL, FAIL),  # Other or undefined protocol status
    ("5.1", POLICY, SOFT, FAIL, FAIL),  # Invalid command
    ("5.2", POLICY, SOFT, FAIL, FAIL),  # Syntax error
    ("5.3", POLICY, SOFT, FAIL, FAIL),  # Too many recipients
    ("5.4", POLICY, SOFT, FAIL, FAIL),  # Invalid command arguments
    ("5.5", POLICY, SOFT, FAIL, FAIL),  # Wrong protocol version
    ("5.6", POLICY, POLICY, FAIL, FAIL),  # Authentication exchange line is too long
    ("6.0", POLICY, POLICY, FAIL, FAIL),  # Other or undefined media error
    ("6.1", POLICY, POLICY, FAIL, FAIL),  # Media not supported
    ("6.2", POLICY, POLICY, FAIL, FAIL),  # Conversion required and prohibited
    ("6.3", POLICY, POLICY, FAIL, FAIL),  # Conversion required but not supported
    ("6.4", POLICY, POLICY, FAIL, FAIL),  # Conversion with loss performed
    ("6.5", POLICY, POLICY, FAIL, FAIL),  # Conversion failed
    ("6.6", POLICY, POLICY, FAIL, FAIL),  # Message content not available
    ("6.7", POLICY, POLICY, FAIL, FAIL),  # Non-ASCII addresses not permitted for that sender/recipient
    ("6.8", POLICY, POLICY, FAIL, FAIL),  # UTF-8 string reply is required, but not permitted by the SMTP client
    ("6.9", POLICY, POLICY, FAIL, FAIL),  # UTF-8 header message cannot be transferred to one or more recipients
    ("7.0", POLICY, POLICY, FAIL, PAUSE),  # Other or undefined security status
    ("7.1", POLICY, POLICY, FAIL, PAUSE),  # Delivery not authorized, message refused
    ("7.2", POLICY, POLICY, FAIL, PAUSE),  # Mailing list expansion prohibited
    ("7.3", POLICY, POLICY, FAIL, PAUSE),  # Security conversion required but not possible
    ("7.4", POLICY, POLICY, FAIL, PAUSE),  # Security features not supported
    ("7.5", POLICY, POLICY, FAIL, PAUSE),  # Cryptographic failure
    ("7.6", POLICY, POLICY, FAIL, PAUSE),  # Cryptographic algorithm not supported
    ("7.7", POLICY, POLICY, FAIL, PAUSE),  # Message integrity failure
    ("7.8", POLICY, POLICY, FAIL, PAUSE),  # Authentication credentials invalid
    ("7.9", POLICY, POLICY, FAIL, PAUSE),  # Authentication mechanism is too weak
    ("7.10", POLICY, POLICY, FAIL, PAUSE),  # Encryption needed
    ("7.11", POLICY, POLICY, FAIL, PAUSE),  # Encryption required for requested authentication mechanism
    ("7.12", POLICY, POLICY, FAIL, PAUSE),  # A password transition is needed
    ("7.13", POLICY, POLICY, FAIL, PAUSE),  # User account disabled
    ("7.14", POLICY, POLICY, FAIL, PAUSE),  # Trust relationship required
    ("7.15", POLICY, POLICY, FAIL, PAUSE),  # Priority level is too low
    ("7.16", POLICY, POLICY, FAIL, PAUSE),  # Message is too big for the specified priority
    ("7.17", HARD, SOFT, BOUNCE, PAUSE),  # Mailbox owner has changed
    ("7.18", HARD, SOFT, BOUNCE, PAUSE),  # Domain owner has changed
    ("7.19", POLICY, SOFT, FAIL, PAUSE),  # RRVS test cannot be completed
    ("7.20", POLICY, POLICY, FAIL, PAUSE),  # No passing DKIM signature found
    ("7.21", POLICY, POLICY, FAIL, PAUSE),  # No acceptable DKIM signature found
    ("7.22", POLICY, POLICY, FAIL, PAUSE),  # No valid author-matched DKIM signature found
    ("7.23", POLICY, POLICY, FAIL, PAUSE),  # SPF validation failed
    ("7.24", POLICY, POLICY, FAIL, PAUSE),  # SPF validation error
    ("7.25", POLICY, POLICY, FAIL, PAUSE),  # Reverse DNS validation failed
    ("7.26", POLICY, POLICY, FAIL, PAUSE),  # Multiple authentication checks failed
    ("7.27", POLICY, POLICY, FAIL, PAUSE),  # Sender address has null MX
    ("7.28", POLICY, POLICY, FAIL, PAUSE),  # Mail flood detected
    ("7.29", POLICY, POLICY, FAIL, PAUSE),  # ARC validation failure
    ("7.30", POLICY, POLICY, FAIL, PAUSE),  # REQUIRETLS support required
]


def test_the_table_lists_every_registered_code() -> None:
    assert [row[0] for row in TABLE] == list(CODES)


@pytest.mark.parametrize(("code", "later", "later_transient", "session", "at_mail"), TABLE)
def test_each_code_means_the_same_in_the_session_and_in_a_report(
    code: str, later: Verdict, later_transient: Verdict, session: Action, at_mail: Action
) -> None:
    name = CODES[code][0]
    assert classify_status(f"550 5.{code} {name}").verdict is later
    assert classify_status(f"smtp; 450 4.{code} {name}").verdict is later_transient
    assert classify_status("", enhanced=f"5.{code}").verdict is later  # a webhook's status field
    for phase in (Phase.RCPT, Phase.DATA):
        assert classify_reply(phase, 550, f"5.{code} {name}").action is session
    assert classify_reply(Phase.MAIL, 550, f"5.{code} {name}").action is at_mail
    # Transient replies in the session are retried, whatever they are about.
    assert classify_reply(Phase.RCPT, 450, f"4.{code} {name}").action is Action.RETRY


@pytest.mark.parametrize(
    ("code", "later", "session"),
    [
        ("5.1.99", HARD, BOUNCE),  # an unregistered detail: its subject's X.s.0 row decides
        ("5.2.99", HARD, BOUNCE),
        ("5.7.99", POLICY, FAIL),
        ("5.9.9", POLICY, FAIL),  # an unregistered subject: about nothing we know, never suppresses
    ],
)
def test_codes_the_registry_does_not_list_fall_back_to_their_subject(
    code: str, later: Verdict, session: Action
) -> None:
    assert classify_status(f"550 {code} x").verdict is later
    assert classify_reply(Phase.RCPT, 550, f"{code} x").action is session


def test_the_disputed_codes_agree_on_both_paths() -> None:
    # Mailbox full: counted as a soft bounce, never a suppression on its own.
    assert classify_status("552 5.2.2 mailbox full").verdict is SOFT
    assert classify_reply(Phase.DATA, 552, "5.2.2 mailbox full").action is SOFT_BOUNCE
    # Too large for the mailbox, a bad sender address: about us, never the recipient.
    for reply in ("552 5.2.3 message too large", "553 5.1.7 bad sender syntax", "553 5.1.8 sender domain unknown"):
        code, text = reply.split(" ", 1)
        assert classify_status(reply).verdict is POLICY
        assert classify_reply(Phase.RCPT, int(code), text).action is FAIL
