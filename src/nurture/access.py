"""Who may use nurture over HTTP: ingest API keys and dashboard users.

API keys are 32 random bytes, so their SHA-256 is enough at rest. Passwords are people's
and get a salted, memory-hard scrypt hash (standard library; parameters kept in the hash so
they can be raised later without invalidating old ones).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
from dataclasses import dataclass
from datetime import datetime
from functools import cache

from sqlalchemy import insert, select, update

from nurture.errors import NurtureError
from nurture.store.repo import Store
from nurture.store.tables import ApiKey, DashboardUser

AK = ApiKey.__table__  # type: ignore[attr-defined]
DU = DashboardUser.__table__  # type: ignore[attr-defined]

KEY_PREFIX = "nk_"
SCRYPT_N, SCRYPT_R, SCRYPT_P = 2**14, 8, 1


def _digest(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


@dataclass(frozen=True)
class KeyInfo:
    name: str
    prefix: str
    created_at: datetime
    revoked_at: datetime | None
    last_used_at: datetime | None


def create_api_key(store: Store, name: str) -> str:
    """A new key named `name`; the key itself is shown once and never stored."""
    name = name.strip()
    if not name:
        raise NurtureError("an API key needs a name, e.g. the system that will use it")
    key = KEY_PREFIX + secrets.token_urlsafe(32)
    with store.engine.begin() as conn:
        if conn.execute(select(AK.c.id).where(AK.c.name == name)).first() is not None:
            raise NurtureError(f"an API key named {name!r} exists; revoke it or choose another name")
        conn.execute(insert(AK).values(name=name, prefix=key[:10], key_hash=_digest(key), created_at=store.clock.now()))
    return key


def revoke_api_key(store: Store, name: str) -> None:
    with store.engine.begin() as conn:
        result = conn.execute(
            update(AK).where(AK.c.name == name, AK.c.revoked_at.is_(None)).values(revoked_at=store.clock.now())
        )
    if result.rowcount == 0:
        raise NurtureError(f"no active API key named {name!r}")


def list_api_keys(store: Store) -> list[KeyInfo]:
    with store.reading() as conn:
        rows = conn.execute(select(AK).order_by(AK.c.name)).all()
    return [KeyInfo(r.name, r.prefix, r.created_at, r.revoked_at, r.last_used_at) for r in rows]


def check_api_key(store: Store, key: str) -> str | None:
    """The name of the active key `key`, or None. Marks the key as used."""
    if not key.startswith(KEY_PREFIX):
        return None
    digest = _digest(key)
    with store.engine.begin() as conn:
        row = conn.execute(select(AK.c.id, AK.c.name, AK.c.key_hash, AK.c.revoked_at).where(AK.c.key_hash == digest))
        found = row.first()
        if found is None or found.revoked_at is not None or not hmac.compare_digest(found.key_hash, digest):
            return None
        conn.execute(update(AK).where(AK.c.id == found.id).values(last_used_at=store.clock.now()))
    return str(found.name)


def hash_password(password: str) -> str:
    salt = secrets.token_bytes(16)
    digest = hashlib.scrypt(password.encode(), salt=salt, n=SCRYPT_N, r=SCRYPT_R, p=SCRYPT_P, dklen=32)
    encode = base64.b64encode
    return f"scrypt${SCRYPT_N}${SCRYPT_R}${SCRYPT_P}${encode(salt).decode()}${encode(digest).decode()}"


def verify_password(password: str, stored: str) -> bool:
    try:
        scheme, n, r, p, salt, digest = stored.split("$")
        if scheme != "scrypt":
            return False
        expected = base64.b64decode(digest)
        actual = hashlib.scrypt(
            password.encode(), salt=base64.b64decode(salt), n=int(n), r=int(r), p=int(p), dklen=len(expected)
        )
    except ValueError:
        return False
    return hmac.compare_digest(actual, expected)


def set_user(store: Store, username: str, password: str, display_name: str = "") -> bool:
    """Create a dashboard user or change their password; True when created."""
    username = username.strip()
    if not username:
        raise NurtureError("a user needs a name")
    if len(password) < 8:
        raise NurtureError("a password needs at least 8 characters")
    hashed = hash_password(password)
    with store.engine.begin() as conn:
        existing = conn.execute(select(DU.c.id).where(DU.c.username == username)).first()
        if existing is None:
            conn.execute(
                insert(DU).values(
                    username=username,
                    password_hash=hashed,
                    display_name=display_name or username,
                    created_at=store.clock.now(),
                    disabled=False,
                )
            )
            return True
        values: dict[str, object] = {"password_hash": hashed, "disabled": False}
        if display_name:
            values["display_name"] = display_name
        conn.execute(update(DU).where(DU.c.id == existing.id).values(**values))
        return False


def authenticate(store: Store, username: str, password: str) -> str | None:
    """The user's display name when the password is right, else None (same cost either way)."""
    with store.reading() as conn:
        row = conn.execute(select(DU).where(DU.c.username == username.strip(), DU.c.disabled.is_(False))).first()
    if row is None:
        verify_password(password, _dummy_hash())
        return None
    return str(row.display_name or row.username) if verify_password(password, row.password_hash) else None


@cache
def _dummy_hash() -> str:
    return hash_password(secrets.token_hex(8))
