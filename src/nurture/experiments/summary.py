"""Experiments in words: the lines of `nurture report` and the email to a scenario's owner."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from nurture.experiments.decide import Verdict
from nurture.experiments.plan import ArmTally, Plan


def percent(value: float) -> str:
    return f"{value:.1%}"


def effect_text(verdict: Verdict, plan: Plan) -> str:
    if verdict.effect is None or verdict.interval is None or verdict.versus is None:
        return ""
    leader = verdict.winner or "the leader"
    return (
        f"{leader} − {verdict.versus}: {verdict.effect * 100:+.1f} points "
        f"({plan.level:.0%} interval {verdict.interval.low * 100:+.1f} to {verdict.interval.high * 100:+.1f})"
    )


def method_text(plan: Plan) -> str:
    if plan.method == "msprt":
        return f"mSPRT, at most {plan.alpha:.0%} false winners however often it is looked at"
    return f"Bayesian, winner when P(best) ≥ {plan.threshold:g}"


def arm_lines(arms: Sequence[ArmTally], verdict: Verdict) -> list[str]:
    lines = []
    for arm in arms:
        band = verdict.bands.get(arm.name)
        band_text = f" [{percent(band.low)}–{percent(band.high)}]" if band else ""
        kind = " (holdout)" if arm.holdout else ""
        mark = " ← winner" if verdict.winner == arm.name else ""
        lines.append(f"{arm.name}{kind}: {arm.converted}/{arm.assigned} = {percent(arm.rate)}{band_text}{mark}")
    return lines


def status_line(verdict: Verdict, decided_at: datetime | None = None) -> str:
    if verdict.status == "decided":
        when = f" on {decided_at:%Y-%m-%d %H:%M} UTC" if decided_at else ""
        return f"decided{when}: '{verdict.winner}' wins; new leads get it"
    if verdict.status == "stopped":
        when = f" on {decided_at:%Y-%m-%d %H:%M} UTC" if decided_at else ""
        return f"stopped{when} without a winner; new leads get '{verdict.route_to}'"
    return "running"


def decision_email(
    scenario_name: str,
    step: str,
    goal: str,
    plan: Plan,
    verdict: Verdict,
    arms: Sequence[ArmTally],
    at: datetime,
    link: str,
) -> tuple[str, str]:
    """Subject and plain-text body of the note to the scenario's owner."""
    if verdict.status == "decided":
        subject = f"Experiment '{step}' in {scenario_name}: '{verdict.winner}' wins"
    else:
        subject = f"Experiment '{step}' in {scenario_name} stopped without a winner"
    body = [
        f"The experiment at step '{step}' of '{scenario_name}' was {status_line(verdict, at)}.",
        "",
        f"Goal: {goal}. Method: {method_text(plan)}.",
        "",
        *arm_lines(arms, verdict),
        "",
    ]
    effect = effect_text(verdict, plan)
    if effect:
        body.append(f"Effect: {effect}.")
    body += [f"Statistic: {verdict.statistic}.", f"Why: {verdict.reason}.", "", link]
    return subject, "\n".join(body) + "\n"
