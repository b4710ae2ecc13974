"""Per-send return paths (VERP): `bounces+<send id>-<mac>@<bounce domain>`.

A bounce is addressed to the return path of the message it reports, so the send, and
through it the lead, is known from the envelope alone even when the report's body is
mangled. The MAC (HMAC-SHA256 of the send id, first 12 hex digits, lower case because
some servers change the case of local parts) makes the address verifiable: a forged
bounce naming someone else's send is ignored.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from dataclasses import dataclass

from nurture.config import Settings
from nurture.errors import NurtureError

_LOCAL = re.compile(r"^[A-Za-z0-9._-]+$")
_DOMAIN = re.compile(r"^[A-Za-z0-9](?:[A-Za-z0-9.-]*[A-Za-z0-9])?$")


@dataclass(frozen=True)
class ReturnPath:
    """Builds and checks the return paths of one bounce domain."""

    domain: str
    secret: str
    local: str = "bounces"

    def __post_init__(self) -> None:
        if not _LOCAL.match(self.local) or "+" in self.local:
            raise NurtureError(f"bounce address local part {self.local!r} must be letters, digits, '.', '_' or '-'")
        if not _DOMAIN.match(self.domain):
            raise NurtureError(f"bounce domain {self.domain!r} is not a domain name")

    def _mac(self, send_id: int) -> str:
        digest = hmac.new(self.secret.encode(), f"verp:{send_id}".encode(), hashlib.sha256).hexdigest()
        return digest[:12]

    def address(self, send_id: int) -> str:
        return f"{self.local}+{send_id}-{self._mac(send_id)}@{self.domain}"

    def send_id(self, address: str) -> int | None:
        """The send a return path belongs to, or None when it is not one of ours or its
        MAC does not match (a forgery, or an address altered on the way)."""
        address = address.strip().strip("<>")
        local, _, domain = address.rpartition("@")
        if domain.lower() != self.domain.lower():
            return None
        prefix, plus, tag = local.partition("+")
        if not plus or prefix.lower() != self.local.lower():
            return None
        number, dash, mac = tag.partition("-")
        if not dash or not number.isdigit() or len(number) > 18:
            return None
        send_id = int(number)
        # A MAC is hex: anything else (a damaged report may hold any byte) is not ours.
        return send_id if mac.isascii() and hmac.compare_digest(mac.lower(), self._mac(send_id)) else None


def return_path_from_settings(settings: Settings) -> ReturnPath | None:
    """Per-send return paths when a bounce domain is set; their MACs use the secret key."""
    if not settings.bounce_domain:
        return None
    return ReturnPath(settings.bounce_domain, settings.secret_key, settings.bounce_local)
