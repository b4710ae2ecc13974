"""Why a score is what it is, as data (`Explanation`) and as text (`render`).

`score explain`, the lead page and the hand-off to sales all read the same structure:
fit rules, the lead's own engagement, the account part (capped, with the colleagues who
gave it), and every tracking event with its verdict, human and machine apart.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from nurture.scoring.engine import AccountAggregate, CompiledScoring, ScoreResult

ACCOUNT_PEOPLE_SHOWN = 10


@dataclass(frozen=True)
class Line:
    label: str
    points: float
    detail: str = ""


@dataclass(frozen=True)
class Colleague:
    label: str
    engagement: float
    counted: float


@dataclass(frozen=True)
class AccountExplanation:
    account: str
    points: float
    uncapped: float
    cap: int | None
    weight: float
    colleagues: list[Colleague]
    more: int = 0


@dataclass(frozen=True)
class Activity:
    at: datetime
    type: str
    verdict: str  # human | suspect | machine
    counted: bool
    reasons: tuple[str, ...]
    what: str = ""


@dataclass(frozen=True)
class Explanation:
    summary: str
    fit: list[Line]
    engagement: list[Line]
    account: AccountExplanation | None
    activity: list[Activity]
    hot: bool
    missing: list[str]
    counts: dict[str, int] = field(default_factory=dict)


def reasons(result: ScoreResult) -> list[str]:
    """The reasons a score is what it is, strongest first (for hand-offs and stage changes)."""
    parts = sorted(result.contributions, key=lambda c: -c.points)
    return [f"{c.rule} (+{c.points:g}{', ' + c.note if c.note else ''})" for c in parts if c.points]


def explain(scoring: CompiledScoring, result: ScoreResult, who: str = "") -> Explanation:
    hot = scoring.model.hot
    needs = ", ".join(f"{g} ≥ {n}" for g, n in hot.engagement.items())
    if hot.min_own_engagement:
        needs += f", with at least {hot.min_own_engagement} of its own"
    account_points = result.account.points if result.account else 0.0
    summary = (
        f"{who + ': ' if who else ''}fit {result.fit} (grade {result.grade}), engagement {result.engagement} "
        f"= own {result.own} + account {account_points:.0f}; hot needs {needs}"
    )
    fit = [Line(c.rule, c.points) for c in result.contributions if c.kind == "fit"]
    engagement = [
        Line(
            c.rule,
            c.points,
            f"from {c.events} event(s), {c.raw:g} before decay" + (f"; {c.note}" if c.note else ""),
        )
        for c in sorted(result.contributions, key=lambda c: -c.points)
        if c.kind == "engagement"
    ]
    account = None
    if result.account is not None:
        part = result.account
        account = AccountExplanation(
            part.account,
            part.points,
            part.uncapped,
            part.cap,
            scoring.model.account.weight,
            [Colleague(str(m.label), m.engagement, m.counted) for m in part.contributors],
            max(part.colleagues - len(part.contributors), 0),
        )
    activity = [
        Activity(
            a.at,
            a.type,
            a.verdict.kind,
            a.verdict.counts,
            a.verdict.reasons,
            str(a.props.get("link") or a.props.get("url") or ""),
        )
        for a in result.activity
    ]
    counts = {"human": 0, "suspect": 0, "machine": 0}
    for a in activity:
        counts[a.verdict] += 1
    return Explanation(summary, fit, engagement, account, activity, result.hot, list(result.missing), counts)


def render(explanation: Explanation) -> list[str]:
    """The explanation as lines of text, as `nurture score explain` prints it."""
    lines = [explanation.summary]
    if explanation.fit:
        lines.append("fit:")
        lines += [f"  {f.label:<24} {f.points:>7.2f}" for f in explanation.fit]
    if explanation.engagement:
        lines.append("own engagement:")
        lines += [f"  {e.label:<24} {e.points:>7.2f} {e.detail}" for e in explanation.engagement]
    account = explanation.account
    if account is not None:
        cap = f", capped at {account.cap}" if account.cap is not None else ""
        lines.append(
            f"account {account.account}: {account.points:.2f} "
            f"({account.weight:g} × colleagues' engagement = {account.uncapped:.2f}{cap})"
        )
        for colleague in account.colleagues:
            lines.append(f"  {colleague.label:<32} own {colleague.engagement:>7.2f}, counts {colleague.counted:.2f}")
        if account.more:
            lines.append(f"  … and {account.more} more colleague(s)")
        if not account.colleagues:
            lines.append("  no colleague has engagement")
    if explanation.activity:
        n = explanation.counts
        lines.append(
            f"tracking activity: {n['human']} human, {n['suspect']} suspect, {n['machine']} machine "
            "(machine activity scores nothing, a suspect counts in part)"
        )
        for a in explanation.activity:
            mark = "" if a.counted else " (not counted)"
            why = f": {'; '.join(a.reasons)}" if a.reasons else ""
            what = f" {a.what}" if a.what else ""
            lines.append(f"  {a.at:%Y-%m-%d %H:%M:%S} {a.type}{what} {a.verdict}{mark}{why}")
    lines.append("hot: yes" if explanation.hot else "missing: " + "; ".join(explanation.missing or ["-"]))
    return lines


def explain_account(aggregate: AccountAggregate) -> list[str]:
    """An account's engagement: its line, and the people who engaged (for the account hand-off)."""
    state = "hot" if aggregate.hot else "not hot"
    lines = [f"account {aggregate.key}: engagement {aggregate.total:.0f} from {aggregate.size} people, {state}"]
    for member in aggregate.engaged or aggregate.members[:ACCOUNT_PEOPLE_SHOWN]:
        lines.append(f"  {member.label}: own engagement {member.engagement:.0f} (counts {member.counted:.0f})")
    if aggregate.missing:
        lines.append(aggregate.missing)
    return lines
