"""Counts of events, sends, enrolments and leads, kept exact by the database.

Triggers (migration 0009) add to `tally` in the transaction that inserts, changes or
deletes a counted row, whatever code wrote it, so reports, /metrics and the dashboard read
a few hundred counter rows instead of scanning millions:

    kind       a              b            c                     d                     day
    event      type           ''           ''                    ''                    day of `at`
    send       scenario_id    step         status                kind (email, ...)     day sent (or queued)
    enrolment  scenario_id    status       exit_reason or ''     ''                    day enrolled
    lead       stage          grade        engagement (text)     reachable|unreachable ''

On PostgreSQL each transaction adds to rows of its own (`part` = its transaction id), so
concurrent writers never wait on one another's counters nor deadlock on them; `fold` adds
committed rows into the totals (`part` 0). Readers sum over all parts: a count is exact
before and after a fold.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any

from sqlalchemy import func, select, text

from nurture.store.base import Connection, Part
from nurture.store.tables import TALLIES

# pg_try_advisory_xact_lock key: one folder at a time (another skips, nothing is lost).
_FOLD_LOCK = 0x6E75_7274_0009
_FOLD = text(
    "WITH gone AS (DELETE FROM tally WHERE part <> 0 RETURNING kind, a, b, c, d, day, n) "
    "INSERT INTO tally (kind, a, b, c, d, day, part, n) "
    "SELECT kind, a, b, c, d, day, 0, sum(n) FROM gone GROUP BY kind, a, b, c, d, day "
    "ON CONFLICT (kind, a, b, c, d, day, part) DO UPDATE SET n = tally.n + excluded.n"
)
_COLUMNS = ("a", "b", "c", "d", "day")


class Tallies(Part):
    def fold(self) -> int:
        """Add the per-transaction rows into the totals (PostgreSQL; SQLite keeps totals
        only). Returns how many rows were folded; 0 when another process is folding."""
        if not self.postgres:
            return 0
        with self.engine.begin() as conn:
            if not conn.execute(select(func.pg_try_advisory_xact_lock(_FOLD_LOCK))).scalar():
                return 0
            return int(conn.execute(_FOLD).rowcount or 0)

    def unfolded(self, conn: Connection) -> int:
        """How many per-transaction rows wait for a fold."""
        return int(conn.execute(select(func.count()).where(TALLIES.c.part != 0)).scalar() or 0)

    def count(self, conn: Connection, kind: str, by: tuple[str, ...], **match: str) -> dict[Any, int]:
        """{group: count} of `kind` rows matching `match` (columns a..d, day), grouped by the
        columns `by` (a single column gives plain keys, several give tuples)."""
        columns = [TALLIES.c[name] for name in by]
        query = select(*columns, func.sum(TALLIES.c.n)).where(TALLIES.c.kind == kind).group_by(*columns)
        for name, value in match.items():
            if name not in _COLUMNS:
                raise ValueError(f"tally has no column {name!r}")
            query = query.where(TALLIES.c[name] == value)
        found: dict[Any, int] = defaultdict(int)
        for row in conn.execute(query):
            n = int(row[-1] or 0)
            if n:
                found[row[0] if len(by) == 1 else tuple(row[:-1])] += n
        return dict(found)

    def total(self, conn: Connection, kind: str, **match: str) -> int:
        query = select(func.coalesce(func.sum(TALLIES.c.n), 0)).where(TALLIES.c.kind == kind)
        for name, value in match.items():
            query = query.where(TALLIES.c[name] == value)
        return int(conn.execute(query).scalar() or 0)
