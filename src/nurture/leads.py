"""Importing leads from CSV, JSON or JSON Lines: validate every row, upsert by email.

The file is read as a stream and written in chunks of rows, each chunk one transaction
with one multi-row upsert. A bad row is reported with its line and reason and skipped
whole, so no lead is ever half-imported; the good rows around it are imported.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from nurture.config import Settings
from nurture.consent.erasure import keyed_hash
from nurture.consent.export import PersonExport, build_export
from nurture.consent.inputs import CSV_COLUMNS, ConsentIn, ConsentProblem, records_from_row
from nurture.consent.model import ConsentRecord, ConsentSource, ConsentStatus, regime_for
from nurture.errors import NurtureError
from nurture.importing import LeadFile, RowProblem, sendable_address
from nurture.store import Connection, Store
from nurture.store.consents import Erasure
from nurture.timeutil import is_valid_zone
from nurture.vocabulary import READ_ONLY_FIELDS, STANDARD_FIELDS, Stage

_EMAIL = re.compile(r"^[^@\s<>(),;:\"\[\]\\]+@[A-Za-z0-9](?:[A-Za-z0-9.-]*[A-Za-z0-9])?\.[A-Za-z]{2,}$")
_IDN_EMAIL = re.compile(r"^[^@\s<>(),;:\"\[\]\\]+@[^@\s<>(),;:\"\[\]\\]+\.[^@\s<>(),;:\"\[\]\\.]{2,}$")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
LIFECYCLE = tuple(Stage)


class LeadIn(BaseModel):
    """One lead as it may arrive from an import or the API."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    email: str = Field(max_length=320)
    first_name: str | None = Field(default=None, max_length=200)
    last_name: str | None = Field(default=None, max_length=200)
    company: str | None = Field(default=None, max_length=300)
    company_size: int | None = Field(default=None, ge=0, le=10_000_000)
    industry: str | None = Field(default=None, max_length=200)
    job_title: str | None = Field(default=None, max_length=300)
    country: str | None = Field(default=None, min_length=2, max_length=2)
    timezone: str | None = None
    source: str | None = Field(default=None, max_length=100)
    lifecycle_stage: str | None = None
    owner: str | None = Field(default=None, max_length=200)
    tags: list[str] = Field(default_factory=list)
    custom: dict[str, Any] = Field(default_factory=dict)
    consent: list[ConsentIn] = Field(
        default_factory=list,
        max_length=50,
        description="Consent statements to record (a 'pending' one sends the double opt-in email)",
    )

    @field_validator("email")
    @classmethod
    def _email(cls, value: str) -> str:
        # The address as the sender will send it (IDN domains in their ASCII form); one the
        # sender could not send is refused here, not at every send attempt.
        if not _EMAIL.match(value) and not _IDN_EMAIL.match(value):
            raise ValueError(f"not a valid email address: {value!r}")
        return sendable_address(value).lower()

    @field_validator("first_name", "last_name", "company", "industry", "job_title", "owner", "source")
    @classmethod
    def _one_line(cls, value: str | None) -> str | None:
        if value is not None and _CONTROL.search(value):
            raise ValueError("must be one line of text (no control characters)")
        return value or None

    @field_validator("tags")
    @classmethod
    def _tags(cls, value: list[str]) -> list[str]:
        for tag in value:
            if _CONTROL.search(tag):
                raise ValueError(f"tag {tag[:40]!r} must be one line of text (no control characters)")
        return value

    @field_validator("custom")
    @classmethod
    def _custom(cls, value: dict[str, Any]) -> dict[str, Any]:
        problem = storable_json(value)
        if problem:
            raise ValueError(problem)
        return value

    @field_validator("country")
    @classmethod
    def _country(cls, value: str | None) -> str | None:
        if value is None:
            return None
        if not value.isalpha():
            raise ValueError("use a two-letter country code such as 'DE' or 'JP'")
        return value.upper()

    @field_validator("timezone")
    @classmethod
    def _zone(cls, value: str | None) -> str | None:
        if value and not is_valid_zone(value):
            raise ValueError(f"unknown time zone {value!r}: use an IANA name like 'Europe/Berlin'")
        return value or None

    @field_validator("lifecycle_stage")
    @classmethod
    def _stage(cls, value: str | None) -> str | None:
        if value and value not in LIFECYCLE:
            raise ValueError(f"unknown lifecycle stage {value!r}; expected one of {', '.join(LIFECYCLE)}")
        return value or None

    def to_row(self) -> dict[str, Any]:
        data = self.model_dump(exclude_none=True, exclude={"consent"})
        return data

    def consent_records(self, now: datetime, default_source: ConsentSource) -> list[ConsentRecord]:
        """The statements to record; those that name no source get `default_source`."""
        found = []
        for item in self.consent:
            record = item.record(now)
            if "source" not in item.model_fields_set:
                record = replace(record, source=default_source)
            found.append(record)
        return found


