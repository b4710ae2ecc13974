"""Which arm of a split a lead takes: pure, from the experiments' state given as input.

A lead always lands in the same arm: the arm it was given before (for an experiment), else,
once the experiment is over, the arm new leads are routed to, else its weighted share of a
stable hash of (lead, scenario, step).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from nurture.scenario.compiler import CompiledSplit, stable_bucket


@dataclass(frozen=True, slots=True)
class ExperimentView:
    """What a step may know of experiments: where new leads go once an experiment is over
    (`routes`: experiment key → arm) and the arms this lead already has (`arms`)."""

    routes: Mapping[str, str] = field(default_factory=dict)
    arms: Mapping[str, str] = field(default_factory=dict)


NO_EXPERIMENTS = ExperimentView()


@dataclass(frozen=True, slots=True)
class ArmChoice:
    arm: str
    randomised: bool  # part of the comparison (False: assigned before, or routed after the decision)
    new: bool  # first assignment of this lead to this experiment
    why: str


def choose_arm(split: CompiledSplit, scenario_id: str, lead_key: str, view: ExperimentView) -> ArmChoice:
    if split.key is not None:
        given = view.arms.get(split.key)
        if given is not None and given in split.arms:
            return ArmChoice(given, False, False, f"'{given}', the arm this lead was given before")
        route = view.routes.get(split.key)
        if route is not None and route in split.arms:
            return ArmChoice(route, False, True, f"'{route}': the experiment is over and new leads take it")
    bucket = stable_bucket(lead_key, scenario_id, split.step)
    arm = split.by_weight(bucket)
    running = " (experiment running)" if split.key is not None else ""
    return ArmChoice(arm, split.key is not None, split.key is not None, f"'{arm}' by weight{running}")
