"""What an experiment is asked to do (its plan) and what it has seen (per-arm tallies).

Kept apart from the statistics so that compiling a scenario does not import SciPy.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import Literal

Method = Literal["msprt", "bayesian"]


@dataclass(frozen=True, slots=True)
class Plan:
    """How an experiment decides (from the scenario's `experiment:`)."""

    method: Method = "msprt"
    alpha: float = 0.05
    effect: float = 0.05  # mSPRT: the mixture's scale τ, the difference in rate it is quickest to find
    threshold: float = 0.95  # Bayesian: P(best) needed to declare a winner
    prior: tuple[float, float] = (1.0, 1.0)
    min_per_arm: int = 100
    max_duration: timedelta = timedelta(days=30)

    def comparison_alpha(self, arms: int) -> float:
        return self.alpha if arms <= 2 else self.alpha / arms

    @property
    def level(self) -> float:
        """The level of the intervals reported with a decision."""
        return 1 - self.alpha if self.method == "msprt" else self.threshold


@dataclass(frozen=True, slots=True)
class ArmTally:
    """One arm's counts so far: leads randomised into it and those that reached the goal."""

    name: str
    assigned: int
    converted: int
    holdout: bool = False

    @property
    def rate(self) -> float:
        return self.converted / self.assigned if self.assigned else 0.0
