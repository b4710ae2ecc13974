"""Drift: promoted leads that sales rejected, grouped by the rules that made them hot.

For every promotion to hot, the score is replayed at the moment of promotion; each rule that
contributed points (fit rules that matched, engagement rules that scored) is credited with
the promotion, and with a rejection when sales rejected the lead before it was promoted
again. A rule whose promotions sales keeps rejecting is a rule to revisit.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from dataclasses import dataclass, field

from nurture.analytics.history import History, score_at
from nurture.scoring.engine import CompiledScoring
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


def drift(scoring: CompiledScoring, history: History) -> DriftReport:
    rules: dict[str, RuleDrift] = {}
    promotions = rejected_total = 0
    for lead in history.leads.values():
        colleagues = None
        for index, change in enumerate(lead.changes):
            if change.to_stage != Stage.HOT or not history.replayable(change.at):
                continue
            promotions += 1
            if colleagues is None:
                colleagues = history.colleague_events(lead)
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
            for name, kind in credited.items():
                entry = rules.setdefault(name, RuleDrift(name, kind))
                entry.promoted += 1
                if verdict is not None and verdict.to_stage == "rejected":
                    entry.rejected += 1
                    entry.reasons[verdict.reason.strip().lower()] += 1
                elif verdict is not None:
                    entry.accepted += 1
    ordered = sorted(rules.values(), key=lambda r: (-r.rejection_rate, -r.rejected, r.rule))
    return DriftReport(promotions, rejected_total, ordered)
