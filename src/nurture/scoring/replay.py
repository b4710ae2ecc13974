"""A lead's engagement replayed at many instants, with the verdicts of its events reused.

`CompiledScoring.evaluate` at one instant classifies every event of the lead's lookback
window, and its colleagues' as one stream, then sums their decayed, capped points. Replaying
a lead at each of its events' instants that way classifies the same events again and again.

Verdicts are not fixed per event: an event's verdict depends on the other events of the
window (a click seconds before a request for the same send's hidden link, a burst of links,
repeats of one link), so an event near the window's edges may be judged differently at
different instants. But they depend only on events of the same send less than
`D = max(honeypot_seconds, burst_seconds, repeat_seconds)` apart, through chains of such
neighbours: the events of one send split into *clusters* wherever two consecutive ones are
more than D apart, and classifying any set of events gives each event the verdict that
classifying the part of its own cluster in the set gives it (no rule of `Classifier` reaches
across such a gap; events without a send are judged alone). So a cluster wholly inside the
window keeps the verdicts it has in the whole stream, computed once; a cluster cut by the
window's edges is classified as cut, and each cut is classified once.

The sums are the engine's own arithmetic, operation for operation in the same order (the
same floats, so the same rounding), over the window's events: `EngagementReplay.at(t)` is
`scoring.evaluate(fields, own, t, colleagues, engagement_since).engagement` for the events up
to `t`, which the analyses' tests check at every instant for random histories.
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right
from collections import ChainMap
from collections.abc import Hashable, MutableMapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any

from nurture.scenario.expr import EventRecord
from nurture.scoring.bots import _ref
from nurture.scoring.engine import _AT, CompiledScoring

_NO_SEND = object()
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
MICROSECOND = timedelta(microseconds=1)
ZERO = timedelta(0)
# A scored event: (stream index, at, at in microseconds, rule name, day, cap per day, cap total, points).
# Verdicts (human, machine, repeat) of a sequence of events classified together, by the
# events' identities: colleagues replayed in turn classify the same clusters once.
Verdicts = dict[tuple[int, ...], list[tuple[bool, bool, bool]]]
_Scored = tuple[int, datetime, int, str, date, int | None, int | None, int]


class _Stream:
    """Events in the order `_engagement` sees them (by time, ties as given), with what the
    sums need per event and verdicts per cluster piece, computed when first asked for."""

    def __init__(self, scoring: CompiledScoring, events: Sequence[EventRecord], shared: Verdicts) -> None:
        self.scoring = scoring
        self._shared = shared
        self.events = sorted(events, key=_AT)
        self.times = [e.at for e in self.events]
        guards = scoring.model.bots
        gap = timedelta(seconds=max(guards.honeypot_seconds, guards.burst_seconds, guards.repeat_seconds))
        cluster: list[int] = []
        members: list[list[int]] = []
        last: dict[Hashable, tuple[datetime, int]] = {}
        for index, event in enumerate(self.events):
            send = event.props.get("send")
            key = _ref(send) if send is not None else _NO_SEND
            seen = last.get(key) if key is not _NO_SEND else None
            if seen is not None and event.at - seen[0] <= gap:
                cid = seen[1]
                members[cid].append(index)
            else:
                cid = len(members)
                members.append([index])
            if key is not _NO_SEND:
                last[key] = (event.at, cid)
            cluster.append(cid)
        self.cluster = cluster
        self.members = members
        self.position = [0] * len(cluster)  # where each event stands in its cluster
        for indexes in members:
            for position, index in enumerate(indexes):
                self.position[index] = position
        self.first = [m[0] for m in members]
        self.last = [m[-1] for m in members]
        # Only events a rule scores can change the sums; the others' verdicts are never needed.
        # Decay is computed in whole microseconds when every time is UTC (as stored).
        self.whole_microseconds = all(t.utcoffset() == ZERO for t in self.times)
        self.scored: list[_Scored] = []
        for index, event in enumerate(self.events):
            rule = scoring._rule_for(event)
            if rule is not None:
                at = event.at
                at_us = (at - EPOCH) // MICROSECOND if self.whole_microseconds else 0
                self.scored.append(
                    (index, at, at_us, rule.name, at.date(), rule.cap_per_day, rule.cap_total, rule.points)
                )
        self.scored_index = [s[0] for s in self.scored]
        self.suspect_weight = scoring.model.bots.suspect_weight
        self.half_life_us = scoring.half_life // MICROSECOND
        self._sums: _Sums | None = None
        self._verdicts: dict[tuple[int, int, int], list[tuple[bool, bool, bool]]] = {}

    def _whole(self, cid: int) -> list[tuple[bool, bool, bool]]:
        """(human, machine, repeat) for each member of the cluster, classified together."""
        return self._piece(cid, 0, len(self.cluster))[1]

    def _piece(self, cid: int, low: int, high: int) -> tuple[int, list[tuple[bool, bool, bool]]]:
        """The position in the cluster of its first member at a stream index in [low, high),
        and (human, machine, repeat) for those members, classified together."""
        members = self.members[cid]
        start, stop = bisect_left(members, low), bisect_left(members, high)
        key = (cid, start, stop)
        found = self._verdicts.get(key)
        if found is None:
            events = [self.events[i] for i in members[start:stop]]
            shared = (id(self.scoring), *map(id, events))  # verdicts depend on the scoring's guards too
            found = self._shared.get(shared)
            if found is None:
                verdicts = self.scoring.classify(events)
                found = self._shared[shared] = [(v.kind == "human", v.kind == "machine", v.repeat) for v in verdicts]
            self._verdicts[key] = found
        return start, found

    def _verdict(self, index: int, low: int, high: int) -> tuple[bool, bool, bool]:
        """(human, machine, repeat) of the event at `index` when the window is [low, high)."""
        cid = self.cluster[index]
        if self.first[cid] >= low and self.last[cid] < high:
            return self._whole(cid)[self.position[index]]
        offset, piece = self._piece(cid, low, high)
        return piece[self.position[index] - offset]

    def _count(self, sums: _Sums, entry: _Scored, verdict: tuple[bool, bool, bool]) -> None:
        """`_engagement`'s caps for one event, in the window's order: what it is allowed."""
        human, machine, repeat = verdict
        if machine or repeat:
            return
        _index, at, at_us, name, day, cap_per_day, cap_total, rule_points = entry
        base = rule_points * (1.0 if human else self.suspect_weight)
        allowed = base
        per_day, per_rule_raw = sums.per_day, sums.per_rule_raw
        if cap_per_day is not None:
            allowed = min(allowed, cap_per_day - per_day.get((name, day), 0.0))
        if cap_total is not None:
            allowed = min(allowed, cap_total - per_rule_raw.get(name, 0.0))
        allowed = max(allowed, 0)
        if cap_per_day is not None:
            per_day[(name, day)] = per_day.get((name, day), 0.0) + allowed
        per_rule_raw[name] = per_rule_raw.get(name, 0.0) + allowed
        slot = sums.slots.get(name)
        if slot is None:
            slot = sums.slots[name] = len(sums.slots)
        sums.counted.append((allowed, at, at_us, slot))

    def points(self, low_at: datetime, now: datetime) -> float:
        """`CompiledScoring._engagement(events in [low_at, now], now)[0]`, the same floats.

        What each event is allowed under the caps depends only on the events before it in
        the window and on its verdict, which is settled once the window holds its whole
        cluster from `low` on; those events' allowances are kept (`_Sums`) while the window
        starts at the same event and only grows, so an instant computes the allowances of
        the few unsettled events and the decay of each counted one."""
        low = bisect_left(self.times, low_at)
        high = bisect_right(self.times, now)
        if low >= high:
            return 0
        sums = self._sums
        if sums is None or sums.low != low or sums.high > high:
            sums = self._sums = _Sums(low, high, bisect_left(self.scored_index, low))
        sums.high = high
        scored, cluster, last = self.scored, self.cluster, self.last
        end = bisect_left(self.scored_index, high)
        k = sums.next
        while k < end and last[cluster[scored[k][0]]] < high:
            self._count(sums, scored[k], self._verdict(scored[k][0], low, high))
            k += 1
        sums.next = k
        counted = sums.counted
        slots = len(sums.slots)
        if k < end:
            tail = _Sums(low, high, k)
            tail.per_day = ChainMap({}, sums.per_day)
            tail.per_rule_raw = ChainMap({}, sums.per_rule_raw)
            tail.slots = ChainMap({}, sums.slots)
            for entry in scored[k:end]:
                self._count(tail, entry, self._verdict(entry[0], low, high))
            counted = counted + tail.counted
            slots = len(tail.slots)
        per_rule_points = [0.0] * slots
        if self.whole_microseconds and now.utcoffset() == ZERO:
            # (now - at) / half_life is microseconds over microseconds, as timedelta divides.
            now_us = (now - EPOCH) // MICROSECOND
            half_life_us = self.half_life_us
            for allowed, _at, at_us, slot in counted:
                per_rule_points[slot] += allowed * 0.5 ** ((now_us - at_us) / half_life_us)
        else:
            half_life = self.scoring.half_life
            for allowed, at, _at_us, slot in counted:
                per_rule_points[slot] += allowed * 0.5 ** ((now - at) / half_life)
        return sum(per_rule_points)


@dataclass(eq=False)
class _Sums:
    """The caps' running state from the window's first event (`low`) on, and the counted
    events (allowed, at, at in microseconds, slot of its rule in the order rules first count)."""

    low: int
    high: int
    next: int  # the first scored event not yet counted
    per_day: MutableMapping[tuple[str, Any], float] = field(default_factory=dict)
    per_rule_raw: MutableMapping[str, float] = field(default_factory=dict)
    slots: MutableMapping[str, int] = field(default_factory=dict)
    counted: list[tuple[float, datetime, int, int]] = field(default_factory=list)


class EngagementReplay:
    """One lead's engagement at any instant, from its events and its colleagues' (one stream,
    as `evaluate` takes them), without classifying the same events at every instant."""

    def __init__(
        self,
        scoring: CompiledScoring,
        own: Sequence[EventRecord],
        colleagues: Sequence[EventRecord] = (),
        verdicts: Verdicts | None = None,
    ) -> None:
        """`verdicts`: a cache shared by the replays of one history's leads (keyed by the
        events' identities, so it must not outlive them), or None for one of its own."""
        self.scoring = scoring
        shared: Verdicts = {} if verdicts is None else verdicts
        self.own = _Stream(scoring, own, shared)
        self.colleagues = _Stream(scoring, colleagues, shared)

    def at(self, now: datetime, engagement_since: datetime | None = None) -> int:
        """`evaluate(fields, [own up to now], now, [colleagues' up to now], engagement_since).engagement`."""
        scoring = self.scoring
        low = now - scoring.lookback
        if engagement_since is not None and engagement_since > low:
            low = engagement_since
        own_points = self.own.points(low, now)
        account = scoring.model.account
        account_points = 0.0
        if account.weight > 0 and self.colleagues.times and self.colleagues.times[0] <= now:
            together = self.colleagues.points(low, now)
            if together <= 0:
                total: float = 0
            else:
                total = min(together, account.person_cap) if account.person_cap is not None else together
            uncapped = max(total - 0.0, 0.0) * account.weight
            account_points = min(uncapped, account.cap) if account.cap is not None else uncapped
        return round(own_points + account_points)
