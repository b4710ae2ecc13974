"""The advance job: claim due enrolments, step each lead, write results in one transaction."""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from nurture.clock import Clock
from nurture.experiments.goals import human_events
from nurture.jobs.catalog import Catalog
from nurture.lifecycle import hand_over, route_owner
from nurture.runtime import effects as fx
from nurture.runtime.arms import NO_EXPERIMENTS, ExperimentView
from nurture.runtime.engine import FrequencyCap, Position, StepResult, send_zone, step
from nurture.runtime.sendtime import HourProfile, SendTimeView, hour_profile, merge
from nurture.scenario.compiler import CompiledScenario
from nurture.scenario.expr import EventRecord
from nurture.scoring.engine import CompiledScoring
from nurture.scoring.model import Owner
from nurture.store import Store
from nurture.store.enrolments import Claimed, EnrollmentUpdate
from nurture.store.leads import LeadRow, lead_view
from nurture.timeutil import zone
from nurture.vocabulary import EnrolmentStatus, SendStatus

# Stored as plain text: a database driver binds a str subclass more slowly, once per row.
_PENDING = SendStatus.PENDING.value


@dataclass(frozen=True)
class AdvanceStats:
    claimed: int = 0
    applied: int = 0
    lost: int = 0
    emails: int = 0
    finished: int = 0


# Why a hand-off reached nobody, kept in the lead's audit log (validate rejects such a project,
# so this happens only with a scoring file removed under a running daemon).
NO_OWNER = "no scoring file routes hand-offs and the project has no default_owner"


