"""What an erasure removes, defined once as data, and the pure helpers that apply it.

Every column of every table is classified here, so the store can erase a person without
knowing the schema by heart and a test can fail the day a table or column appears that
nobody classified:

- the rows that belong to a person (`belongs_by`: the column naming the person's lead id,
  or the address) are deleted whole, with everything in them;
- `MENTIONS` columns are free text or JSON that may name anybody (a colleague's note "met
  jane@example.com at the fair", an event property, a webhook payload): in rows that are
  not the person's, the person's address and full name are replaced by `REDACTED`;
- the suppression list keeps, instead of the address, a keyed hash of it, so the address
  is never mailed again and cannot be read back from the database;
- the erasure itself is recorded without personal data (time, who, rows per table).
"""

from __future__ import annotations

import hashlib
import hmac
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

REDACTED = "[erased]"
HASH_PREFIX = "erased:"


class Column(StrEnum):
    KEY = "key"  # identifiers, foreign keys, times, counters, statuses, codes: no personal data
    PERSONAL = "personal"  # the person's own data, in rows that belong to the person
    MENTIONS = "mentions"  # free text or JSON that may name anybody: redacted in other rows
    CONTENT = "content"  # the team's own configuration and content (scenarios, templates, settings)
    STAFF = "staff"  # about the team's users and keys, not about leads


@dataclass(frozen=True)
class TablePlan:
    table: str
    columns: Mapping[str, Column]
    belongs_by: str | None = None  # column that names the person: a lead id, or the address
    by_address: bool = False  # `belongs_by` holds an email address rather than a lead id
    hash_address: bool = False  # keep the row with the address replaced by its keyed hash
    note: str = ""

    def of(self, kind: Column) -> tuple[str, ...]:
        return tuple(name for name, value in self.columns.items() if value is kind)


K, P, M, C, S = Column.KEY, Column.PERSONAL, Column.MENTIONS, Column.CONTENT, Column.STAFF


def _plan(table: str, belongs_by: str | None = None, note: str = "", /, **columns: Column) -> TablePlan:
    return TablePlan(table, dict(columns), belongs_by, note=note)


