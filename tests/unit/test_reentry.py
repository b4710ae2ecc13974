"""Re-entry policies: `never`, `after_exit` (with `cooldown`) and `always` decide differently."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

from nurture.runtime.reentry import NO_HISTORY, Entry, EntryHistory, decide_entry
from nurture.scenario.loader import check_scenario

NOW = datetime(2026, 6, 1, 9, 0, tzinfo=UTC)
DAY = timedelta(days=1)
RUNNING = EntryHistory(running_since=NOW - 40 * DAY, last_entered=NOW - 40 * DAY)
FINISHED_10_DAYS_AGO = EntryHistory(last_entered=NOW - 40 * DAY, last_finished=NOW - 10 * DAY)


def test_a_lead_never_enrolled_enters_under_every_policy() -> None:
    for policy in ("never", "after_exit", "always"):
        assert decide_entry(policy, 30 * DAY, NO_HISTORY, NOW) is Entry.ENTER


def test_never_keeps_a_lead_out_for_good_once_it_entered() -> None:
    assert decide_entry("never", None, RUNNING, NOW) is Entry.SKIP
    assert decide_entry("never", None, FINISHED_10_DAYS_AGO, NOW) is Entry.SKIP
    years_later = EntryHistory(last_entered=NOW - 900 * DAY, last_finished=NOW - 800 * DAY)
    assert decide_entry("never", None, years_later, NOW) is Entry.SKIP


def test_after_exit_waits_for_the_enrolment_to_finish_and_the_cooldown_since_the_finish() -> None:
    # Still running: never a second enrolment, however long ago it began.
    assert decide_entry("after_exit", None, RUNNING, NOW) is Entry.SKIP
    assert decide_entry("after_exit", 7 * DAY, RUNNING, NOW) is Entry.SKIP
    # Finished 10 days ago: a 30-day cooldown keeps it out, a 7-day one lets it in.
    assert decide_entry("after_exit", 30 * DAY, FINISHED_10_DAYS_AGO, NOW) is Entry.SKIP
    assert decide_entry("after_exit", 7 * DAY, FINISHED_10_DAYS_AGO, NOW) is Entry.ENTER
    # The cooldown counts from the finish, not from the entry 40 days ago.
    assert decide_entry("after_exit", 20 * DAY, FINISHED_10_DAYS_AGO, NOW) is Entry.SKIP
    # Exactly at the end of the cooldown it may enter; without a cooldown at once.
    assert decide_entry("after_exit", 10 * DAY, FINISHED_10_DAYS_AGO, NOW) is Entry.ENTER
    assert decide_entry("after_exit", None, FINISHED_10_DAYS_AGO, NOW) is Entry.ENTER


def test_always_starts_over_once_the_cooldown_since_the_last_entry_passed_even_while_enrolled() -> None:
    # Entered 40 days ago and still running: a 30-day cooldown has passed, so it starts over.
    assert decide_entry("always", 30 * DAY, RUNNING, NOW) is Entry.RESTART
    # A 60-day cooldown since that entry has not.
    assert decide_entry("always", 60 * DAY, RUNNING, NOW) is Entry.SKIP
    # Finished: the cooldown still counts from the entry (40 days ago), not from the finish.
    assert decide_entry("always", 20 * DAY, FINISHED_10_DAYS_AGO, NOW) is Entry.ENTER
    assert decide_entry("always", 45 * DAY, FINISHED_10_DAYS_AGO, NOW) is Entry.SKIP


def test_the_three_policies_differ_on_the_same_history() -> None:
    decisions = {p: decide_entry(p, 30 * DAY, RUNNING, NOW) for p in ("never", "after_exit", "always")}
    assert decisions == {"never": Entry.SKIP, "after_exit": Entry.SKIP, "always": Entry.RESTART}
    decisions = {p: decide_entry(p, 20 * DAY, FINISHED_10_DAYS_AGO, NOW) for p in ("never", "after_exit", "always")}
    assert decisions == {"never": Entry.SKIP, "after_exit": Entry.SKIP, "always": Entry.ENTER}


ALWAYS = """
id: webinar_followup
name: Webinar follow-up
reentry:
  policy: always
steps:
  - id: hello
    type: send_email
    template: hello
    subject: Thanks
"""


def test_always_without_a_cooldown_is_refused_naming_the_line(project: Callable[..., Path]) -> None:
    path = project(ALWAYS)
    _, found = check_scenario(path)
    messages = [str(d).replace(str(path), "FILE") for d in found]
    assert len(messages) == 1
    assert messages[0].startswith("FILE:3: reentry: 'always' needs a 'cooldown'")
    _, found = check_scenario(project(ALWAYS.replace("policy: always", "policy: always\n  cooldown: 30d")))
    assert found == []
