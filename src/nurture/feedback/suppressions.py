"""The suppression list as a file: import from another tool, export for one.

CSV with a header row; `email` is required, `reason` and `created_at` are optional (other
columns are ignored, so most tools' exports load as they are). A file with any bad row is
refused whole, each problem named by its line, and nothing is imported.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime

from nurture.errors import ImportProblem
from nurture.mail.message import PLAIN_ADDRESS

REASONS = ("hard_bounce", "soft_bounces", "complaint", "unsubscribed", "imported", "manual")
# Other tools' words for the same reasons.
_ALIASES = {
    "bounce": "hard_bounce",
    "bounced": "hard_bounce",
    "hard bounce": "hard_bounce",
    "hardbounce": "hard_bounce",
    "invalid": "hard_bounce",
    "soft bounce": "soft_bounces",
    "spam": "complaint",
    "spamreport": "complaint",
    "spam complaint": "complaint",
    "abuse": "complaint",
    "unsubscribe": "unsubscribed",
    "unsubscribed": "unsubscribed",
    "": "imported",
}


@dataclass(frozen=True)
class Suppression:
    email: str  # lower case
    reason: str
    created_at: datetime | None = None
    source: str = "import"


def _reason(text: str) -> str | None:
    key = " ".join(text.strip().lower().replace("-", " ").replace("_", " ").split())
    if key.replace(" ", "_") in REASONS:
        return key.replace(" ", "_")
    return _ALIASES.get(key)


def _when(text: str) -> datetime:
    parsed = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed.astimezone(UTC)


def read_csv(text: str, filename: str = "suppressions.csv") -> list[Suppression]:
    """The rows of a suppression file, or ImportProblem naming every bad line."""
    reader = csv.DictReader(io.StringIO(text.lstrip("\ufeff")))
    columns = {(c or "").strip().lower(): c for c in reader.fieldnames or []}
    if "email" not in columns:
        raise ImportProblem(f"{filename}:1: no 'email' column (found: {', '.join(columns) or 'nothing'})")
    found: dict[str, Suppression] = {}
    problems = []
    for row in reader:
        line = reader.line_num
        email = (row.get(columns["email"]) or "").strip().lower()
        if not email:
            continue
        if not PLAIN_ADDRESS.match(email):
            problems.append(f"{filename}:{line}: not an email address: {email!r}")
            continue
        raw_reason = row.get(columns["reason"]) or "" if "reason" in columns else ""
        reason = _reason(raw_reason)
        if reason is None:
            problems.append(f"{filename}:{line}: unknown reason {raw_reason!r} (use one of {', '.join(REASONS)})")
            continue
        created = None
        raw_created = (row.get(columns["created_at"]) or "").strip() if "created_at" in columns else ""
        if raw_created:
            try:
                created = _when(raw_created)
            except ValueError:
                problems.append(f"{filename}:{line}: created_at {raw_created!r} is not an ISO 8601 time")
                continue
        found[email] = Suppression(email, reason, created)
    if problems:
        raise ImportProblem("\n".join(problems))
    return list(found.values())


def write_csv(rows: Iterable[Suppression]) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(["email", "reason", "created_at", "source"])
    for row in rows:
        created = row.created_at.astimezone(UTC).isoformat() if row.created_at else ""
        writer.writerow([row.email, row.reason, created, row.source])
    return out.getvalue()