class Advancer:
    def __init__(
        self,
        store: Store,
        catalog: Catalog,
        clock: Clock,
        *,
        worker: str,
        batch_size: int = 500,
        lease: timedelta = timedelta(minutes=2),
        cap: FrequencyCap | None = None,
        events_lookback: timedelta = timedelta(days=120),
    ) -> None:
        self.store = store
        self.catalog = catalog
        self.clock = clock
        self.worker = worker
        self.batch_size = batch_size
        self.lease = lease
        self.cap = cap or FrequencyCap()
        self.events_lookback = events_lookback
        self._audiences: dict[str, tuple[datetime, HourProfile]] = {}

    def run_once(self) -> AdvanceStats:
        """One batch: at most `batch_size` due enrolments."""
        now = self.clock.now()
        counts = {"emails": 0, "finished": 0}

        routes = self._routes()

        def step_batch(
            claimed: list[Claimed],
            leads: dict[int, LeadRow],
            events: dict[int, list[EventRecord]],
            sends: dict[int, list[datetime]],
            arms: dict[int, dict[str, str]],
        ) -> list[EnrollmentUpdate]:
            updates = []
            profiles = SendTimes(self, claimed, leads, events, now)
            for item in claimed:
                row = leads.get(item.lead_id)
                if row is None:
                    continue
                recent = sends.setdefault(item.lead_id, [])
                view = ExperimentView(routes, arms.get(item.lead_id, {}))
                try:
                    update = self._step(
                        item, row, events.get(item.lead_id, []), recent, now, view, profiles.view(item, row)
                    )
                except Exception as exc:  # one lead's broken data or step stops that lead alone
                    update = self._parked(item, exc, now)
                # Later enrolments of the same lead in this batch count these sends toward the cap.
                recent += [now] * len(update.sends)
                counts["emails"] += len(update.sends)
                counts["finished"] += update.status not in (EnrolmentStatus.ACTIVE, EnrolmentStatus.PARKED)
                updates.append(update)
            return updates

        claimed, applied, lost = self.store.enrolments.advance(
            self.worker,
            now,
            self.batch_size,
            self.lease,
            now - self.events_lookback,
            now - self.cap.period,
            self._reads,
            step_batch,
        )
        return AdvanceStats(claimed, applied, lost, counts["emails"], counts["finished"])

    def _reads(self, item: Claimed) -> tuple[bool, bool, Collection[str]]:
        compiled = self.catalog.get(item.scenario_id, item.scenario_version)
        return compiled.reads_events, compiled.sends_email, compiled.experiments.keys()

    def _routes(self) -> dict[str, str]:
        """Where new leads go in the experiments that are over (read once per batch)."""
        keys = {key for compiled in self.catalog.current.values() for key in compiled.experiments}
        if not keys:
            return {}
        with self.store.reading() as conn:
            return self.store.experiments.routes(conn, keys)

    def audience_profile(self, compiled: CompiledScenario, now: datetime) -> HourProfile:
        """The scenario audience's opens and clicks by local hour (bot-free), rebuilt daily."""
        cached = self._audiences.get(compiled.id)
        if cached is not None and now - cached[0] < timedelta(days=1):
            return cached[1]
        with self.store.reading() as conn:
            rows = self.store.experiments.engagement_of_audience(conn, compiled.id, now - self.events_lookback)
        profile = people_profile(rows, self.catalog.scoring, compiled.fallback_zone, "")
        self._audiences[compiled.id] = (now, profile)
        return profile

    def run_until_idle(self, max_batches: int = 10_000, stopping: Callable[[], bool] | None = None) -> AdvanceStats:
        """Advance batch after batch until none is due; when `stopping` turns true, after the
        batch under way."""
        total = AdvanceStats()
        for _ in range(max_batches):
            if total.claimed and stopping is not None and stopping():
                break
            stats = self.run_once()
            if stats.claimed == 0:
                break
            total = AdvanceStats(
                *(
                    a + b
                    for a, b in zip(
                        (total.claimed, total.applied, total.lost, total.emails, total.finished),
                        (stats.claimed, stats.applied, stats.lost, stats.emails, stats.finished),
                        strict=True,
                    )
                )
            )
        return total

    def _hand_over(
        self,
        effect: fx.NotifySales,
        compiled: CompiledScenario,
        row: LeadRow,
        events: list[EventRecord],
        now: datetime,
    ) -> tuple[list[dict[str, Any]], Owner | None]:
        """A scenario's notify_sales step: the same email and webhook as a promotion, to the
        lead's owner (or the routed one, or the project's default owner), keyed by the step
        visit so it goes out once. No owner: no rows, and the caller records why."""
        scoring = self.catalog.scoring
        project = compiled.loaded.project
        owner: Owner | None = None
        if scoring is not None:
            owner = next((o for o in scoring.model.routing.owners if o.email == row.owner), None)
            if owner is None:
                owner, _ = route_owner(scoring, row, row.id)
        elif project is not None and project.default_owner is not None:
            owner = Owner(name=project.default_owner.name, email=project.default_owner.email)
        if owner is None:
            return [], None
        name = " ".join(p for p in (row.first_name, row.last_name) if p) or row.email
        score = {"fit": row.score_fit, "grade": row.grade, "engagement": row.score_engagement}
        rows = hand_over(
            scoring,
            row,
            owner,
            f"step:{effect.idempotency_key}",
            f"Handed over by '{compiled.scenario.name}': {name}, {row.company or 'unknown company'}",
            [effect.message],
            events,
            score,
            now,
            "lead.handed_over",
        )
        return rows, owner

    def _parked(self, item: Claimed, exc: Exception, now: datetime) -> EnrollmentUpdate:
        """The enrolment of a lead whose step raised: it is parked where it was, with the error
        (in `nurture status`, `leads show` and an audit entry), and stays in its scenario
        without being stepped again; the rest of the batch goes on. Fix the lead's data (or
        the scenario), then `nurture leads resume` steps it again from where it stopped."""
        error = f"step failed at '{item.state}': {type(exc).__name__}: {exc}"[:500]
        return EnrollmentUpdate(
            id=item.id,
            old_seq=item.seq,
            state=item.state,
            status=EnrolmentStatus.PARKED,
            seq=item.seq + 1,
            entered_at=item.entered_at,
            due_at=item.due_at,  # still due when resumed (only active enrolments are claimed)
            finished_at=None,
            exit_reason=error[:200],
            sends=[],
            lead_changes=None,
            audit={
                "at": now,
                "lead_id": item.lead_id,
                "enrollment_id": item.id,
                "kind": "step_failed",
                "detail": {"scenario": item.scenario_id, "at_step": item.state, "error": error},
            },
            lead_id=item.lead_id,
            scenario=(item.scenario_id, item.scenario_version),
        )

    def _step(
        self,
        item: Claimed,
        row: LeadRow,
        events: list[EventRecord],
        sends: list[datetime],
        now: datetime,
        experiments: ExperimentView = NO_EXPERIMENTS,
        send_times: SendTimeView | None = None,
    ) -> EnrollmentUpdate:
        compiled = self.catalog.get(item.scenario_id, item.scenario_version)
        position = Position(item.state, item.entered_at, item.due_at, item.seq, item.status)
        result = step(
            compiled,
            position,
            lead_view(row._mapping),
            events,
            now,
            recent_sends=sends,
            cap=self.cap,
            ref=f"enrollment:{item.id}",
            experiments=experiments,
            send_times=send_times,
        )
        new = result.position
        update = EnrollmentUpdate(
            id=item.id,
            old_seq=item.seq,
            state=new.state,
            status=new.status,
            seq=new.seq,
            entered_at=new.entered_at,
            due_at=new.due_at,
            finished_at=None,
            exit_reason=None,
            sends=[],
            lead_changes=None,
            audit=None,
            lead_id=item.lead_id,
            scenario=(compiled.id, compiled.version),
            entered=result.entered,
        )
        # The usual step only moves the lead on to its next wait: nothing more to record.
        if result.effects:
            self._record_effects(update, result, compiled, item, row, events, now)
        return update

    def _record_effects(
        self,
        update: EnrollmentUpdate,
        result: StepResult,
        compiled: CompiledScenario,
        item: Claimed,
        row: LeadRow,
        events: list[EventRecord],
        now: datetime,
    ) -> None:
        """Fill `update` with what the step did: emails, lead changes, notifications, leaving."""
        outbox = update.sends
        changes: dict[str, Any] = {"set": {}, "add_tags": [], "remove_tags": [], "score_delta": 0}
        notified = []
        for effect in result.effects:
            if isinstance(effect, fx.SendEmail):
                outbox.append(
                    {
                        "idempotency_key": effect.idempotency_key,
                        "kind": "email",
                        "lead_id": item.lead_id,
                        "enrollment_id": item.id,
                        "scenario_id": compiled.id,
                        "scenario_version": compiled.version,
                        "step": effect.step,
                        "template": effect.template,
                        "subject": effect.subject,
                        "sender": effect.sender,
                        "reply_to": effect.reply_to,
                        "status": _PENDING,
                        "attempts": 0,
                        "created_at": now,
                        "next_attempt_at": now,
                        "timing": effect.timing,
                    }
                )
            elif isinstance(effect, fx.UpdateLead):
                changes["set"].update(effect.set)
                changes["add_tags"] += effect.add_tags
                changes["remove_tags"] += effect.remove_tags
                changes["score_delta"] += effect.score_delta
            elif isinstance(effect, fx.NotifySales):
                rows, owner = self._hand_over(effect, compiled, row, events, now)
                handed: dict[str, Any] = {"step": effect.step, "message": effect.message, "key": effect.idempotency_key}
                if owner is None:
                    handed["undelivered"] = NO_OWNER
                else:
                    handed["owner"] = owner.email
                    if row.owner != owner.email:
                        changes["set"]["owner"] = owner.email
                notified.append(handed)
                update.notifications += rows
            elif isinstance(effect, fx.Finished):
                update.finished_at, update.exit_reason = effect.at, effect.reason
            elif isinstance(effect, fx.AssignArm):
                update.assignments.append(
                    {
                        "experiment_key": effect.experiment,
                        "scenario_id": compiled.id,
                        "step": effect.step,
                        "lead_id": item.lead_id,
                        "enrollment_id": item.id,
                        "arm": effect.arm,
                        "randomised": effect.randomised,
                        "assigned_at": effect.at,
                    }
                )
        if changes["set"] or changes["add_tags"] or changes["remove_tags"] or changes["score_delta"]:
            update.lead_changes = changes
        # The audit log records what a step did to or for the lead (emails, notifications,
        # field changes, leaving), with the decisions that led there. A step that only moved
        # the lead to its next wait is visible in the enrolment row and is not logged.
        update.audit = {
            "at": now,
            "lead_id": item.lead_id,
            "enrollment_id": item.id,
            "kind": "step",
            "detail": {
                "scenario": compiled.id,
                "from": item.state,
                "to": update.state,
                "decisions": [d.text for d in result.decisions],
                "emails": [s["template"] for s in outbox],
                "notify_sales": notified,
            },
        }