PLAN: tuple[TablePlan, ...] = (
    _plan(
        "lead",
        "id",
        "the person: deleted",
        id=K, email=P, first_name=P, last_name=P, company=P, company_size=P, industry=P, job_title=P,
        country=P, timezone=P, source=P, lifecycle_stage=P, owner=S, tags=P, custom=M, unsubscribed=P,
        bounced=P, score_fit=P, score_engagement=P, grade=P, engagement_since=P, scored_at=P,
        score_adjustment=P, created_at=K, updated_at=K,
    ),
    _plan(
        "consent_record",
        "lead_id",
        "the person's statements: deleted with the person (the erasure log says an erasure happened)",
        id=K, lead_id=K, topic=K, status=K, source=K, at=K, wording=P, ip=P, user_agent=P, detail=M,
    ),
    _plan(
        "enrollment",
        "lead_id",
        id=K, lead_id=K, scenario_id=K, scenario_version=K, state=K, status=K, seq=K, entered_at=K, due_at=K,
        lease_owner=K, lease_until=K, enrolled_at=K, finished_at=K, exit_reason=M,
    ),
    _plan(
        "event",
        "lead_id",
        id=K, lead_id=K, type=K, at=K, props=M, external_id=M, received_at=K,
    ),
    _plan(
        "event_daily",
        "lead_id",
        "daily counts of the person's pruned events: deleted with the person",
        lead_id=K, day=K, type=K, send_id=K, verdict=K, n=K,
    ),
    _plan(
        "send",
        "lead_id",
        id=K, idempotency_key=K, kind=K, lead_id=K, enrollment_id=K, scenario_id=K, scenario_version=K, step=K,
        template=K, subject=M, sender=C, reply_to=C, status=K, attempts=K, created_at=K, next_attempt_at=K,
        lease_owner=K, lease_until=K, sent_at=K, message_id=K, last_error=M, timing=K,
    ),
    _plan(
        "experiment_assignment",
        "lead_id",
        "the person's arm in an experiment and whether they reached its goal: deleted (the experiment "
        "counts one lead fewer from then on; a decision already made keeps its recorded figures)",
        id=K, experiment_key=K, lead_id=K, enrollment_id=K, arm=K, randomised=K, assigned_at=K, reached_at=K,
        settled=K,
    ),
    _plan(
        "experiment",
        None,
        "an experiment as a whole: counts and statistics, no personal data",
        key=K, scenario_id=K, step=K, status=K, started_at=K, checked_at=K, decided_at=K, winner=K, route_to=K,
        effect=K, interval_low=K, interval_high=K, p_value=K, statistic=K, reason=K,
    ),
    _plan(
        "feedback",
        "lead_id",
        "bounces and complaints about the person's emails; a report about no known lead is redacted",
        id=K, received_at=K, occurred_at=K, source=K, kind=K, email=M, lead_id=K, send_id=K, scenario_id=K,
        status=K, code=K, diagnostic=M, event_id=K, authenticated=K, decision=K,
    ),
    TablePlan(
        "suppression",
        {"email": P, "reason": K, "detail": M, "created_at": K},
        belongs_by="email",
        by_address=True,
        hash_address=True,
        note="the address becomes its keyed hash, so it is never mailed again",
    ),
    TablePlan(
        "list_member",
        {"list_name": K, "email": P, "added_at": K},
        belongs_by="email",
        by_address=True,
        note="the person's memberships of static and suppression lists: deleted",
    ),
    _plan(
        "audit_log",
        "lead_id",
        id=K, at=K, lead_id=K, enrollment_id=K, kind=K, detail=M,
    ),
    _plan(
        "lifecycle_change",
        "lead_id",
        id=K, lead_id=K, at=K, from_stage=K, to_stage=K, reason=M, actor=S,
    ),
    _plan(
        "score_history",
        "lead_id",
        id=K, lead_id=K, at=K, fit=P, engagement=P, grade=P,
    ),
    _plan(
        "activity",
        "lead_id",
        id=K, lead_id=K, at=K, kind=K, note=M, actor=S,
    ),
    _plan(
        "notification",
        "lead_id",
        "messages to sales about the person; a digest about many leads is redacted instead",
        id=K, key=K, kind=K, lead_id=K, target=S, subject=M, payload=M, status=K, attempts=K, created_at=K,
        next_attempt_at=K, lease_owner=K, lease_until=K, sent_at=K, last_error=M,
    ),
    _plan(
        "outcome",
        "lead_id",
        "what became of the person's emails and enrolments (the report's counters subtract them)",
        id=K, lead_id=K, send_id=K, enrollment_id=K, scenario_id=K, step=K, metric=K, detail=K, day=K, n=K,
    ),
    _plan("outcome_pending", "lead_id", "the person named for a recount of outcomes", id=K, lead_id=K),
    _plan(
        "promotion",
        "lead_id",
        "a hand-off the scores asked for (released or held for review): deleted with the person",
        id=K, key=K, kind=K, lead_id=K, account=K, owner=S, strength=K, status=K, reason=M, detail=M,
        created_at=K, released_at=K, released_by=S,
    ),
    _plan(
        "account",
        None,
        "an account (a company or domain) as a whole; its list of engaged people is redacted",
        key=K, stage=K, engagement=K, people=M, owner=S, changed_at=K,
    ),
    _plan(
        "erasure_log",
        None,
        "records that an erasure happened, without personal data",
        id=K, at=K, actor=S, rows=K,
    ),
    _plan("scenario_version", None, scenario_id=K, version=K, path=C, source=C, loaded_at=K, is_current=K),
    _plan("kv", None, key=K, value=C),
    _plan("step_visit", None, scenario_id=K, scenario_version=K, step=K, entered=K),
    _plan(
        "tally",
        None,
        "counts by scenario, step, status, type, stage, grade and day; an erasure's deletes subtract",
        id=K,
        kind=K,
        a=K,
        b=K,
        c=K,
        d=K,
        day=K,
        part=K,
        n=K,
    ),
    _plan("scenario_pause", None, scenario_id=K, paused_at=K, reason=K, resumed_at=K, resumed_by=S),
    _plan(
        "api_key", None, id=K, name=S, prefix=S, key_hash=S, created_at=K, revoked_at=K, last_used_at=K
    ),
    _plan(
        "dashboard_user",
        None,
        id=K, username=S, password_hash=S, display_name=S, email=S, created_at=K, disabled=K,
    ),
    _plan(
        "login_failure",
        None,
        "wrong dashboard passwords by user name or client address (the throttle); forgotten an hour after the last",
        key=S, failures=K, blocked_until=K, last_failed_at=K,
    ),
    _plan("alembic_version", None, version_num=K),
)  # fmt: skip

