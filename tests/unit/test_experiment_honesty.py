"""Statistical honesty, by seeded simulation: experiments watched after every tick.

Each simulated experiment gives every arm 25 new leads a day and asks the product's own
decision function for a verdict every day, stopping at the first winner, as the daemon does.
The bounds allow three binomial standard deviations over the stated rate, so a correct
method passes whatever the seed, and a method that peeks fails by a wide margin (the last
tests show that the same check does catch a fixed-horizon test looked at every day).
Larger runs: `python bench/experiments.py`.
"""

from __future__ import annotations

from datetime import timedelta

import pytest

from nurture.experiments import stats
from nurture.experiments.montecarlo import bayesian_calibration, binomial_upper, simulate
from nurture.experiments.plan import Plan

LONG = timedelta(days=10_000)  # the simulations end by their number of looks, not by the plan
PLAN = Plan(method="msprt", alpha=0.05, effect=0.05, min_per_arm=100, max_duration=LONG)
EXPERIMENTS, LOOKS, DAILY = 400, 40, 25


@pytest.mark.parametrize("base", [0.05, 0.2])
def test_identical_arms_produce_false_winners_at_most_alpha_of_the_time(base: float) -> None:
    result = simulate(PLAN, [base, base], experiments=EXPERIMENTS, ticks=LOOKS, leads_per_tick=DAILY, seed=11)
    assert result.any_winner <= binomial_upper(PLAN.alpha, EXPERIMENTS), result.winners


def test_three_identical_arms_stay_within_alpha_as_well() -> None:
    result = simulate(PLAN, [0.1, 0.1, 0.1], experiments=300, ticks=LOOKS, leads_per_tick=DAILY, seed=12)
    assert result.any_winner <= binomial_upper(PLAN.alpha, 300), result.winners


def test_a_planted_lift_is_found_in_the_right_arm_with_the_stated_power() -> None:
    runs, looks, daily = 200, 40, 50
    stated = stats.msprt_power(0.10, 0.05, looks * daily, tau=PLAN.effect, alpha=PLAN.alpha)
    assert stated > 0.9
    result = simulate(PLAN, [0.10, 0.15], experiments=runs, ticks=looks, leads_per_tick=daily, seed=13)
    # At least the stated power, less three standard deviations of a binomial count.
    assert result.winners["b"] >= stated * runs - 3 * (stated * (1 - stated) * runs) ** 0.5, result.winners
    assert result.winners["a"] <= binomial_upper(PLAN.alpha / 2, runs), result.winners


def test_a_planted_lift_in_the_third_of_three_arms_is_found_there() -> None:
    result = simulate(PLAN, [0.10, 0.10, 0.17], experiments=150, ticks=40, leads_per_tick=50, seed=14)
    assert result.winners["c"] >= 0.8 * 150, result.winners
    assert result.winners["a"] + result.winners["b"] <= binomial_upper(PLAN.alpha, 150), result.winners


def test_peeking_at_a_fixed_horizon_test_every_day_would_exceed_alpha_in_the_same_simulation() -> None:
    """The check above catches a test that peeks: the classical z-test, looked at after every
    tick of the same simulation and stopped at the first p < α, gives far more false winners."""
    result = simulate(
        PLAN, [0.05, 0.05], experiments=EXPERIMENTS, ticks=LOOKS, leads_per_tick=DAILY, seed=11, rule="peeking"
    )
    assert result.any_winner > binomial_upper(PLAN.alpha, EXPERIMENTS), result.winners
    looked_once = simulate(
        PLAN, [0.05, 0.05], experiments=EXPERIMENTS, ticks=1, leads_per_tick=LOOKS * DAILY, seed=11, rule="peeking"
    )
    assert looked_once.any_winner <= binomial_upper(PLAN.alpha, EXPERIMENTS), looked_once.winners


def test_bayesian_winners_are_the_best_arm_at_least_as_often_as_the_threshold_says() -> None:
    """The Bayesian rule's guarantee: when arms' true rates come from its prior, the arm it
    declares (watched daily) is the best one with probability ≥ threshold."""
    plan = Plan(method="bayesian", threshold=0.95, prior=(2.0, 18.0), min_per_arm=50, max_duration=LONG)
    decided, right = bayesian_calibration(plan, experiments=200, ticks=30, leads_per_tick=20, seed=15)
    assert decided >= 100
    # right/decided ≥ 0.95, less three standard deviations.
    assert right >= 0.95 * decided - 3 * (0.95 * 0.05 * decided) ** 0.5, (decided, right)