def people_profile(
    rows: Iterable[tuple[int, str | None, EventRecord]],
    scoring: CompiledScoring | None,
    fallback_zone: str,
    source: str,
) -> HourProfile:
    """Opens and clicks of several people by each one's local hour, without machine activity."""
    by_lead: dict[int, tuple[str | None, list[EventRecord]]] = {}
    for lead_id, zone_name, event in rows:
        by_lead.setdefault(lead_id, (zone_name, []))[1].append(event)
    profiles = []
    for zone_name, events in by_lead.values():
        events.sort(key=lambda e: e.at)
        profiles.append(hour_profile(human_events(scoring, events), zone(zone_name, fallback_zone), source))
    return merge(profiles, source)


class SendTimes:
    """The hour profiles `send_time: optimal` learns from, for one batch: each lead's own
    (from the events already loaded), its account's (colleagues at the same company, one query
    for the batch) and the scenario audience's (cached by the advancer)."""

    def __init__(
        self,
        advancer: Advancer,
        claimed: Sequence[Claimed],
        leads: Mapping[int, LeadRow],
        events: Mapping[int, list[EventRecord]],
        now: datetime,
    ) -> None:
        self.advancer = advancer
        self.events = events
        self.now = now
        self.accounts: dict[str, list[tuple[int, str | None, EventRecord]]] = {}
        companies = set()
        for item in claimed:
            compiled = advancer.catalog.get(item.scenario_id, item.scenario_version)
            row = leads.get(item.lead_id)
            if compiled.optimal_send_steps and row is not None and row.company:
                companies.add(str(row.company).lower())
        if companies:
            with advancer.store.reading() as conn:
                self.accounts = advancer.store.experiments.engagement_of_accounts(
                    conn, companies, now - advancer.events_lookback
                )

    def view(self, item: Claimed, row: LeadRow) -> SendTimeView | None:
        compiled = self.advancer.catalog.get(item.scenario_id, item.scenario_version)
        if not compiled.optimal_send_steps:
            return None
        scoring = self.advancer.catalog.scoring
        lead = lead_view(row._mapping)
        tz = zone(send_zone(compiled, lead))
        own = hour_profile(human_events(scoring, self.events.get(item.lead_id, [])), tz, "")
        account = None
        if row.company:
            colleagues = [r for r in self.accounts.get(str(row.company).lower(), []) if r[0] != item.lead_id]
            account = people_profile(colleagues, scoring, compiled.fallback_zone, str(row.company))
        audience = self.advancer.audience_profile(compiled, self.now)
        return SendTimeView(own, account, audience)
