"""Programs that know about each other: who may enter a scenario, and who leaves for it.

Pure rules over plain data, shared by the enrol job and `simulate`:

- **Suppression lists** (project lists with `suppress: true`: customers, competitors,
  partners): their members enter no scenario at all.
- **Static lists** in `entry.lists` (member of at least one) and `entry.not_lists` (of none).
- **Mutual exclusion**: scenarios that name each other in `exclusive_with`, or share a
  `group`, never hold one lead at once. The higher `priority` wins: a lead in a
  higher-or-equal priority program is not enrolled; entering a higher-priority program makes
  the lead leave the lower ones (for example a recycled lead's re-engagement takes it out
  of the whitepaper nurture).
- **Entry condition** (`entry.when`), explained term by term when it does not hold.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from nurture.scenario.expr import explain_false
from nurture.scenario.model import Scenario


@dataclass(frozen=True)
class EntryVerdict:
    enters: bool
    reasons: tuple[str, ...] = ()  # why not, one line each
    leaves: tuple[str, ...] = field(default=())  # lower-priority exclusive scenarios the lead leaves


def exclusive(a: Scenario, b: Scenario) -> bool:
    """Whether one lead may not be in `a` and `b` at the same time."""
    if a.id == b.id:
        return False
    return a.id in b.exclusive_with or b.id in a.exclusive_with or (a.group is not None and a.group == b.group)


def entry_verdict(
    scenario: Scenario,
    fields: Mapping[str, Any],
    context: Mapping[str, Any] | None = None,
    *,
    lists: Collection[str] = (),
    suppression: Collection[str] = (),
    active: Sequence[Scenario] = (),
) -> EntryVerdict:
    """Would a lead enter `scenario` now, and if not, why not.

    `lists` are the lead's static lists, `suppression` the project's suppression lists,
    `active` the scenarios the lead is in now, `context` the expression context for
    `entry.when` (lead, score, events, lifecycle, now); without it the condition is not checked.
    """
    reasons: list[str] = []
    entry = scenario.entry
    blocked = sorted(set(lists) & set(suppression))
    if blocked:
        reasons.append(f"on the suppression list {', '.join(repr(b) for b in blocked)}: enters no scenario")
    if entry.source and fields.get("source") not in entry.source:
        reasons.append(f"source is {fields.get('source')!r}, not one of {', '.join(entry.source)}")
    if entry.lists and not set(entry.lists) & set(lists):
        reasons.append(f"on none of the lists {', '.join(entry.lists)}")
    excluded = sorted(set(entry.not_lists) & set(lists))
    if excluded:
        reasons.append(f"on the excluded list {', '.join(excluded)}")
    leaves = []
    for other in active:
        if not exclusive(scenario, other):
            continue
        if other.priority >= scenario.priority:
            reasons.append(
                f"already in '{other.id}' (priority {other.priority}), "
                f"which excludes this one (priority {scenario.priority})"
            )
        else:
            leaves.append(other.id)
    if entry.when and context is not None:
        reasons += [f"entry condition: {line}" for line in explain_false(entry.when, context)]
    if reasons:
        return EntryVerdict(False, tuple(reasons))
    return EntryVerdict(True, (), tuple(leaves))
