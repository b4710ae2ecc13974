"""Experiments: their state and decision, each lead's arm, and what the goals are read from.

An experiment's row appears with its first assignment (in the advance transaction that made
it); the experiments job settles assignments as their goal windows close and records the
decision once, guarded by the row's status, so two daemons cannot both decide it.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import bindparam, func, insert, select, update

from nurture.experiments.tally import Assignment
from nurture.scenario.expr import EventRecord
from nurture.store.base import Connection, Part, insert_ignore
from nurture.store.tables import (
    AUDIT_LOG,
    ENROLMENTS,
    EVENTS,
    EXPERIMENT_ASSIGNMENTS,
    EXPERIMENTS,
    LEADS,
    LIFECYCLE_CHANGES,
    SENDS,
)

RUNNING = "running"
ENGAGEMENT = ("open", "click")

E = EXPERIMENTS
A = EXPERIMENT_ASSIGNMENTS


@dataclass(frozen=True, slots=True)
class ExperimentRow:
    key: str
    scenario_id: str
    step: str
    status: str
    started_at: datetime
    checked_at: datetime | None
    decided_at: datetime | None
    winner: str | None
    route_to: str | None
    effect: float | None
    interval_low: float | None
    interval_high: float | None
    p_value: float | None
    statistic: str
    reason: str


@dataclass(frozen=True, slots=True)
class OpenAssignment:
    """An assignment whose outcome is not final yet."""

    id: int
    lead_id: int
    arm: str
    assigned_at: datetime


_COLUMNS = [getattr(E.c, name) for name in ExperimentRow.__dataclass_fields__]


class Experiments(Part):
    # -- written by the advance job -------------------------------------------------------------

    def assign(self, conn: Connection, rows: Sequence[Mapping[str, Any]]) -> None:
        """Record arms given to leads (`experiment_key`, `scenario_id`, `step`, `lead_id`,
        `enrollment_id`, `arm`, `randomised`, `assigned_at`); a lead keeps its first arm."""
        if not rows:
            return
        first: dict[str, Mapping[str, Any]] = {}
        for row in rows:
            known = first.get(row["experiment_key"])
            if known is None or row["assigned_at"] < known["assigned_at"]:
                first[row["experiment_key"]] = row
        conn.execute(
            insert_ignore(self.postgres, E),
            [
                {
                    "key": key,
                    "scenario_id": row["scenario_id"],
                    "step": row["step"],
                    "status": RUNNING,
                    "started_at": row["assigned_at"],
                    "statistic": "",
                    "reason": "",
                }
                for key, row in sorted(first.items())
            ],
        )
        conn.execute(
            insert_ignore(self.postgres, A),
            [
                {
                    "experiment_key": row["experiment_key"],
                    "lead_id": row["lead_id"],
                    "enrollment_id": row.get("enrollment_id"),
                    "arm": row["arm"],
                    "randomised": bool(row["randomised"]),
                    "assigned_at": row["assigned_at"],
                    "settled": False,
                }
                for row in rows
            ],
        )

    # -- read by the advance job ---------------------------------------------------------------

    def routes(self, conn: Connection, keys: Collection[str]) -> dict[str, str]:
        """Experiment key → the arm new leads take, for experiments among `keys` that are over."""
        if not keys:
            return {}
        rows = conn.execute(select(E.c.key, E.c.route_to).where(E.c.key.in_(sorted(keys)), E.c.status != RUNNING)).all()
        return {key: arm for key, arm in rows if arm}

    def arms_of(self, conn: Connection, lead_ids: Sequence[int], keys: Collection[str]) -> dict[int, dict[str, str]]:
        """Each lead's arms in the experiments `keys`."""
        found: dict[int, dict[str, str]] = defaultdict(dict)
        if not lead_ids or not keys:
            return found
        rows = conn.execute(
            select(A.c.lead_id, A.c.experiment_key, A.c.arm).where(
                A.c.lead_id.in_(sorted(lead_ids)), A.c.experiment_key.in_(sorted(keys))
            )
        )
        for lead_id, key, arm in rows:
            found[lead_id][key] = arm
        return found

    def engagement_of_accounts(
        self, conn: Connection, companies: Collection[str], since: datetime
    ) -> dict[str, list[tuple[int, str | None, EventRecord]]]:
        """Opens and clicks since `since` of the leads of each company (lower-cased name):
        (lead id, lead's time zone, event)."""
        found: dict[str, list[tuple[int, str | None, EventRecord]]] = defaultdict(list)
        if not companies:
            return found
        company = func.lower(LEADS.c.company)
        rows = conn.execute(
            select(company, LEADS.c.id, LEADS.c.timezone, EVENTS.c.type, EVENTS.c.at, EVENTS.c.props)
            .join_from(EVENTS, LEADS, LEADS.c.id == EVENTS.c.lead_id)
            .where(company.in_(sorted(companies)), EVENTS.c.type.in_(ENGAGEMENT), EVENTS.c.at >= since)
            .order_by(EVENTS.c.at)
        )
        for name, lead_id, zone, type_, at, props in rows:
            found[name].append((lead_id, zone, EventRecord(type_, at, props or {})))
        return found

    def engagement_of_audience(
        self, conn: Connection, scenario_id: str, since: datetime, limit: int = 50_000
    ) -> list[tuple[int, str | None, EventRecord]]:
        """Opens and clicks since `since` of leads ever enrolled in the scenario (the latest
        `limit`): (lead id, lead's time zone, event)."""
        audience = select(ENROLMENTS.c.lead_id).where(ENROLMENTS.c.scenario_id == scenario_id).scalar_subquery()
        rows = conn.execute(
            select(LEADS.c.id, LEADS.c.timezone, EVENTS.c.type, EVENTS.c.at, EVENTS.c.props)
            .join_from(EVENTS, LEADS, LEADS.c.id == EVENTS.c.lead_id)
            .where(EVENTS.c.lead_id.in_(audience), EVENTS.c.type.in_(ENGAGEMENT), EVENTS.c.at >= since)
            .order_by(EVENTS.c.at.desc())
            .limit(limit)
        )
        return [(lead_id, zone, EventRecord(type_, at, props or {})) for lead_id, zone, type_, at, props in rows]

    # -- the experiments job -------------------------------------------------------------------

    def all(self, conn: Connection, scenario_id: str | None = None) -> list[ExperimentRow]:
        query = select(*_COLUMNS).order_by(E.c.started_at)
        if scenario_id is not None:
            query = query.where(E.c.scenario_id == scenario_id)
        return [ExperimentRow(*row) for row in conn.execute(query)]

    def running(self, conn: Connection) -> list[ExperimentRow]:
        return [ExperimentRow(*row) for row in conn.execute(select(*_COLUMNS).where(E.c.status == RUNNING))]

    def open_assignments(self, conn: Connection, key: str, limit: int = 5000) -> list[OpenAssignment]:
        """Randomised assignments of `key` whose outcome is not final, oldest first."""
        rows = conn.execute(
            select(A.c.id, A.c.lead_id, A.c.arm, A.c.assigned_at)
            .where(A.c.experiment_key == key, A.c.settled.is_(False), A.c.randomised.is_(True))
            .order_by(A.c.assigned_at)
            .limit(limit)
        )
        return [OpenAssignment(*row) for row in rows]

    def settle(self, conn: Connection, outcomes: Sequence[tuple[int, datetime | None, bool]]) -> None:
        """(assignment id, when the goal was reached or None, whether the outcome is final)."""
        if outcomes:
            conn.execute(
                update(A)
                .where(A.c.id == bindparam("a_id"))
                .values(reached_at=bindparam("a_reached"), settled=bindparam("a_settled")),
                [{"a_id": i, "a_reached": at, "a_settled": final} for i, at, final in outcomes],
            )

    def assignments(self, conn: Connection, key: str) -> list[Assignment]:
        """Every assignment of `key`, with its outcome so far (`reached_at` only once settled
        or reached)."""
        rows = conn.execute(
            select(A.c.arm, A.c.assigned_at, A.c.randomised, A.c.reached_at).where(A.c.experiment_key == key)
        )
        return [Assignment(arm, at, bool(randomised), reached) for arm, at, randomised, reached in rows]

    def stages_of(
        self, conn: Connection, lead_ids: Sequence[int], since: datetime
    ) -> dict[int, list[tuple[str, datetime]]]:
        """Each lead's lifecycle moves since `since`: (new stage, when)."""
        found: dict[int, list[tuple[str, datetime]]] = defaultdict(list)
        if not lead_ids:
            return found
        rows = conn.execute(
            select(LIFECYCLE_CHANGES.c.lead_id, LIFECYCLE_CHANGES.c.to_stage, LIFECYCLE_CHANGES.c.at)
            .where(LIFECYCLE_CHANGES.c.lead_id.in_(sorted(lead_ids)), LIFECYCLE_CHANGES.c.at >= since)
            .order_by(LIFECYCLE_CHANGES.c.at)
        )
        for lead_id, stage, at in rows:
            found[lead_id].append((stage, at))
        return found

    def checked(
        self, conn: Connection, key: str, now: datetime, p_value: float | None, statistic: str, reason: str
    ) -> None:
        """The latest look at a running experiment; the p-value kept is the smallest seen."""
        values: dict[str, Any] = {"checked_at": now, "statistic": statistic, "reason": reason}
        if p_value is not None:
            smaller = func.least if self.postgres else func.min  # SQLite's min() of two values is scalar
            values["p_value"] = smaller(func.coalesce(E.c.p_value, p_value), p_value)
        conn.execute(update(E).where(E.c.key == key, E.c.status == RUNNING).values(**values))

    def decide(
        self, conn: Connection, key: str, now: datetime, values: Mapping[str, Any], audit: Mapping[str, Any]
    ) -> bool:
        """Record the decision and its audit entry, once: False when the experiment was already over."""
        done = conn.execute(
            update(E)
            .where(E.c.key == key, E.c.status == RUNNING)
            .values(decided_at=now, checked_at=now, **values)
            .returning(E.c.key)
        ).first()
        if done is None:
            return False
        conn.execute(
            insert(AUDIT_LOG).values(at=now, lead_id=None, enrollment_id=None, kind="experiment", detail=dict(audit))
        )
        return True

    # -- send time -----------------------------------------------------------------------------

    def sends_with_timing(
        self, conn: Connection, scenario_id: str, timings: Collection[str]
    ) -> list[tuple[int, int, str, str, datetime]]:
        """(send id, lead id, step, timing, sent at) of the scenario's sent emails with those timings."""
        rows = conn.execute(
            select(SENDS.c.id, SENDS.c.lead_id, SENDS.c.step, SENDS.c.timing, SENDS.c.sent_at).where(
                SENDS.c.scenario_id == scenario_id,
                SENDS.c.sent_at.is_not(None),
                SENDS.c.timing.in_(sorted(timings)),
            )
        )
        return [(i, lead, step, timing, at) for i, lead, step, timing, at in rows]
