"""One table of enhanced status codes (RFC 3463 and the IANA registry "SMTP Enhanced Status
Codes"): what each `subject.detail` is about, and so what it means for the recipient.

Both readers of replies use it: `replies` (the server's answer during the SMTP session,
judged by phase first) and `status` (a delivery status notification, a complaint report's
status, an ESP webhook's code). So a code means the same wherever it arrives.

- RECIPIENT: the recipient's address or mailbox does not exist, is disabled or has a new
  owner. Permanent (class 5): a hard bounce that suppresses the address. Transient
  (class 4): counted as a soft bounce.
- MAILBOX: a passing state of the recipient's mailbox or domain (mailbox full, a list that
  cannot be expanded, a domain that cannot be routed to now). Counted as a soft bounce in
  either class; several within a period suppress (RFC 3463 calls X.2.2 a persistent
  transient failure, whatever the class).
- SENDER: our sender address, authentication, reputation or the receiver's policy. Never
  suppresses the recipient: the same mail would be refused for anyone.
- MESSAGE: this message's size, format or content. Never suppresses the recipient.
- SYSTEM: the receiving system, the network or the protocol. Never suppresses on a
  permanent reply; a transient one is counted as a soft bounce, as any delay is.

Codes the registry does not list fall back to their subject's row (`X.<subject>.0`).
Pure data and one function: no I/O.
"""

from __future__ import annotations

from enum import StrEnum


class About(StrEnum):
    RECIPIENT = "recipient"
    MAILBOX = "mailbox"
    SENDER = "sender"
    MESSAGE = "message"
    SYSTEM = "system"


R, M, S, C, Y = About.RECIPIENT, About.MAILBOX, About.SENDER, About.MESSAGE, About.SYSTEM

# subject.detail -> (the registry's name, what it is about)
CODES: dict[str, tuple[str, About]] = {
    "0.0": ("Other undefined status", Y),
    # X.1: addressing
    "1.0": ("Other address status", R),
    "1.1": ("Bad destination mailbox address", R),
    "1.2": ("Bad destination system address", R),
    "1.3": ("Bad destination mailbox address syntax", R),
    "1.4": ("Destination mailbox address ambiguous", R),
    "1.5": ("Destination address valid", Y),
    "1.6": ("Destination mailbox has moved, no forwarding address", R),
    "1.7": ("Bad sender's mailbox address syntax", S),
    "1.8": ("Bad sender's system address", S),
    "1.9": ("Message relayed to non-compliant mailer", Y),
    "1.10": ("Recipient address has null MX", R),
    # X.2: the recipient's mailbox
    "2.0": ("Other or undefined mailbox status", R),
    "2.1": ("Mailbox disabled, not accepting messages", R),
    "2.2": ("Mailbox full", M),
    "2.3": ("Message length exceeds administrative limit", C),
    "2.4": ("Mailing list expansion problem", M),
    # X.3: the receiving mail system
    "3.0": ("Other or undefined mail system status", Y),
    "3.1": ("Mail system full", Y),
    "3.2": ("System not accepting network messages", Y),
    "3.3": ("System not capable of selected features", C),
    "3.4": ("Message too big for system", C),
    "3.5": ("System incorrectly configured", Y),
    "3.6": ("Requested priority was changed", Y),
    # X.4: network and routing
    "4.0": ("Other or undefined network or routing status", Y),
    "4.1": ("No answer from host", Y),
    "4.2": ("Bad connection", Y),
    "4.3": ("Directory server failure", Y),
    "4.4": ("Unable to route", M),
    "4.5": ("Mail system congestion", Y),
    "4.6": ("Routing loop detected", Y),
    "4.7": ("Delivery time expired", Y),
    # X.5: the mail delivery protocol
    "5.0": ("Other or undefined protocol status", Y),
    "5.1": ("Invalid command", Y),
    "5.2": ("Syntax error", Y),
    "5.3": ("Too many recipients", Y),
    "5.4": ("Invalid command arguments", Y),
    "5.5": ("Wrong protocol version", Y),
    "5.6": ("Authentication exchange line is too long", S),
    # X.6: message content or media
    "6.0": ("Other or undefined media error", C),
    "6.1": ("Media not supported", C),
    "6.2": ("Conversion required and prohibited", C),
    "6.3": ("Conversion required but not supported", C),
    "6.4": ("Conversion with loss performed", C),
    "6.5": ("Conversion failed", C),
    "6.6": ("Message content not available", C),
    "6.7": ("Non-ASCII addresses not permitted for that sender/recipient", C),
    "6.8": ("UTF-8 string reply is required, but not permitted by the SMTP client", C),
    "6.9": ("UTF-8 header message cannot be transferred to one or more recipients", C),
    # X.7: security or policy
    "7.0": ("Other or undefined security status", S),
    "7.1": ("Delivery not authorized, message refused", S),
    "7.2": ("Mailing list expansion prohibited", S),
    "7.3": ("Security conversion required but not possible", S),
    "7.4": ("Security features not supported", S),
    "7.5": ("Cryptographic failure", S),
    "7.6": ("Cryptographic algorithm not supported", S),
    "7.7": ("Message integrity failure", S),
    "7.8": ("Authentication credentials invalid", S),
    "7.9": ("Authentication mechanism is too weak", S),
    "7.10": ("Encryption needed", S),
    "7.11": ("Encryption required for requested authentication mechanism", S),
    "7.12": ("A password transition is needed", S),
    "7.13": ("User account disabled", S),  # the account we submit with, not the recipient
    "7.14": ("Trust relationship required", S),
    "7.15": ("Priority level is too low", S),
    "7.16": ("Message is too big for the specified priority", C),
    "7.17": ("Mailbox owner has changed", R),
    "7.18": ("Domain owner has changed", R),
    "7.19": ("RRVS test cannot be completed", Y),
    "7.20": ("No passing DKIM signature found", S),
    "7.21": ("No acceptable DKIM signature found", S),
    "7.22": ("No valid author-matched DKIM signature found", S),
    "7.23": ("SPF validation failed", S),
    "7.24": ("SPF validation error", S),
    "7.25": ("Reverse DNS validation failed", S),
    "7.26": ("Multiple authentication checks failed", S),
    "7.27": ("Sender address has null MX", S),
    "7.28": ("Mail flood detected", S),
    "7.29": ("ARC validation failure", S),
    "7.30": ("REQUIRETLS support required", S),
}


def about(status: str) -> About:
    """What the enhanced status code `status` ("5.2.2") is about."""
    _, subject, detail = status.split(".")
    subject, detail = str(int(subject)), str(int(detail))
    found = CODES.get(f"{subject}.{detail}") or CODES.get(f"{subject}.0")
    return found[1] if found else About.SYSTEM


def name(status: str) -> str | None:
    """The registry's name of `status`'s subject and detail, when it lists them."""
    _, subject, detail = status.split(".")
    found = CODES.get(f"{int(subject)}.{int(detail)}")
    return found[0] if found else None
