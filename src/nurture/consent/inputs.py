"""Consent as it arrives: in the API (`consent` of a lead) and in import files (columns).

Import columns (all optional; a row without `consent` states nothing):

| column | meaning |
|---|---|
| `consent` | `granted`, `withdrawn` or `pending` (also `yes`/`no`, `true`/`false`, `1`/`0`) |
| `consent_topic` | the topic, or several separated by `;` (default `marketing`; `all` for every topic) |
| `consent_at` | when it was given (ISO 8601; a date alone means midnight UTC); default: the import's time |
| `consent_source` | `import` (default), `form`, `api`, `double_opt_in` (confirmed in another tool) |
| `consent_wording` | the text the person agreed to, or its version |
| `consent_ip`, `consent_user_agent` | where it came through the web |
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Mapping
from datetime import UTC, datetime

from pydantic import BaseModel, ConfigDict, Field, field_validator

from nurture.consent.model import (
    ALL_TOPICS,
    DEFAULT_TOPIC,
    ConsentRecord,
    ConsentSource,
    ConsentStatus,
    is_topic,
)

CSV_COLUMNS = (
    "consent",
    "consent_topic",
    "consent_at",
    "consent_source",
    "consent_wording",
    "consent_ip",
    "consent_user_agent",
)
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")
_YES = {"granted": ConsentStatus.GRANTED, "yes": ConsentStatus.GRANTED, "true": ConsentStatus.GRANTED,
        "1": ConsentStatus.GRANTED, "y": ConsentStatus.GRANTED, "opt-in": ConsentStatus.GRANTED,
        "withdrawn": ConsentStatus.WITHDRAWN, "no": ConsentStatus.WITHDRAWN, "false": ConsentStatus.WITHDRAWN,
        "0": ConsentStatus.WITHDRAWN, "n": ConsentStatus.WITHDRAWN, "opt-out": ConsentStatus.WITHDRAWN,
        "pending": ConsentStatus.PENDING}  # fmt: skip
INPUT_SOURCES = (ConsentSource.IMPORT, ConsentSource.FORM, ConsentSource.API, ConsentSource.DOUBLE_OPT_IN)


class ConsentProblem(ValueError):
    """A consent value that cannot be used; says which field and why."""

    def __init__(self, field: str, message: str) -> None:
        self.field = field
        super().__init__(f"{field}: {message}")


def check_topic(value: str) -> str:
    value = value.strip()
    if value != ALL_TOPICS and not is_topic(value):
        raise ValueError(f"unknown topic form {value!r}: lower-case letters, digits, '-' and '_' (or 'all')")
    return value


def check_ip(value: str | None) -> str | None:
    if value is None or not value.strip():
        return None
    try:
        return str(ipaddress.ip_address(value.strip()))
    except ValueError:
        raise ValueError(f"not an IP address: {value!r}") from None


class ConsentIn(BaseModel):
    """One consent statement sent to the API. A `pending` statement (a form sign-up that
    needs double opt-in) makes nurture send the confirmation email."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    topic: str = Field(default=DEFAULT_TOPIC, description="The topic, or 'all'")
    status: ConsentStatus = ConsentStatus.GRANTED
    source: ConsentSource = Field(default=ConsentSource.API, description="api, form, import or double_opt_in")
    at: datetime | None = Field(default=None, description="When it was given; default: when it arrives")
    wording: str | None = Field(default=None, max_length=2000, description="The text agreed to, or its version")
    ip: str | None = Field(default=None, max_length=64)
    user_agent: str | None = Field(default=None, max_length=500)

    _topic = field_validator("topic")(classmethod(lambda cls, v: check_topic(v)))
    _ip = field_validator("ip")(classmethod(lambda cls, v: check_ip(v)))

    @field_validator("source")
    @classmethod
    def _source(cls, value: ConsentSource) -> ConsentSource:
        if value not in INPUT_SOURCES:
            raise ValueError(f"source must be one of {', '.join(s.value for s in INPUT_SOURCES)}")
        return value

    @field_validator("at")
    @classmethod
    def _aware(cls, value: datetime | None) -> datetime | None:
        if value is not None and value.tzinfo is None:
            raise ValueError("give the time with its offset, e.g. 2026-03-02T09:00:00+09:00")
        return value.astimezone(UTC) if value is not None else None

    @field_validator("wording", "user_agent")
    @classmethod
    def _text(cls, value: str | None) -> str | None:
        if value is not None and _CONTROL.search(value):
            raise ValueError("must not contain control characters")
        return value or None

    def record(self, now: datetime) -> ConsentRecord:
        return ConsentRecord(
            self.topic, self.status, self.source, self.at or now, self.wording, self.ip, self.user_agent
        )


def _parse_time(value: str) -> datetime:
    try:
        parsed = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
    except ValueError:
        raise ValueError(f"not a date or time: {value!r} (use ISO 8601, e.g. 2026-03-02T09:00:00+09:00)") from None
    if parsed.tzinfo is None:
        if "T" in value or ":" in value:
            raise ValueError(f"give the time with its offset: {value!r}")
        parsed = parsed.replace(tzinfo=UTC)
    return parsed.astimezone(UTC)


def records_from_row(row: Mapping[str, str | None], now: datetime) -> list[ConsentRecord]:
    """The consent statements of one import row (none when it has no `consent` value);
    raises ConsentProblem naming the column."""
    raw = (row.get("consent") or "").strip()
    extra = [c for c in CSV_COLUMNS[1:] if (row.get(c) or "").strip()]
    if not raw:
        if extra:
            raise ConsentProblem(extra[0], "a consent detail without a 'consent' value (granted, withdrawn, pending)")
        return []
    status = _YES.get(raw.lower())
    if status is None:
        raise ConsentProblem("consent", f"{raw!r} is not granted, withdrawn or pending")
    try:
        topics = [check_topic(t) for t in (row.get("consent_topic") or DEFAULT_TOPIC).split(";") if t.strip()]
    except ValueError as exc:
        raise ConsentProblem("consent_topic", str(exc)) from None
    at_text = (row.get("consent_at") or "").strip()
    try:
        at = _parse_time(at_text) if at_text else now
    except ValueError as exc:
        raise ConsentProblem("consent_at", str(exc)) from None
    if at > now:
        raise ConsentProblem("consent_at", f"{at_text!r} is in the future")
    source_text = (row.get("consent_source") or ConsentSource.IMPORT.value).strip().lower()
    try:
        source = ConsentSource(source_text)
    except ValueError:
        source = None
    if source not in INPUT_SOURCES:
        raise ConsentProblem(
            "consent_source", f"{source_text!r}: use one of {', '.join(s.value for s in INPUT_SOURCES)}"
        )
    assert source is not None
    if source is ConsentSource.DOUBLE_OPT_IN and status is not ConsentStatus.GRANTED:
        raise ConsentProblem("consent_source", "double_opt_in records a confirmed grant: consent must be granted")
    wording = (row.get("consent_wording") or "").strip() or None
    agent = (row.get("consent_user_agent") or "").strip() or None
    for column, value in (("consent_wording", wording), ("consent_user_agent", agent)):
        if value is not None and _CONTROL.search(value):
            raise ConsentProblem(column, "must not contain control characters")
    try:
        ip = check_ip(row.get("consent_ip"))
    except ValueError as exc:
        raise ConsentProblem("consent_ip", str(exc)) from None
    return [ConsentRecord(topic, status, source, at, wording, ip, agent) for topic in topics]
