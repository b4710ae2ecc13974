"""The decision of an experiment at one look: running, decided (with a winner), or stopped.

`evaluate(plan, arms, started_at, now)` is a pure function of the per-arm counts, so the
daemon's job, `nurture report`, the dashboard and the simulations in the tests all reach
the same verdict from the same numbers.

With more than two arms the leader (highest observed rate) must beat every other arm.
mSPRT then tests each of those comparisons at α/k (k arms; α with two): a false winner
needs at least one true "no difference" to be rejected, and each arm i can only be
declared by rejecting its comparison with arm i+1 (mod k), k distinct comparisons, so by
the union bound the chance of any false winner stays within α, at every look.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Literal

from nurture.experiments import stats
from nurture.experiments.plan import ArmTally, Plan

Status = Literal["running", "decided", "stopped"]


@dataclass(frozen=True, slots=True)
class Verdict:
    status: Status
    reason: str
    winner: str | None = None  # decided: the best arm
    versus: str | None = None  # the arm the effect is measured against (the runner-up)
    effect: float | None = None  # rate(winner) − rate(versus)
    interval: stats.Interval | None = None  # for the effect, at `Plan.level`
    statistic: str = ""  # the number behind the decision, in words
    value: float = 0.0  # Λ (mSPRT) or P(best) (Bayesian) of the leader
    p_value: float | None = None  # mSPRT: always-valid p-value of the weakest comparison
    route_to: str | None = None  # where new leads go once the experiment is over
    bands: dict[str, stats.Interval] = field(default_factory=dict)  # per-arm rate band

    @property
    def over(self) -> bool:
        return self.status != "running"


def fallback_arm(arms: Sequence[ArmTally]) -> str:
    """Where new leads go after an experiment stopped without a winner: the first arm that is
    not a holdout (the control, by convention the first one written)."""
    for arm in arms:
        if not arm.holdout:
            return arm.name
    return arms[0].name


def bands(plan: Plan, arms: Sequence[ArmTally]) -> dict[str, stats.Interval]:
    """Per-arm interval bands at the plan's level: always-valid for mSPRT, credible for Bayesian."""
    if plan.method == "msprt":
        return {a.name: stats.rate_band(a.assigned, a.converted, tau=plan.effect, alpha=plan.alpha) for a in arms}
    return {a.name: stats.credible_band(a.assigned, a.converted, plan.level, plan.prior) for a in arms}


def evaluate(plan: Plan, arms: Sequence[ArmTally], started_at: datetime | None, now: datetime) -> Verdict:
    """The verdict at `now` for an experiment whose first lead was assigned at `started_at`."""
    if len(arms) < 2:
        raise ValueError("an experiment needs at least two arms")
    arm_bands = bands(plan, arms)
    elapsed = now - started_at if started_at is not None else timedelta(0)
    expired = started_at is not None and elapsed >= plan.max_duration
    short = [a.name for a in arms if a.assigned < plan.min_per_arm]
    leader, runner_up = _ranked(arms)
    if short:
        verdict = Verdict(
            "running",
            f"waiting for {plan.min_per_arm} leads in every arm ({', '.join(short)} short)",
            versus=runner_up.name,
            bands=arm_bands,
        )
    elif plan.method == "msprt":
        verdict = _msprt(plan, arms, leader, runner_up, arm_bands)
    else:
        verdict = _bayesian(plan, arms, leader, runner_up, arm_bands)
    if verdict.status == "running" and expired:
        days = plan.max_duration.total_seconds() / 86400
        return replace(
            verdict,
            status="stopped",
            reason=f"no winner within the maximum duration ({days:g} days): {verdict.reason}",
            route_to=fallback_arm(arms),
        )
    return verdict


def _ranked(arms: Sequence[ArmTally]) -> tuple[ArmTally, ArmTally]:
    # Ties keep the order written in the scenario, so the control leads a tie.
    order = sorted(range(len(arms)), key=lambda i: (-arms[i].rate, i))
    return arms[order[0]], arms[order[1]]


def _msprt(
    plan: Plan, arms: Sequence[ArmTally], leader: ArmTally, runner_up: ArmTally, arm_bands: dict[str, stats.Interval]
) -> Verdict:
    alpha = plan.comparison_alpha(len(arms))
    comparisons = {
        other.name: stats.msprt(
            other.assigned, other.converted, leader.assigned, leader.converted, tau=plan.effect, alpha=alpha
        )
        for other in arms
        if other is not leader
    }
    weakest_name = min(comparisons, key=lambda n: comparisons[n].ratio)
    weakest = comparisons[weakest_name]
    against = comparisons[runner_up.name]
    beats_all = all(c.difference > 0 and c.ratio >= 1 / alpha for c in comparisons.values())
    statistic = (
        f"mixture likelihood ratio {weakest.ratio:.3g} against '{weakest_name}' "
        f"(always-valid p = {weakest.p_value:.3g}; needs ≤ {alpha:.3g})"
    )
    running = Verdict(
        "running",
        f"no arm is ahead yet ({statistic})",
        versus=runner_up.name,
        effect=against.difference,
        interval=against.interval,
        statistic=statistic,
        value=weakest.ratio,
        p_value=weakest.p_value,
        bands=arm_bands,
    )
    if not beats_all:
        return running
    return replace(
        running,
        status="decided",
        reason=f"'{leader.name}' beats every other arm ({statistic})",
        winner=leader.name,
        route_to=leader.name,
    )


def _bayesian(
    plan: Plan, arms: Sequence[ArmTally], leader: ArmTally, runner_up: ArmTally, arm_bands: dict[str, stats.Interval]
) -> Verdict:
    best = stats.probability_best([(a.assigned, a.converted) for a in arms], plan.prior)
    index = max(range(len(arms)), key=lambda i: (best[i], -i))
    top = arms[index]
    others = [a for a in arms if a is not top]
    versus = max(others, key=lambda a: a.rate)
    effect, interval = stats.posterior_difference(
        (top.assigned, top.converted), (versus.assigned, versus.converted), plan.level, plan.prior
    )
    statistic = f"P('{top.name}' is best) = {best[index]:.3f} (needs ≥ {plan.threshold:g})"
    running = Verdict(
        "running",
        f"no arm is sure enough to be best ({statistic})",
        versus=versus.name,
        effect=effect,
        interval=interval,
        statistic=statistic,
        value=best[index],
        bands=arm_bands,
    )
    if best[index] < plan.threshold:
        return running
    return replace(
        running,
        status="decided",
        reason=f"'{top.name}' is the best arm ({statistic})",
        winner=top.name,
        route_to=top.name,
    )
