"""The enrol job: put leads that meet a scenario's entry criteria into it.

Incremental runs look only at leads changed since the scenario's watermark; a full
sweep (at start and once a day) also catches criteria that turn true as time passes,
such as "no activity for 60 days". Whether a lead enrolled before may enter again is the
scenario's re-entry policy (`nurture.runtime.reentry`).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta

from nurture.clock import Clock
from nurture.consent.model import Regime, decide_enrolment
from nurture.errors import ExpressionError
from nurture.jobs.catalog import Catalog
from nurture.runtime.engine import start
from nurture.runtime.reentry import NO_HISTORY, Entry, decide_entry
from nurture.scenario.compiler import CompiledScenario
from nurture.scenario.expr import EventRecord, EventsView, Record
from nurture.scenario.model import Scenario
from nurture.scenario.programs import entry_verdict, exclusive
from nurture.store import Store
from nurture.store.leads import LeadRow, lead_view
from nurture.timeutil import parse_duration
from nurture.vocabulary import EnrolmentStatus

CHUNK = 1000
FULL_SWEEP_EVERY = timedelta(days=1)
# Stored as plain text: a database driver binds a str subclass more slowly, once per row.
_ACTIVE = EnrolmentStatus.ACTIVE.value
REREAD = timedelta(minutes=10)  # longer than a lead-writing transaction, plus clock skew between hosts


class Enroller:
    def __init__(
        self, store: Store, catalog: Catalog, clock: Clock, events_lookback: timedelta = timedelta(days=120)
    ) -> None:
        self.store = store
        self.catalog = catalog
        self.clock = clock
        self.events_lookback = events_lookback

    def run_once(self) -> dict[str, int]:
        now = self.clock.now()
        # Higher-priority programs first: a lead that qualifies for two exclusive ones at once
        # goes into the one that wins.
        ordered = sorted(self.catalog.current.items(), key=lambda item: -item[1].scenario.priority)
        enrolled = {}
        for sid, compiled in ordered:
            # One daemon of a cluster enrols into a scenario at a time: two runs at once could
            # each find a lead with no enrolment and both enrol it, the second after the first
            # had already finished (so no unique index stops it). The others skip this run.
            with self.store.cluster_lock(f"enrol:{sid}") as mine:
                enrolled[sid] = self._scenario(compiled, now) if mine else 0
        return enrolled

    def _programs(self, compiled: CompiledScenario) -> tuple[list[Scenario], frozenset[str], bool]:
        """(scenarios exclusive with this one, the project's suppression lists, whether list
        memberships matter): what entry decisions beyond `entry.when` need to know."""
        others = [c.scenario for c in self.catalog.current.values() if exclusive(compiled.scenario, c.scenario)]
        project = compiled.loaded.project
        suppression = project.suppression_lists if project is not None else frozenset()
        entry = compiled.scenario.entry
        return others, suppression, bool(suppression or entry.lists or entry.not_lists)

    def _scenario(self, compiled: CompiledScenario, now: datetime) -> int:
        key_mark, key_full = f"enrol:{compiled.id}:{compiled.version}", f"enrol-full:{compiled.id}"
        with self.store.reading() as conn:
            mark = self.store.settings.get(conn, key_mark)
            last_full = self.store.settings.get(conn, key_full)
        full = mark is None or last_full is None or datetime.fromisoformat(last_full) + FULL_SWEEP_EVERY <= now
        # Re-read a margin behind the mark: a lead written by a transaction that committed after
        # the last run began carries an earlier time than the mark. The history check makes
        # reading a lead twice harmless.
        since = None if full else datetime.fromisoformat(mark or "") - REREAD
        uses_events = compiled.entry_condition is not None and "events" in compiled.entry_condition.usage.names
        sources = set(compiled.scenario.entry.source)
        topic = compiled.scenario.topic
        policy = compiled.scenario.reentry
        cooldown = parse_duration(policy.cooldown) if policy.cooldown else None
        others, suppression, needs_lists = self._programs(compiled)
        by_id = {s.id: s for s in others}
        enrolled = 0
        after_id = 0
        while True:
            with self.store.transaction() as conn:
                chunk = self.store.enrolments.candidates(conn, since, after_id, CHUNK)
                if not chunk:
                    break
                after_id = chunk[-1]
                history = self.store.enrolments.history(conn, compiled.id, chunk)
                # Rule out leads by their enrolment history first: only the rest are read whole.
                decisions = {
                    lead_id: decide_entry(policy.policy, cooldown, history.get(lead_id, NO_HISTORY), now)
                    for lead_id in chunk
                }
                open_ids = [lead_id for lead_id, decision in decisions.items() if decision is not Entry.SKIP]
                if not open_ids:
                    continue
                rows = self.store.leads.in_(conn, open_ids)
                events = self.store.events.for_leads(conn, open_ids, now - self.events_lookback) if uses_events else {}
                memberships = self.store.lists.of(conn, [r.email for r in rows]) if needs_lists else {}
                elsewhere = self.store.enrolments.active_in(conn, [r.id for r in rows], list(by_id)) if others else {}
                confirmed = compiled.scenario.require_confirmed_consent
                consent = self.store.consents.for_leads(conn, open_ids) if confirmed else {}
                new: list[dict[str, object]] = []
                restarting: list[int] = []
                leaving: list[tuple[int, tuple[str, ...]]] = []
                for row in rows:
                    if sources and row.source not in sources:
                        continue
                    if confirmed and not decide_enrolment(consent.get(row.id, []), topic, True, Regime.OPT_IN).send:
                        continue
                    if not self._matches(compiled, row, events.get(row.id, []), now):
                        continue
                    if needs_lists or others:
                        verdict = entry_verdict(
                            compiled.scenario,
                            {"source": row.source},
                            lists=memberships.get(row.email, ()),
                            suppression=suppression,
                            active=[by_id[s] for s in sorted(elsewhere.get(row.id, ()))],
                        )
                        if not verdict.enters:
                            continue
                        if verdict.leaves:
                            leaving.append((row.id, verdict.leaves))
                    position = start(compiled, now)
                    if decisions[row.id] is Entry.RESTART:
                        restarting.append(row.id)
                    new.append(
                        {
                            "lead_id": row.id,
                            "scenario_id": compiled.id,
                            "scenario_version": compiled.version,
                            "state": position.state,
                            "status": _ACTIVE,
                            "seq": 0,
                            "entered_at": now,
                            "due_at": now,
                            "enrolled_at": now,
                        }
                    )
                self.store.enrolments.end_for_reentry(conn, compiled.id, restarting, now)
                enrolled += self.store.enrolments.enrol(conn, new)
                for lead_id, left in leaving:
                    reason = f"left for '{compiled.id}' (priority {compiled.scenario.priority})"
                    self.store.enrolments.leave(conn, lead_id, left, reason, now)
        with self.store.transaction() as conn:
            self.store.settings.put(conn, key_mark, now.isoformat())
            if full:
                self.store.settings.put(conn, key_full, now.isoformat())
        return enrolled

    @staticmethod
    def _matches(compiled: CompiledScenario, row: LeadRow, events: Sequence[EventRecord], now: datetime) -> bool:
        condition = compiled.entry_condition
        if condition is None:
            return True
        lead = lead_view(row._mapping)
        context = {
            "lead": Record(lead.fields),
            "score": Record(lead.score),
            "lifecycle": lead.lifecycle,
            "events": EventsView(events, now),
            "now": now,
        }
        try:
            return condition.test(context)
        except ExpressionError:
            return False