def storable_json(value: Any, where: str = "") -> str | None:
    """Why `value` cannot be stored as JSON in every database (NaN or Infinity, which JSON
    has no word for; a NUL character, which PostgreSQL text cannot hold), or None."""
    if isinstance(value, float) and not math.isfinite(value):
        return f"{where or 'value'}: {value} is not a number JSON can store"
    if isinstance(value, str) and "\x00" in value:
        return f"{where or 'value'}: contains a NUL character"
    if isinstance(value, dict):
        for key, item in value.items():
            if "\x00" in str(key):
                return f"{where + '.' if where else ''}{str(key)!r}: a name with a NUL character"
            found = storable_json(item, f"{where + '.' if where else ''}{key}")
            if found:
                return found
    if isinstance(value, list):
        for index, item in enumerate(value):
            found = storable_json(item, f"{where}[{index}]")
            if found:
                return found
    return None


@dataclass
class ImportReport:
    created: int = 0
    updated: int = 0
    problems: list[RowProblem] = field(default_factory=list)
    warnings: list[RowProblem] = field(default_factory=list)


def _flatten(raw: dict[str, Any]) -> dict[str, Any]:
    """CSV/JSON row → LeadIn input: unknown columns become custom fields, '' becomes None."""
    data: dict[str, Any] = {}
    custom: dict[str, Any] = dict(raw.get("custom") or {}) if isinstance(raw.get("custom"), dict) else {}
    for key, value in raw.items():
        if key is None or key == "custom":
            continue
        name = str(key).strip().lower().replace(" ", "_")
        if name == "consent" and isinstance(value, list):
            data["consent"] = value
            continue
        if name in CSV_COLUMNS:
            continue  # consent columns: see consent_columns
        if isinstance(value, str):
            value = value.strip()
            if value == "":
                continue
        if name == "tags" and isinstance(value, str):
            value = [t.strip() for t in re.split(r"[;,]", value) if t.strip()]
        if name in STANDARD_FIELDS and name not in READ_ONLY_FIELDS - {"email", "lifecycle_stage"}:
            data[name] = value
        elif name in READ_ONLY_FIELDS:
            continue
        else:
            custom[name] = value
    if custom:
        data["custom"] = custom
    return data


def consent_columns(raw: dict[str, Any], now: datetime) -> list[dict[str, Any]]:
    """The `consent_*` columns of an import row as consent statements (see nurture.consent.inputs)."""
    columns: dict[str, str | None] = {}
    for key, value in raw.items():
        name = str(key).strip().lower().replace(" ", "_") if key is not None else ""
        if name in CSV_COLUMNS and isinstance(value, str | int | float | bool):
            columns[name] = str(value)
    return [
        {"topic": r.topic, "status": r.status.value, "source": r.source.value, "at": r.at.isoformat(),
         "wording": r.wording, "ip": r.ip, "user_agent": r.user_agent}
        for r in records_from_row(columns, now)
    ]  # fmt: skip


def validate_row(where: str, raw: dict[str, Any], now: datetime | None = None) -> LeadIn | RowProblem:
    try:
        data = _flatten(raw)
        if now is not None and "consent" not in data:
            found = consent_columns(raw, now)
            if found:
                data["consent"] = found
        return LeadIn.model_validate(data)
    except ConsentProblem as exc:
        return RowProblem(where, str(exc))
    except ValidationError as exc:
        reasons = "; ".join(
            f"{'.'.join(str(p) for p in e['loc']) or 'row'}: {str(e['msg']).removeprefix('Value error, ')}"
            for e in exc.errors()
        )
        return RowProblem(where, reasons)


