"""Signed links of the consent flows: double opt-in confirmation and the preference centre.

They use the same HMAC signing as the tracking links (`mail.tracking`), with a kind so that
one link cannot be used as another, and, for confirmations, an expiry: a confirmation link
found in an old mailbox months later must not turn into consent.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from nurture.mail.tracking import sign, verify

CONFIRM_KIND = "confirm"
PREFERENCES_KIND = "prefs"


@dataclass(frozen=True, slots=True)
class Confirmation:
    """What a valid confirmation link asks to confirm."""

    lead_id: int
    topic: str
    expires_at: datetime


class TokenProblem(Exception):
    """Why a link was refused: `forged` (altered, malformed, another kind) or `expired`."""

    def __init__(self, reason: str) -> None:
        self.reason = reason
        super().__init__(reason)


def confirmation_token(secret: str, lead_id: int, topic: str, now: datetime, valid_for: timedelta) -> str:
    expires = int((now + valid_for).timestamp())
    return sign(secret, {"k": CONFIRM_KIND, "l": lead_id, "t": topic, "e": expires})


def read_confirmation(secret: str, token: str, now: datetime) -> Confirmation:
    """The confirmation a token asks for; raises TokenProblem when it is forged or expired."""
    payload = verify(secret, token)
    if payload is None or payload.get("k") != CONFIRM_KIND:
        raise TokenProblem("forged")
    lead_id, topic, expires = payload.get("l"), payload.get("t"), payload.get("e")
    if not isinstance(lead_id, int) or not isinstance(topic, str) or not isinstance(expires, int):
        raise TokenProblem("forged")
    expires_at = datetime.fromtimestamp(expires, UTC)
    if now >= expires_at:
        raise TokenProblem("expired")
    return Confirmation(lead_id, topic, expires_at)


def preferences_token(secret: str, lead_id: int) -> str:
    """A link to a person's preference centre (without a send: e.g. in a confirmation email)."""
    return sign(secret, {"k": PREFERENCES_KIND, "l": lead_id})


def read_preferences(secret: str, token: str) -> int | None:
    payload = verify(secret, token)
    if payload is None or payload.get("k") != PREFERENCES_KIND or not isinstance(payload.get("l"), int):
        return None
    lead_id: int = payload["l"]
    return lead_id
