"""Who may use nurture over HTTP: ingest API keys and dashboard users (`store.access`).

API keys are 32 random bytes, so their SHA-256 is enough at rest. Passwords are people's
and get a salted, memory-hard scrypt hash (standard library; parameters kept in the hash so
they can be raised later without invalidating old ones).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import cache
from typing import Any

from sqlalchemy import delete, insert, select, update

from nurture.errors import NurtureError
from nurture.store.base import Connection, Part, insert_ignore
from nurture.store.queue import database_now
from nurture.store.tables import API_KEYS, DASHBOARD_USERS, LOGIN_FAILURES
from nurture.throttle import Failures, ThrottlePolicy

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


@cache
def _dummy_hash() -> str:
    return hash_password(secrets.token_hex(8))


class Access(Part):
    """API keys and dashboard users."""

    def create_key(self, name: str) -> str:
        """A new key named `name`; the key itself is shown once and never stored."""
        name = name.strip()
        if not name:
            raise NurtureError("an API key needs a name, e.g. the system that will use it")
        key = KEY_PREFIX + secrets.token_urlsafe(32)
        with self.store.transaction() as conn:
            if conn.execute(select(API_KEYS.c.id).where(API_KEYS.c.name == name)).first() is not None:
                raise NurtureError(f"an API key named {name!r} exists; revoke it or choose another name")
            conn.execute(
                insert(API_KEYS).values(name=name, prefix=key[:10], key_hash=_digest(key), created_at=self.clock.now())
            )
        return key

    def revoke_key(self, name: str) -> None:
        with self.store.transaction() as conn:
            result = conn.execute(
                update(API_KEYS)
                .where(API_KEYS.c.name == name, API_KEYS.c.revoked_at.is_(None))
                .values(revoked_at=self.clock.now())
            )
        if result.rowcount == 0:
            raise NurtureError(f"no active API key named {name!r}")

    def check_key(self, key: str) -> str | None:
        """The name of the active key `key`, or None. Marks the key as used."""
        if not key.startswith(KEY_PREFIX):
            return None
        digest = _digest(key)
        with self.store.transaction() as conn:
            row = conn.execute(
                select(API_KEYS.c.id, API_KEYS.c.name, API_KEYS.c.key_hash, API_KEYS.c.revoked_at).where(
                    API_KEYS.c.key_hash == digest
                )
            )
            found = row.first()
            if found is None or found.revoked_at is not None or not hmac.compare_digest(found.key_hash, digest):
                return None
            conn.execute(update(API_KEYS).where(API_KEYS.c.id == found.id).values(last_used_at=self.clock.now()))
        return str(found.name)

    def set_user(self, username: str, password: str, display_name: str = "", email: str = "") -> bool:
        """Create a dashboard user or change their password (and name, email); True when created."""
        username = username.strip()
        if not username:
            raise NurtureError("a user needs a name")
        if len(password) < 8:
            raise NurtureError("a password needs at least 8 characters")
        hashed = hash_password(password)
        with self.store.transaction() as conn:
            existing = conn.execute(select(DASHBOARD_USERS.c.id).where(DASHBOARD_USERS.c.username == username)).first()
            if existing is None:
                conn.execute(
                    insert(DASHBOARD_USERS).values(
                        username=username,
                        password_hash=hashed,
                        display_name=display_name or username,
                        email=email.strip() or None,
                        created_at=self.clock.now(),
                        disabled=False,
                    )
                )
                return True
            self.end_sessions(username, conn)  # a new password ends the sessions made with the old one
            values: dict[str, object] = {"password_hash": hashed, "disabled": False}
            if display_name:
                values["display_name"] = display_name
            if email.strip():
                values["email"] = email.strip()
            conn.execute(update(DASHBOARD_USERS).where(DASHBOARD_USERS.c.id == existing.id).values(**values))
            return False

    def session_epoch(self, username: str) -> int:
        """The number of the user's current sessions: a session made under another number has
        ended (the user logged out, or their password changed)."""
        with self.store.reading() as conn:
            value = self.store.settings.get(conn, f"session-epoch:{username.strip()}")
        return int(value) if value and value.isdigit() else 0

    def end_sessions(self, username: str, conn: Connection | None = None) -> None:
        """End every session of `username` (log out everywhere)."""
        key = f"session-epoch:{username.strip()}"
        if conn is None:
            with self.store.transaction() as own:
                self.end_sessions(username, own)
            return
        value = self.store.settings.get(conn, key)
        self.store.settings.put(conn, key, str((int(value) if value and value.isdigit() else 0) + 1))

    def email_of(self, username: str) -> str | None:
        """Where a dashboard user's own emails go: their address, or their name when it is one."""
        with self.store.reading() as conn:
            row = conn.execute(
                select(DASHBOARD_USERS.c.email, DASHBOARD_USERS.c.username).where(
                    DASHBOARD_USERS.c.username == username.strip()
                )
            ).first()
        if row is None:
            return None
        return str(row.email) if row.email else (str(row.username) if "@" in row.username else None)

    def authenticate(self, username: str, password: str) -> str | None:
        """The user's display name when the password is right, else None (same cost either way)."""
        with self.store.reading() as conn:
            row = conn.execute(
                select(DASHBOARD_USERS).where(
                    DASHBOARD_USERS.c.username == username.strip(), DASHBOARD_USERS.c.disabled.is_(False)
                )
            ).first()
        if row is None:
            verify_password(password, _dummy_hash())
            return None
        return str(row.display_name or row.username) if verify_password(password, row.password_hash) else None

    def api_keys(self) -> list[KeyInfo]:
        with self.store.reading() as conn:
            rows = conn.execute(select(API_KEYS).order_by(API_KEYS.c.name)).all()
        return [KeyInfo(r.name, r.prefix, r.created_at, r.revoked_at, r.last_used_at) for r in rows]

    # -- the login throttle: counts shared by every process on the database ---------------------

    def login_wait(self, keys: Sequence[str], policy: ThrottlePolicy) -> float:
        """Seconds until a login counted against `keys` may be tried (0: now)."""
        with self.store.reading() as conn:
            now = self._database_now(conn)
            rows = conn.execute(select(LOGIN_FAILURES).where(LOGIN_FAILURES.c.key.in_(keys))).all()
        return policy.wait([_failures(row) for row in rows], now)

    def login_failed(self, keys: Sequence[str], policy: ThrottlePolicy) -> None:
        """Count a wrong password against each of `keys` (a user name, a client address), in
        one transaction; each key's row is locked while it is counted, so failures made at
        once in several processes all count. Records idle past any block are dropped."""
        with self.store.transaction() as conn:
            now = self._database_now(conn)
            idle = now - max(policy.forget_after, policy.ceiling)
            conn.execute(delete(LOGIN_FAILURES).where(LOGIN_FAILURES.c.last_failed_at < idle))
            for key in sorted(keys):  # one order everywhere: no deadlock between two logins
                conn.execute(
                    insert_ignore(self.postgres, LOGIN_FAILURES).values(key=key, failures=0, last_failed_at=now)
                )
                row = conn.execute(select(LOGIN_FAILURES).where(LOGIN_FAILURES.c.key == key).with_for_update()).one()
                after = policy.after_failure(_failures(row) if row.failures else None, now)
                conn.execute(
                    update(LOGIN_FAILURES)
                    .where(LOGIN_FAILURES.c.key == key)
                    .values(failures=after.count, blocked_until=after.blocked_until, last_failed_at=after.last)
                )

    def login_succeeded(self, key: str) -> None:
        """Clear the count of `key` (the user's, after a right password)."""
        with self.store.transaction() as conn:
            conn.execute(delete(LOGIN_FAILURES).where(LOGIN_FAILURES.c.key == key))

    def _database_now(self, conn: Connection) -> datetime:
        value: datetime | str = conn.execute(select(database_now(self.postgres))).scalar_one()
        moment = datetime.fromisoformat(value) if isinstance(value, str) else value  # SQLite: the text form
        return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _failures(row: Any) -> Failures:
    return Failures(int(row.failures), row.blocked_until, row.last_failed_at)
