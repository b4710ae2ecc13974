"""Drift: promoted leads that sales rejected, grouped by the rules that made them hot.

For every promotion to hot, the score is replayed at the moment of promotion; each rule that
contributed points (fit rules that matched, engagement rules that scored) is credited with
the promotion, and with a rejection when sales rejected the lead before it was promoted
again. A rule whose promotions sales keeps rejecting is a rule to revisit.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from nurture.analytics.history import History, chunks, score_at
from nurture.scoring.engine import CompiledScoring
from nurture.store.reports import HistoryScope
from nurture.vocabulary import Stage


@dataclass
class RuleDrift:
    rule: str
    kind: str
    promoted: int = 0
    rejected: int = 0
    accepted: int = 0
    reasons: Counter[str] = field(default_factory=Counter)

    @property
    def rejection_rate(self) -> float:
        return self.rejected / self.promoted if self.promoted else 0.0


@dataclass
class DriftReport:
    promotions: int
    rejected: int
    rules: list[RuleDrift]


def scope() -> HistoryScope:
    """The leads `drift` looks at (ever promoted to hot), for reading only those."""
    return HistoryScope(moved_to=Stage.HOT.value)


def drift(scoring: CompiledScoring, history: History | Iterable[History]) -> DriftReport:
    """Folded over the history a chunk at a time. Chunks come in any order of leads, so what
    depends on order (a rule's kind, the order of equally frequent reasons) follows the first
    promotion in lead id order, as when every lead is read at once."""
    rules: dict[str, RuleDrift] = {}
    first_seen: dict[str, tuple[int, int]] = {}
    reasons: dict[str, dict[str, list[Any]]] = defaultdict(dict)  # rule → reason → [count, first seen]
    promotions = rejected_total = 0
    for chunk in chunks(history):
        for lead in chunk.leads.values():
            colleagues = None
            for index, change in enumerate(lead.changes):
                if change.to_stage != Stage.HOT or not chunk.replayable(change.at):
                    continue
                promotions += 1
                if colleagues is None:
                    colleagues = chunk.colleague_events(lead)
                result = score_at(scoring, lead, change.at, colleagues)
                verdict = None
                for later in lead.changes[index + 1 :]:
                    if later.to_stage == Stage.HOT:
                        break
                    if later.to_stage in ("rejected", "accepted", "customer"):
                        verdict = later
                        break
                rejected_total += verdict is not None and verdict.to_stage == "rejected"
                credited: dict[str, str] = defaultdict(str)
                for c in result.contributions:
                    if c.points > 0:
                        credited[c.rule] = c.kind
                seen = (lead.id, index)
                for name, kind in credited.items():
                    entry = rules.setdefault(name, RuleDrift(name, kind))
                    if seen < first_seen.setdefault(name, seen):
                        entry.kind, first_seen[name] = kind, seen
                    entry.promoted += 1
                    if verdict is not None and verdict.to_stage == "rejected":
                        entry.rejected += 1
                        tally = reasons[name].setdefault(verdict.reason.strip().lower(), [0, seen])
                        tally[0] += 1
                        tally[1] = min(tally[1], seen)
                    elif verdict is not None:
                        entry.accepted += 1
    for name, found in reasons.items():
        rules[name].reasons = Counter(
            {reason: n for reason, (n, _seen) in sorted(found.items(), key=lambda item: item[1][1])}
        )
    ordered = sorted(rules.values(), key=lambda r: (-r.rejection_rate, -r.rejected, r.rule))
    return DriftReport(promotions, rejected_total, ordered)
