"""Signed tokens for unsubscribe, open and click links.

A token is `base64url(payload).base64url(hmac-sha256(secret, payload))[:22]`; anything
tampered with fails verification, so links cannot be forged or turned into open redirects.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from functools import lru_cache
from typing import Any
from urllib.parse import quote

import orjson


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


@lru_cache(maxsize=8)
def _keyed(secret: str) -> hmac.HMAC:
    """An HMAC already keyed with `secret`; copying it skips the key set-up on every link."""
    return hmac.new(secret.encode(), digestmod=hashlib.sha256)


def _mac(secret: str, body: bytes) -> bytes:
    mac = _keyed(secret).copy()
    mac.update(body)
    return mac.digest()[:16]


def sign(secret: str, payload: dict[str, Any]) -> str:
    body = orjson.dumps(payload, option=orjson.OPT_SORT_KEYS)  # compact JSON, as UTF-8
    return f"{_b64(body)}.{_b64(_mac(secret, body))}"


def verify(secret: str, token: str) -> dict[str, Any] | None:
    """The payload of a valid token, or None for anything forged, altered or malformed."""
    try:
        body_text, mac_text = token.split(".", 1)
        body = _unb64(body_text)
        expected = _mac(secret, body)
        if not hmac.compare_digest(expected, _unb64(mac_text)):
            return None
        payload = orjson.loads(body)
    except ValueError:  # bad base64, or not JSON (orjson.JSONDecodeError is a ValueError)
        return None
    return payload if isinstance(payload, dict) else None


class Links:
    """Builds the tracked URLs that go into one email (each distinct link is signed once,
    though the HTML and text parts both ask for it)."""

    def __init__(self, base_url: str, secret: str, send_id: int, lead_id: int) -> None:
        self.base = base_url.rstrip("/")
        self.secret = secret
        self.send_id = send_id
        self.lead_id = lead_id
        self._recipient = sign(secret, {"l": lead_id, "s": send_id})
        self._clicks: dict[tuple[str, str], str] = {}

    def unsubscribe(self) -> str:
        return f"{self.base}/u/{self._recipient}"

    def open_pixel(self) -> str:
        return f"{self.base}/o/{self._recipient}.gif"

    def honeypot(self) -> str:
        """The hidden link of this email: no person sees it, so a request for it is a scanner."""
        return f"{self.base}/h/{self._recipient}"

    def click(self, name: str, url: str) -> str:
        found = self._clicks.get((name, url))
        if found is None:
            token = sign(self.secret, {"l": self.lead_id, "s": self.send_id, "n": name, "u": url})
            found = self._clicks[(name, url)] = f"{self.base}/c/{quote(token)}"
        return found
