"""Re-entry: may a lead that meets a scenario's entry criteria enter it (again) now?

Pure: it decides from the lead's enrolment history in that one scenario and `now`.

- ``never``: a lead enters a scenario once. Any earlier enrolment, running or finished,
  keeps it out for good.
- ``after_exit``: a lead enters again only after its previous enrolment has finished
  (completed its steps or exited), and only once ``cooldown`` has passed since it finished.
  While an enrolment runs, the lead is not entered a second time.
- ``always``: a lead enters again whenever the criteria hold and ``cooldown`` has passed
  since it last *entered*, even while that enrolment still runs: the running enrolment ends
  (exit reason ``re-entered``) and the lead starts over at the first step. A lead has at most
  one running enrolment per scenario. ``always`` needs a cooldown, since the enrol job looks
  at a matching lead again whenever it changes and once a day.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum

REENTERED = "re-entered"


class Entry(StrEnum):
    """What the enrol job does with a lead that meets the entry criteria."""

    SKIP = "skip"  # not now (or never)
    ENTER = "enter"  # a new enrolment at the first step
    RESTART = "restart"  # end the running enrolment (re-entered), then a new one at the first step


@dataclass(frozen=True, slots=True)
class EntryHistory:
    """A lead's enrolments in one scenario, reduced to what the decision reads."""

    running_since: datetime | None = None  # when the running enrolment began; None: none runs
    last_entered: datetime | None = None  # the latest enrolment's start, running or finished
    last_finished: datetime | None = None  # the latest finish of a finished enrolment

    @property
    def ever(self) -> bool:
        return self.last_entered is not None or self.running_since is not None or self.last_finished is not None


NO_HISTORY = EntryHistory()


def decide_entry(policy: str, cooldown: timedelta | None, history: EntryHistory, now: datetime) -> Entry:
    """The re-entry policy applied to one lead that meets the entry criteria at `now`."""
    if not history.ever:
        return Entry.ENTER
    if policy == "never":
        return Entry.SKIP
    wait = cooldown or timedelta(0)
    if policy == "after_exit":
        if history.running_since is not None:
            return Entry.SKIP
        if history.last_finished is not None and history.last_finished + wait > now:
            return Entry.SKIP
        return Entry.ENTER
    if policy == "always":
        last = history.last_entered or history.running_since
        if last is not None and last + wait > now:
            return Entry.SKIP
        return Entry.RESTART if history.running_since is not None else Entry.ENTER
    raise ValueError(f"unknown re-entry policy {policy!r}")