def import_leads(
    store: Store,
    path: Path,
    chunk: int = 1000,
    *,
    encoding: str | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> ImportReport:
    """Upsert the file's valid rows by email, `chunk` rows per transaction, reading it as a
    stream (memory stays flat whatever its size); `progress(bytes read, file size)` after
    each chunk. A bad row is reported and skipped whole; the good rows are imported."""
    report = ImportReport()
    now = store.clock.now()
    source = LeadFile(path, encoding=encoding)
    with store.leads.importing() as conn:
        batch: list[tuple[str, LeadIn]] = []
        for where, item in source:
            result = item if isinstance(item, RowProblem) else validate_row(where, item, now)
            if isinstance(result, RowProblem):
                report.problems.append(result)
                continue
            batch.append((where, result))
            if len(batch) >= chunk:
                _import_chunk(store, conn, batch, now, report)
                batch = []
                if progress is not None:
                    progress(source.position, source.size)
        _import_chunk(store, conn, batch, now, report)
    if progress is not None:
        progress(source.size, source.size)
    return report


def _import_chunk(
    store: Store, conn: Connection, batch: list[tuple[str, LeadIn]], now: datetime, report: ImportReport
) -> None:
    """One transaction: the chunk's leads in one upsert (a later row with the same address
    wins, with a warning naming the earlier one), then their consent statements."""
    if not batch:
        return
    with conn.begin():
        latest = {lead.email: where for where, lead in batch}
        earlier = store.leads.seen_before(conn, latest)
        places: dict[str, str] = {}
        for where, lead in batch:
            before = places.get(lead.email) or earlier.get(lead.email)
            if before is not None:
                report.warnings.append(RowProblem(where, f"{lead.email} also on {before}; this later row wins"))
            places[lead.email] = where
        rows: dict[str, dict[str, Any]] = {}  # one per address: its rows folded in file order
        for _, lead in batch:
            row = lead.to_row()
            rows[lead.email] = row if lead.email not in rows else _fold(rows[lead.email], row)
        saved = store.leads.upsert_many(conn, list(rows.values()), now)
        for email in rows:
            report.created += saved[email][1]
        # Every row counts, as when each was upserted in turn: a repeat updates its address.
        report.updated += len(batch) - sum(created for _, created in saved.values())
        for _, lead in batch:
            if lead.consent:
                store.consents.add(conn, saved[lead.email][0], lead.consent_records(now, ConsentSource.IMPORT))


def _fold(first: dict[str, Any], later: dict[str, Any]) -> dict[str, Any]:
    """Two rows of one address as if upserted one after the other: the later one's fields
    win, tags add up, custom fields merge."""
    merged = {**first, **later}
    merged["tags"] = list(dict.fromkeys([*first.get("tags", []), *later.get("tags", [])]))
    merged["custom"] = {**first.get("custom", {}), **later.get("custom", {})}
    return merged


def save_lead(
    store: Store,
    conn: Connection,
    lead: LeadIn,
    now: datetime,
    default_source: ConsentSource,
    confirmation_sender: str | None = None,
) -> tuple[int, bool]:
    """Upsert a lead and record its consent statements; with `confirmation_sender`, a
    `pending` statement also queues the double opt-in email. Returns (id, created)."""
    lead_id, created = store.leads.upsert(conn, lead.to_row())
    records = lead.consent_records(now, default_source)
    store.consents.add(conn, lead_id, records)
    if confirmation_sender is not None:
        for record in records:
            if record.status is ConsentStatus.PENDING:
                store.consents.request_confirmation(conn, lead_id, record.topic, confirmation_sender, now)
    return lead_id, created


def export_person(store: Store, settings: Settings, email: str, topics: Sequence[str] = ()) -> PersonExport | None:
    """Everything held about the person with this address (None when nobody has it)."""
    person = store.consents.person(email)
    if person is None:
        return None
    regime = regime_for(person["lead"]["country"], settings.consent_regime, settings.opt_in_countries)
    return build_export(person, now=store.clock.now(), regime=regime, topics=topics)


def erase_person(store: Store, settings: Settings, email: str, actor: str) -> Erasure:
    """Remove the person with this address from every table; only a keyed hash of the
    address stays, on the suppression list, so it is never mailed again."""
    if not actor.strip():
        raise NurtureError("say who asked for the erasure (--by), for the erasure log")
    address = email.strip().lower()
    entry = keyed_hash(settings.suppression_hash_key, address)
    return store.consents.erase(address, entry, actor.strip()[:200], store.clock.now())
