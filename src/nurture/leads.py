"""Importing leads from CSV, JSON or JSON Lines: validate every row, upsert by email.

Rows are checked in full before anything is written; a bad row is reported with its
line and reason and skipped whole, so no lead is ever half-imported.
"""

from __future__ import annotations

import csv
import io
import json
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from nurture.errors import NurtureError
from nurture.store import Store
from nurture.timeutil import is_valid_zone
from nurture.vocabulary import READ_ONLY_FIELDS, STANDARD_FIELDS, Stage

_EMAIL = re.compile(r"^[^@\s<>(),;:\"\[\]\\]+@[A-Za-z0-9](?:[A-Za-z0-9.-]*[A-Za-z0-9])?\.[A-Za-z]{2,}$")
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

    @field_validator("email")
    @classmethod
    def _email(cls, value: str) -> str:
        if not _EMAIL.match(value):
            raise ValueError(f"not a valid email address: {value!r}")
        return value.lower()

    @field_validator("first_name", "last_name", "company", "industry", "job_title", "owner", "source")
    @classmethod
    def _one_line(cls, value: str | None) -> str | None:
        if value is not None and _CONTROL.search(value):
            raise ValueError("must be one line of text (no control characters)")
        return value or None

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
        data = self.model_dump(exclude_none=True)
        return data


@dataclass(frozen=True)
class RowProblem:
    where: str
    message: str

    def __str__(self) -> str:
        return f"{self.where}: {self.message}"


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


def read_rows(path: Path) -> Iterator[tuple[str, dict[str, Any] | RowProblem]]:
    """(where, raw row or problem) for each record of a CSV, JSON or JSON Lines file."""
    try:
        text = path.read_text(encoding="utf-8-sig")
    except FileNotFoundError as exc:
        raise NurtureError(f"{path}: no such file") from exc
    except UnicodeDecodeError as exc:
        raise NurtureError(f"{path}: not UTF-8 ({exc.reason} at byte {exc.start})") from exc
    suffix = path.suffix.lower()
    if suffix == ".csv":
        reader = csv.DictReader(io.StringIO(text, newline=""))
        if not reader.fieldnames or "email" not in [f.strip().lower() for f in reader.fieldnames]:
            raise NurtureError(f"{path}:1: the header needs an 'email' column")
        while True:
            start = reader.line_num + 1
            try:
                row = next(reader)
            except StopIteration:
                return
            except csv.Error as exc:
                yield f"{path}:{start}", RowProblem(f"{path}:{start}", f"unreadable CSV: {exc}")
                return
            if None in row:
                yield f"{path}:{start}", RowProblem(f"{path}:{start}", "more values than header columns")
                continue
            yield f"{path}:{start}", dict(row)
    elif suffix in (".jsonl", ".ndjson"):
        for number, line in enumerate(text.splitlines(), start=1):
            if not line.strip():
                continue
            try:
                item = json.loads(line)
            except json.JSONDecodeError as exc:
                yield f"{path}:{number}", RowProblem(f"{path}:{number}", f"bad JSON: {exc.msg}")
                continue
            yield (
                f"{path}:{number}",
                item if isinstance(item, dict) else RowProblem(f"{path}:{number}", "not an object"),
            )
    elif suffix == ".json":
        yield from _json_array(text, path)
    else:
        raise NurtureError(f"{path}: unknown format; use .csv, .json or .jsonl")


def _json_array(text: str, path: Path) -> Iterator[tuple[str, dict[str, Any] | RowProblem]]:
    decoder = json.JSONDecoder()
    index = len(text) - len(text.lstrip())
    if not text[index : index + 1] == "[":
        raise NurtureError(f"{path}:1: a JSON import is an array of lead objects")
    index += 1
    while True:
        while index < len(text) and text[index] in " \t\r\n,":
            index += 1
        if index >= len(text) or text[index] == "]":
            return
        line = text.count("\n", 0, index) + 1
        try:
            item, index = decoder.raw_decode(text, index)
        except json.JSONDecodeError as exc:
            raise NurtureError(f"{path}:{exc.lineno}: bad JSON: {exc.msg}") from exc
        where = f"{path}:{line}"
        yield where, item if isinstance(item, dict) else RowProblem(where, "not an object")


def validate_row(where: str, raw: dict[str, Any]) -> LeadIn | RowProblem:
    try:
        return LeadIn.model_validate(_flatten(raw))
    except ValidationError as exc:
        reasons = "; ".join(
            f"{'.'.join(str(p) for p in e['loc']) or 'row'}: {str(e['msg']).removeprefix('Value error, ')}"
            for e in exc.errors()
        )
        return RowProblem(where, reasons)


def import_leads(store: Store, path: Path, chunk: int = 500) -> ImportReport:
    report = ImportReport()
    valid: list[LeadIn] = []
    seen: dict[str, str] = {}
    for where, item in read_rows(path):
        result = item if isinstance(item, RowProblem) else validate_row(where, item)
        if isinstance(result, RowProblem):
            report.problems.append(result)
            continue
        if result.email in seen:
            report.warnings.append(
                RowProblem(where, f"{result.email} also on {seen[result.email]}; this later row wins")
            )
        seen[result.email] = where
        valid.append(result)
    for start in range(0, len(valid), chunk):
        with store.transaction() as conn:
            for lead in valid[start : start + chunk]:
                _, created = store.leads.upsert(conn, lead.to_row())
                report.created += created
                report.updated += not created
    return report
