"""The experiments job: settle goals, evaluate every running experiment, record decisions.

Each run, for every running experiment of a loaded scenario: assignments whose goal window
is open or has just closed are checked against the leads' bot-free events and lifecycle
moves (an outcome becomes final when the window closes); the per-arm counts go through the
pure decision function; a decision is recorded once (guarded by the experiment's status, so
of several daemons only one records it), with an audit entry and an email to the scenario's
owner in the same transaction. The whole job runs under a cluster lock.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from html import escape

from nurture.clock import Clock
from nurture.experiments.decide import Verdict, evaluate
from nurture.experiments.goals import goal_reached, human_events
from nurture.experiments.plan import ArmTally
from nurture.experiments.summary import decision_email
from nurture.experiments.tally import tally
from nurture.jobs.catalog import Catalog
from nurture.scenario.compiler import CompiledScenario, CompiledSplit
from nurture.store import Connection, Store
from nurture.vocabulary import NotificationKind, NotificationStatus


@dataclass
class ExperimentStats:
    checked: int = 0
    settled: int = 0
    decided: int = 0


class Experimenter:
    def __init__(self, store: Store, catalog: Catalog, clock: Clock, *, base_url: str = "") -> None:
        self.store = store
        self.catalog = catalog
        self.clock = clock
        self.base_url = base_url.rstrip("/")

    def splits(self) -> dict[str, tuple[CompiledScenario, CompiledSplit]]:
        """Every experiment of the loaded scenarios (current versions), by key."""
        found = {}
        for compiled in self.catalog.current.values():
            for key, split in compiled.experiments.items():
                found[key] = (compiled, split)
        return found

    def run_once(self) -> ExperimentStats:
        now = self.clock.now()
        stats = ExperimentStats()
        with self.store.cluster_lock("experiments") as mine:
            if not mine:
                return stats
            known = self.splits()
            with self.store.reading() as conn:
                running = self.store.experiments.running(conn)
            for row in running:
                if row.key not in known:
                    continue
                compiled, split = known[row.key]
                stats.settled += self._settle(compiled, split, now)
                stats.checked += 1
                stats.decided += self._evaluate(compiled, split, row.started_at, now)
        return stats

    def _settle(self, compiled: CompiledScenario, split: CompiledSplit, now: datetime) -> int:
        assert split.key is not None and split.goal is not None
        goal = split.goal
        with self.store.reading() as conn:
            open_ = self.store.experiments.open_assignments(conn, split.key)
            if not open_:
                return 0
            lead_ids = sorted({a.lead_id for a in open_})
            since = min(a.assigned_at for a in open_)
            events = self.store.events.for_leads(conn, lead_ids, since) if goal.kind in ("click", "event") else {}
            stages = (
                self.store.experiments.stages_of(conn, lead_ids, since) if goal.kind not in ("click", "event") else {}
            )
        scoring = self.catalog.scoring
        outcomes = []
        for assignment in open_:
            reached = goal_reached(
                goal,
                compiled.id,
                assignment.assigned_at,
                human_events(scoring, events.get(assignment.lead_id, [])),
                stages.get(assignment.lead_id, []),
            )
            final = reached is not None or assignment.assigned_at + goal.within <= now
            if reached is not None or final:
                outcomes.append((assignment.id, reached, final))
        with self.store.transaction() as conn:
            self.store.experiments.settle(conn, outcomes)
        return sum(1 for _, _, final in outcomes if final)

    def _evaluate(self, compiled: CompiledScenario, split: CompiledSplit, started_at: datetime, now: datetime) -> int:
        assert split.key is not None and split.plan is not None and split.goal is not None
        with self.store.reading() as conn:
            assignments = self.store.experiments.assignments(conn, split.key)
        arms = tally(split.arms, split.holdouts, assignments, split.goal.within, now)
        verdict = evaluate(split.plan, arms, started_at, now)
        with self.store.transaction() as conn:
            if not verdict.over:
                self.store.experiments.checked(conn, split.key, now, verdict.p_value, verdict.statistic, verdict.reason)
                return 0
            return int(self._record(conn, compiled, split, verdict, arms, now))

    def _record(
        self,
        conn: Connection,
        compiled: CompiledScenario,
        split: CompiledSplit,
        verdict: Verdict,
        arms: Sequence[ArmTally],
        now: datetime,
    ) -> bool:
        assert split.key is not None and split.plan is not None
        interval = verdict.interval
        values = {
            "status": verdict.status,
            "winner": verdict.winner,
            "route_to": verdict.route_to,
            "effect": verdict.effect,
            "interval_low": interval.low if interval else None,
            "interval_high": interval.high if interval else None,
            "p_value": verdict.p_value,
            "statistic": verdict.statistic,
            "reason": verdict.reason,
        }
        audit = {
            "experiment": split.key,
            "scenario": compiled.id,
            "step": split.step,
            **values,
            "level": split.plan.level,
            "arms": {a.name: {"assigned": a.assigned, "converted": a.converted} for a in arms},
        }
        if not self.store.experiments.decide(conn, split.key, now, values, audit):
            return False
        owner = compiled.scenario.owner
        if owner:
            link = f"{self.base_url}/scenarios/{compiled.id}"
            subject, text = decision_email(
                compiled.scenario.name, split.step, goal_text(split), split.plan, verdict, arms, now, link
            )
            html = '<pre style="font-family: Helvetica, Arial, sans-serif">' + escape(text) + "</pre>"
            self.store.notifications.add(
                conn,
                [
                    {
                        "key": f"experiment:{split.key}"[:100],
                        "kind": NotificationKind.MESSAGE,
                        "lead_id": None,
                        "target": owner,
                        "subject": subject,
                        "payload": {"text": text, "html": html},
                        "status": NotificationStatus.PENDING,
                        "attempts": 0,
                        "created_at": now,
                        "next_attempt_at": now,
                    }
                ],
            )
        return True


def goal_text(split: CompiledSplit) -> str:
    goal = split.goal
    if goal is None:
        return ""
    what = {"click": "a click on an email of this journey", "became_hot": "becoming hot", "converted": "converting"}
    text = what.get(goal.kind) or f"a {goal.event} event" + (f" where {goal.where.source}" if goal.where else "")
    return f"{text} within {goal.within.days} days" if goal.within.days else f"{text} within {goal.within}"
