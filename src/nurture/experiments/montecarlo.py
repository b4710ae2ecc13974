"""Seeded simulations of experiments watched after every tick: error rate and power of a plan.

Each simulated experiment gives every arm `leads_per_tick` new leads per tick, each reaching
the goal with its arm's true rate, and asks `decide.evaluate` (the same function the daemon
uses) for a verdict after every tick, stopping at the first decision. Over many experiments
this measures what a user of the plan would live through: how often identical arms produce a
"winner" (the false-winner rate, to compare with α), and how often a real lift is found
(power). `rule="peeking"` replaces the plan with a fixed-horizon z-test looked at after every
tick, the common mistake the sequential methods exist to avoid.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Literal

import numpy as np

from nurture.experiments import stats
from nurture.experiments.decide import evaluate
from nurture.experiments.plan import ArmTally, Plan

START = datetime(2026, 1, 5, tzinfo=UTC)
Rule = Literal["plan", "peeking"]


@dataclass
class SimulationResult:
    experiments: int
    winners: Counter[str | None] = field(default_factory=Counter)  # arm name, or None for no winner
    decided_at: list[int] = field(default_factory=list)  # tick of each decision

    def share(self, arm: str | None) -> float:
        return self.winners[arm] / self.experiments

    @property
    def any_winner(self) -> int:
        return sum(count for arm, count in self.winners.items() if arm is not None)


def arm_names(count: int) -> list[str]:
    return [chr(ord("a") + i) for i in range(count)]


def simulate(
    plan: Plan,
    rates: Sequence[float],
    *,
    experiments: int,
    ticks: int,
    leads_per_tick: int,
    seed: int,
    rule: Rule = "plan",
) -> SimulationResult:
    """Run `experiments` independent experiments of `len(rates)` arms for up to `ticks` looks."""
    rng = np.random.default_rng(seed)
    names = arm_names(len(rates))
    result = SimulationResult(experiments)
    # Draw every conversion up front: (experiment, tick, arm) → conversions that tick.
    draws = rng.binomial(leads_per_tick, np.asarray(rates, dtype=float), size=(experiments, ticks, len(rates)))
    totals = np.cumsum(draws, axis=1)
    for index in range(experiments):
        winner: str | None = None
        for tick in range(ticks):
            assigned = leads_per_tick * (tick + 1)
            converted = totals[index, tick]
            winner = _look(plan, names, assigned, converted, tick, rule)
            if winner is not None:
                result.decided_at.append(tick + 1)
                break
        result.winners[winner] += 1
    return result


def _look(plan: Plan, names: list[str], assigned: int, converted: np.ndarray, tick: int, rule: Rule) -> str | None:
    if rule == "peeking":
        if assigned < plan.min_per_arm:
            return None
        x_a, x_b = int(converted[0]), int(converted[1])
        if stats.z_test_p_value(assigned, x_a, assigned, x_b) < plan.alpha:
            return names[1] if x_b > x_a else names[0]
        return None
    arms = [ArmTally(name, assigned, int(x)) for name, x in zip(names, converted, strict=True)]
    verdict = evaluate(plan, arms, START, START + timedelta(days=tick + 1))
    return verdict.winner


def binomial_upper(rate: float, trials: int, sigmas: float = 3.0) -> float:
    """`rate`·`trials` plus `sigmas` binomial standard deviations: a count at or below it is
    consistent with a true rate of at most `rate`."""
    return float(rate * trials + sigmas * (rate * (1 - rate) * trials) ** 0.5)


def bayesian_calibration(
    plan: Plan, *, experiments: int, ticks: int, leads_per_tick: int, seed: int, arms: int = 2
) -> tuple[int, int]:
    """Draw each experiment's true rates from the plan's prior, watch it after every tick,
    and return (decided experiments, of which the winner was truly the best arm)."""
    rng = np.random.default_rng(seed)
    names = arm_names(arms)
    decided = right = 0
    for _ in range(experiments):
        rates = rng.beta(plan.prior[0], plan.prior[1], size=arms)
        draws = np.cumsum(rng.binomial(leads_per_tick, rates, size=(ticks, arms)), axis=0)
        for tick in range(ticks):
            winner = _look(plan, names, leads_per_tick * (tick + 1), draws[tick], tick, "plan")
            if winner is not None:
                decided += 1
                right += int(names.index(winner) == int(np.argmax(rates)))
                break
    return decided, right
