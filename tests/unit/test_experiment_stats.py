"""The statistics of experiments: mSPRT, the Bayesian rule and the decision at one look."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from nurture.experiments import stats
from nurture.experiments.decide import evaluate, fallback_arm
from nurture.experiments.plan import ArmTally, Plan

NOW = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)


def test_mixture_ratio_matches_the_closed_form_of_the_normal_mixture() -> None:
    # Λ = ∫ φ(θ̂; θ, V) N(θ; 0, τ²) dθ / φ(θ̂; 0, V), integrated numerically.
    variance, estimate, tau = 0.0004, 0.03, 0.05
    theta = np.linspace(-1, 1, 400_001)
    likelihood = np.exp(-((estimate - theta) ** 2) / (2 * variance))
    prior = np.exp(-(theta**2) / (2 * tau**2)) / math.sqrt(2 * math.pi * tau**2)
    numeric = np.trapezoid(likelihood * prior, theta) / math.exp(-(estimate**2) / (2 * variance))
    assert stats.mixture_ratio(variance, estimate, tau) == pytest.approx(float(numeric), rel=1e-6)


def test_no_difference_gives_no_evidence_and_a_p_value_of_one() -> None:
    result = stats.msprt(500, 50, 500, 50, tau=0.05, alpha=0.05)
    assert result.difference == 0
    assert result.ratio < 1
    assert result.p_value == 1.0
    assert 0.0 in result.interval


def test_a_large_difference_is_found_and_its_interval_excludes_zero() -> None:
    result = stats.msprt(2000, 200, 2000, 300, tau=0.05, alpha=0.05)
    assert result.difference == pytest.approx(0.05)
    assert result.p_value < 0.05
    assert result.interval.low > 0
    assert 0.05 in result.interval


def test_the_always_valid_interval_is_wider_than_the_fixed_horizon_one() -> None:
    # The price of looking at any time: a confidence sequence is wider than a 95% Wald interval.
    result = stats.msprt(1000, 100, 1000, 130, tau=0.05, alpha=0.05)
    wald = 1.96 * math.sqrt(0.1 * 0.9 / 1000 + 0.13 * 0.87 / 1000)
    assert result.interval.high - result.interval.low > 2 * wald


def test_no_conversions_at_all_is_no_evidence_rather_than_a_division_by_zero() -> None:
    result = stats.msprt(300, 0, 300, 0, tau=0.05, alpha=0.05)
    assert result.ratio == 0.0 and result.p_value == 1.0
    assert stats.msprt(0, 0, 0, 0, tau=0.05, alpha=0.05).p_value == 1.0


def test_probability_best_agrees_with_posterior_draws() -> None:
    rng = np.random.default_rng(7)
    counts = [(400, 40), (400, 52), (380, 45)]
    draws = np.stack([rng.beta(1 + x, 1 + n - x, size=200_000) for n, x in counts])
    expected = np.bincount(np.argmax(draws, axis=0), minlength=3) / draws.shape[1]
    assert stats.probability_best(counts) == pytest.approx(list(expected), abs=0.01)
    assert sum(stats.probability_best(counts)) == pytest.approx(1.0)


def test_probability_best_copes_with_sharp_and_far_apart_posteriors() -> None:
    best = stats.probability_best([(100_000, 10_000), (100_000, 10_400)])
    assert best[1] > 0.99
    assert stats.probability_best([(50, 0), (50, 50)])[1] == pytest.approx(1.0, abs=1e-6)


def test_power_bound_grows_with_the_sample_and_the_lift() -> None:
    small = stats.msprt_power(0.1, 0.03, 500, tau=0.05, alpha=0.05)
    large = stats.msprt_power(0.1, 0.03, 5000, tau=0.05, alpha=0.05)
    bigger_lift = stats.msprt_power(0.1, 0.06, 500, tau=0.05, alpha=0.05)
    assert 0 < small < large <= 1
    assert bigger_lift > small
    assert stats.msprt_power(0.1, 0.0, 5000, tau=0.05, alpha=0.05) < 0.05


# -- the decision at one look ------------------------------------------------------------------


def test_nothing_is_decided_before_every_arm_has_its_minimum_sample() -> None:
    plan = Plan(min_per_arm=200)
    verdict = evaluate(plan, [ArmTally("a", 150, 0), ArmTally("b", 400, 200)], NOW, NOW)
    assert verdict.status == "running"
    assert verdict.winner is None
    assert "200 leads in every arm" in verdict.reason and "a" in verdict.reason


def test_msprt_declares_the_better_arm_with_effect_interval_and_statistic() -> None:
    verdict = evaluate(Plan(), [ArmTally("question", 2000, 200), ArmTally("value", 2000, 300)], NOW, NOW)
    assert verdict.status == "decided"
    assert verdict.winner == verdict.route_to == "value"
    assert verdict.versus == "question"
    assert verdict.effect == pytest.approx(0.05)
    assert verdict.interval is not None and verdict.interval.low > 0
    assert verdict.p_value is not None and verdict.p_value <= 0.05
    assert "mixture likelihood ratio" in verdict.statistic
    assert set(verdict.bands) == {"question", "value"}
    assert verdict.bands["value"].low < 0.15 < verdict.bands["value"].high


def test_with_three_arms_the_leader_must_beat_every_other_arm() -> None:
    # c is far ahead of a but not of b: no winner yet.
    arms = [ArmTally("a", 2000, 200), ArmTally("b", 2000, 290), ArmTally("c", 2000, 300)]
    verdict = evaluate(Plan(), arms, NOW, NOW)
    assert verdict.status == "running"
    assert verdict.versus == "b"
    assert "needs ≤ 0.0167" in verdict.statistic  # α/3 per comparison


def test_bayesian_rule_decides_at_its_threshold() -> None:
    plan = Plan(method="bayesian", threshold=0.95)
    close = evaluate(plan, [ArmTally("a", 500, 50), ArmTally("b", 500, 55)], NOW, NOW)
    clear = evaluate(plan, [ArmTally("a", 2000, 200), ArmTally("b", 2000, 260)], NOW, NOW)
    assert close.status == "running" and close.value < 0.95
    assert clear.status == "decided" and clear.winner == "b" and clear.value >= 0.95
    assert clear.interval is not None and clear.interval.low > 0
    assert clear.p_value is None
    assert "P('b' is best)" in clear.statistic


def test_an_experiment_without_a_winner_stops_at_its_maximum_duration_and_routes_to_the_control() -> None:
    plan = Plan(max_duration=timedelta(days=14))
    arms = [ArmTally("holdout", 500, 50, holdout=True), ArmTally("nurture", 500, 52)]
    running = evaluate(plan, arms, NOW - timedelta(days=13), NOW)
    stopped = evaluate(plan, arms, NOW - timedelta(days=14), NOW)
    assert running.status == "running" and running.route_to is None
    assert stopped.status == "stopped"
    assert stopped.winner is None
    assert stopped.route_to == "nurture"  # the first arm that is not a holdout
    assert "maximum duration (14 days)" in stopped.reason
    assert fallback_arm([ArmTally("x", 1, 0), ArmTally("y", 1, 0)]) == "x"


def test_a_winner_found_at_the_last_moment_is_a_decision_not_a_stop() -> None:
    plan = Plan(max_duration=timedelta(days=14))
    arms = [ArmTally("a", 2000, 200), ArmTally("b", 2000, 300)]
    assert evaluate(plan, arms, NOW - timedelta(days=20), NOW).status == "decided"


def test_one_arm_is_not_an_experiment() -> None:
    with pytest.raises(ValueError):
        evaluate(Plan(), [ArmTally("a", 10, 1)], NOW, NOW)


@given(st.integers(1, 5000), st.data(), st.integers(1, 5000), st.floats(0.001, 0.3), st.floats(0.01, 0.2))
def test_every_comparison_is_well_formed(n_a: int, data: st.DataObject, n_b: int, tau: float, alpha: float) -> None:
    x_a = data.draw(st.integers(0, n_a))
    x_b = data.draw(st.integers(0, n_b))
    result = stats.msprt(n_a, x_a, n_b, x_b, tau=tau, alpha=alpha)
    assert 0.0 <= result.p_value <= 1.0
    assert result.ratio >= 0.0
    assert result.difference in result.interval
    assert -1.0 <= result.interval.low <= result.interval.high <= 1.0
    best = stats.probability_best([(n_a, x_a), (n_b, x_b)])
    assert sum(best) == pytest.approx(1.0) and all(0.0 <= p <= 1.0 for p in best)