PLAN_BY_TABLE: dict[str, TablePlan] = {plan.table: plan for plan in PLAN}


def unclassified(tables: Mapping[str, Iterable[str]]) -> list[str]:
    """`table.column` for every column of `tables` the plan does not classify, and every
    classified column that no longer exists: both mean an erasure could miss something."""
    problems: list[str] = []
    for table, columns in sorted(tables.items()):
        plan = PLAN_BY_TABLE.get(table)
        names = set(columns)
        if plan is None:
            problems += [f"{table}.{name}" for name in sorted(names)] or [table]
            continue
        problems += [f"{table}.{name}" for name in sorted(names - set(plan.columns))]
        problems += [f"{table}.{name} (classified, but no such column)" for name in sorted(set(plan.columns) - names)]
    return problems


def keyed_hash(key: str, email: str) -> str:
    """The suppression entry of an erased address: an HMAC-SHA256 keyed with a secret, so
    the same address always gives the same entry, and the entry reveals nothing without
    the key (a plain hash of an address is reversed by hashing candidate addresses)."""
    digest = hmac.new(key.encode(), email.strip().lower().encode(), hashlib.sha256).hexdigest()
    return HASH_PREFIX + digest


@dataclass(frozen=True)
class Identity:
    """What identifies the person in text written about them: their address and full name
    (in both orders, for Japanese names written family name first)."""

    email: str
    first_name: str | None = None
    last_name: str | None = None
    extra: tuple[str, ...] = field(default_factory=tuple)

    def needles(self) -> list[str]:
        found = [self.email]
        if self.first_name and self.last_name:
            for a, b in ((self.first_name, self.last_name), (self.last_name, self.first_name)):
                found += [f"{a} {b}", f"{a}{b}", f"{a}\u3000{b}"]
        found += [e for e in self.extra if e]
        # Longest first, so a name inside an address is not replaced before the address.
        return sorted({n for n in found if len(n.strip()) >= 2}, key=len, reverse=True)


def _pattern(identity: Identity) -> re.Pattern[str]:
    return re.compile("|".join(re.escape(n) for n in identity.needles()), re.IGNORECASE)


def redact(value: Any, identity: Identity) -> Any:
    """`value` (text, or JSON made of dicts, lists and scalars) with every mention of the
    person replaced by `REDACTED`, keys of objects too. An object nested inside a JSON value
    that names the person (an entry about them in a digest to sales) is about them: all its
    text is replaced. Other values are returned as they are."""
    return _redact(value, _pattern(identity), nested=False)


def _redact(value: Any, pattern: re.Pattern[str], nested: bool) -> Any:
    if isinstance(value, str):
        return pattern.sub(REDACTED, value)
    if isinstance(value, dict):
        cleaned = {_redact(k, pattern, True): _redact(v, pattern, True) for k, v in value.items()}
        if nested and cleaned != value:
            return {k: _blank(v) for k, v in cleaned.items()}
        return cleaned
    if isinstance(value, list | tuple):
        return [_redact(v, pattern, True) for v in value]
    return value


def _blank(value: Any) -> Any:
    if isinstance(value, str):
        return REDACTED
    if isinstance(value, dict):
        return {k: _blank(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_blank(v) for v in value]
    return value


def mentions(value: Any, identity: Identity) -> bool:
    """Whether `value` names the person anywhere."""
    return bool(redact(value, identity) != value)
