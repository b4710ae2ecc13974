"""Experiments and send-time optimisation in a scenario's report (CLI and dashboard agree).

- An experiment shows its state (running, decided, stopped), per-arm counts of leads whose
  goal window has closed and how many reached the goal, each arm's band at the plan's level,
  the recorded decision (when, winner, effect with interval, statistic), leads still pending,
  and the cumulative conversion per arm over time as an SVG chart.
- Send time: for each `send_time: optimal` step, the click rate of emails sent at the lead's
  best hour against the comparison group sent as the window allows (at its start for leads
  who reach the step outside it), with the difference and its always-valid 95% interval.
  Clicks are people's: the scoring model's bot rules apply.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime

from nurture.experiments import stats
from nurture.experiments.chart import conversion_chart
from nurture.experiments.decide import Verdict, bands, evaluate
from nurture.experiments.goals import human_events
from nurture.experiments.plan import ArmTally, Plan
from nurture.experiments.summary import arm_lines, effect_text, method_text, status_line
from nurture.experiments.tally import Assignment, history, pending, tally
from nurture.scenario.compiler import CompiledScenario, CompiledSplit
from nurture.scenario.graph import describe_experiment
from nurture.scenario.model import Split
from nurture.scoring.engine import CompiledScoring
from nurture.store import Store
from nurture.store.experiments import ExperimentRow


@dataclass
class ExperimentReport:
    step: str
    key: str
    description: str
    plan: Plan
    row: ExperimentRow | None
    arms: list[ArmTally]
    verdict: Verdict
    pending: int
    chart: str

    @property
    def status(self) -> str:
        return self.row.status if self.row is not None else "not started"

    def lines(self) -> list[str]:
        head = f"experiment '{self.step}' ({self.description.removeprefix('experiment: ')}; {method_text(self.plan)})"
        if self.row is None:
            return [head, "  not started: no lead has reached the split yet"]
        decided_at = self.row.decided_at
        state = status_line(self.verdict, decided_at) if self.row.status != "running" else "running"
        out = [head, f"  {state}; {self.pending} lead(s) still within the goal window"]
        out += [f"  {line}" for line in arm_lines(self.arms, self.verdict)]
        effect = effect_text(self.verdict, self.plan)
        if effect:
            out.append(f"  effect: {effect}")
        if self.verdict.statistic:
            out.append(f"  statistic: {self.verdict.statistic}")
        return out


@dataclass
class SendTimeLift:
    step: str
    optimal_sent: int
    optimal_clicked: int
    control_sent: int
    control_clicked: int
    difference: float
    interval: stats.Interval

    def rate(self, sent: int, clicked: int) -> float:
        return clicked / sent if sent else 0.0

    def line(self) -> str:
        optimal = self.rate(self.optimal_sent, self.optimal_clicked)
        control = self.rate(self.control_sent, self.control_clicked)
        return (
            f"send time '{self.step}': click rate at each lead's best hour {optimal:.1%} "
            f"({self.optimal_clicked}/{self.optimal_sent}) vs as the window allows {control:.1%} "
            f"({self.control_clicked}/{self.control_sent}): lift {self.difference * 100:+.1f} points "
            f"(95% always-valid interval {self.interval.low * 100:+.1f} to {self.interval.high * 100:+.1f})"
        )


def _verdict_of(row: ExperimentRow, plan: Plan, arms: list[ArmTally], now: datetime) -> Verdict:
    if row.status == "running":
        return evaluate(plan, arms, row.started_at, now)
    interval = (
        stats.Interval(row.interval_low, row.interval_high)
        if row.interval_low is not None and row.interval_high is not None
        else None
    )
    ranked = sorted(arms, key=lambda a: -a.rate)
    versus = next((a.name for a in ranked if a.name != row.winner), None)
    return Verdict(
        row.status,  # type: ignore[arg-type]
        row.reason,
        winner=row.winner,
        versus=versus,
        effect=row.effect,
        interval=interval,
        statistic=row.statistic,
        p_value=row.p_value,
        route_to=row.route_to,
        bands=bands(plan, arms),
    )


def experiment_reports(store: Store, compiled: CompiledScenario, now: datetime) -> list[ExperimentReport]:
    with store.reading() as conn:
        rows = {row.key: row for row in store.experiments.all(conn, compiled.id)}
        found = {key: store.experiments.assignments(conn, key) for key in compiled.experiments if key in rows}
    reports = []
    for key, split in compiled.experiments.items():
        reports.append(_one(compiled, split, rows.get(key), found.get(key, []), now))
    return reports


def _one(
    compiled: CompiledScenario,
    split: CompiledSplit,
    row: ExperimentRow | None,
    assignments: list[Assignment],
    now: datetime,
) -> ExperimentReport:
    assert split.key is not None and split.plan is not None and split.goal is not None
    step = compiled.steps[split.step]
    description = describe_experiment(step) if isinstance(step, Split) else ""
    arms = tally(split.arms, split.holdouts, assignments, split.goal.within, now)
    if row is None:
        verdict = Verdict("running", "not started", bands=bands(split.plan, arms))
        return ExperimentReport(split.step, split.key, description, split.plan, None, arms, verdict, 0, "")
    verdict = _verdict_of(row, split.plan, arms, now)
    looks = history(list(split.arms), assignments, split.goal.within, now)
    chart = conversion_chart(
        split.plan,
        list(split.arms),
        looks,
        title=f"{split.step}: cumulative goal rate per arm",
        decided_at=row.decided_at,
    )
    return ExperimentReport(
        split.step,
        split.key,
        description,
        split.plan,
        row,
        arms,
        verdict,
        pending(assignments, split.goal.within, now),
        chart,
    )


def send_time_lifts(store: Store, compiled: CompiledScenario, scoring: CompiledScoring | None) -> list[SendTimeLift]:
    if not compiled.optimal_send_steps:
        return []
    with store.reading() as conn:
        sends = store.experiments.sends_with_timing(conn, compiled.id, ("optimal", "control"))
        if not sends:
            return []
        since = min(at for *_, at in sends)
        events = store.events.for_leads(conn, sorted({lead for _, lead, *_ in sends}), since)
    clicked: set[int] = set()
    for lead_events in events.values():
        for event in human_events(scoring, lead_events):
            ref = event.props.get("send")
            if event.type == "click" and isinstance(ref, int):
                clicked.add(ref)
    counts: dict[tuple[str, str], list[int]] = defaultdict(lambda: [0, 0])
    for send_id, _lead, step, timing, _at in sends:
        counts[(step, timing)][0] += 1
        counts[(step, timing)][1] += int(send_id in clicked)
    lifts = []
    for step in sorted(compiled.optimal_send_steps):
        (n_o, x_o), (n_c, x_c) = counts[(step, "optimal")], counts[(step, "control")]
        if not n_o or not n_c:
            continue
        comparison = stats.msprt(n_c, x_c, n_o, x_o, tau=0.05, alpha=0.05)
        lifts.append(SendTimeLift(step, n_o, x_o, n_c, x_c, comparison.difference, comparison.interval))
    return lifts
