"""The reputation guard pauses a scenario whose recent sends draw complaints or bounce."""

from __future__ import annotations

from nurture.feedback.reputation import Outcomes, ReputationPolicy, judge

POLICY = ReputationPolicy()


def test_clean_scenario_keeps_sending() -> None:
    assert not judge(Outcomes(1000, delivered=990, hard_bounces=10, complaints=2), POLICY).pause


def test_complaints_over_three_per_thousand_pause() -> None:
    verdict = judge(Outcomes(1000, complaints=4), POLICY)
    assert verdict.pause and verdict.reasons == ("complaint rate 0.40% over the last 1000 sends exceeds 0.30%",)
    assert not judge(Outcomes(1000, complaints=3), POLICY).pause  # at the limit is not over it


def test_hard_bounces_over_five_percent_pause() -> None:
    verdict = judge(Outcomes(200, hard_bounces=11), POLICY)
    assert verdict.pause and "hard-bounce rate 5.50%" in verdict.reasons[0]


def test_both_reasons_are_given() -> None:
    assert len(judge(Outcomes(500, hard_bounces=50, complaints=5), POLICY).reasons) == 2


def test_too_few_sends_are_not_judged() -> None:
    assert not judge(Outcomes(99, complaints=50), POLICY).pause
    assert judge(Outcomes(10, complaints=1), ReputationPolicy(min_sends=10)).pause


def test_thresholds_are_configurable() -> None:
    strict = ReputationPolicy(max_complaint_rate=0.001, max_hard_bounce_rate=0.02)
    assert judge(Outcomes(1000, complaints=2), strict).pause
    assert judge(Outcomes(1000, hard_bounces=21), strict).pause


def test_rates_for_the_dashboard() -> None:
    rates = Outcomes(200, delivered=180, hard_bounces=4, soft_bounces=6, complaints=1, unsubscribes=2).rates
    assert rates == {
        "delivered": 0.9,
        "hard_bounce": 0.02,
        "soft_bounce": 0.03,
        "complaint": 0.005,
        "unsubscribe": 0.01,
    }
    assert Outcomes(0).rates["complaint"] == 0.0
