"""Why a score is what it is, as data (`Explanation`) and as text (`render`).

`score explain`, the lead page and the hand-off to sales all read the same structure:
fit rules, the lead's own engagement, the account part (capped, with the colleagues who
gave it), and every tracking event with its verdict, human and machine apart.

What the *stored* score was made of (`StoredScore`) is rebuilt from the current scoring file
and events, so it is shown only while its totals are the stored ones; otherwise the reader
is told (`stored_score`).
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


@dataclass(frozen=True)
class StoredScore:
    """A lead's stored score (what its stage, the dashboard's header and alerts used) and a
    breakdown whose totals are that score, or a note saying why none is.

    A breakdown is rebuilt from the current scoring file and the current events, while the
    qualify job writes a lead only when its score changes: `scored_at` is when the score was
    last set, and the file or the events (a late event dated before it, a prune) may have
    changed since. So the breakdown is the one rebuilt as of `scored_at` if it gives the stored
    totals (engagement decays: that is what the score was made of when made); else the score
    now, if it is still the stored one; else there is none (`breakdown` None), and `note` gives
    both scores."""

    fit: int
    engagement: int
    grade: str
    scored_at: datetime
    breakdown: ScoreResult | None
    as_of: datetime | None  # when `breakdown` is computed: `scored_at`, or now
    note: str = ""

    @property
    def as_made(self) -> bool:
        """The breakdown is the stored score rebuilt as of when it was made."""
        return self.breakdown is not None and self.as_of == self.scored_at


def _totals(result: ScoreResult) -> tuple[int, int, str]:
    return result.fit, result.engagement, result.grade


def stored_score(
    fit: int,
    engagement: int,
    grade: str,
    scored_at: datetime,
    rebuilt: ScoreResult,
    current: ScoreResult,
    now: datetime,
) -> StoredScore:
    """The stored score with the breakdown that adds up to it: `rebuilt` (computed as of
    `scored_at`) or `current` (as of `now`), whichever gives the stored totals, in that order;
    with neither, no breakdown and a note with the score now (see `StoredScore`)."""
    stored = (fit, engagement, grade)
    if _totals(rebuilt) == stored:
        return StoredScore(fit, engagement, grade, scored_at, rebuilt, scored_at)
    why = (
        f"rebuilt as of then with the current scoring file and events it comes to fit {rebuilt.fit}, "
        f"engagement {rebuilt.engagement} (grade {rebuilt.grade}): the scoring file or the events it counted "
        "changed since (an edit, events dated before it that arrived later, pruned events)"
    )
    if _totals(current) == stored:
        return StoredScore(
            fit, engagement, grade, scored_at, current, now, f"{why}; the score now is the stored one, made of this"
        )
    note = (
        f"score recomputed now: fit {current.fit}, engagement {current.engagement} (grade {current.grade}); "
        f"stored fit {fit}, engagement {engagement} (grade {grade}) at {scored_at:%Y-%m-%d %H:%M} UTC; "
        "the qualify job stores the new score when it next rescores this lead (its daily rescore at the latest). "
        f"No breakdown adds up to the stored score: {why}"
    )
    return StoredScore(fit, engagement, grade, scored_at, None, None, note)


def render_stored(stored: StoredScore) -> list[str]:
    """The stored score as `nurture score explain` prints it after the score now."""
    head = (
        f"stored score, as of {stored.scored_at:%Y-%m-%d %H:%M} UTC: fit {stored.fit} (grade {stored.grade}), "
        f"engagement {stored.engagement}"
    )
    if stored.breakdown is None:
        return [head, f"  {stored.note}", "  (the breakdown above is the score now)"]
    lines = (
        [f"{head}; made of:"]
        if stored.as_made
        else [head, f"  {stored.note}", f"made of (as of {stored.as_of:%Y-%m-%d %H:%M} UTC):"]
    )
    for c in sorted(stored.breakdown.contributions, key=lambda c: -c.points):
        lines.append(f"  {c.kind:<10} {c.rule:<24} {c.points:>7.2f}")
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
