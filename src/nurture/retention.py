"""How long raw events are kept, and the prune that `nurture events prune` and the daemon run.

Raw events older than the retention are rolled into per-lead daily counts and dropped
(`store/retention.py`). The retention may not be shorter than anything that still reads
raw events: the scoring lookback (older events never count toward a score) and the
scenarios' event lookback. So a prune never changes a current score, a hand-off, a
scenario's decision or a report; analyses that replay scores over a window reaching before
the cutoff are refused (`analytics/history.py`) rather than answered from partial events.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime, timedelta

from nurture.config import Settings
from nurture.errors import NurtureError
from nurture.jobs.qualify import OVERLAP
from nurture.scenario.expr import EventRecord
from nurture.scoring.engine import CompiledScoring
from nurture.store import Store
from nurture.store.retention import PruneResult, RetentionError


def least_kept(settings: Settings, scoring: CompiledScoring | None) -> timedelta:
    """The shortest history of raw events nurture still reads."""
    kept = timedelta(days=settings.events_lookback_days)
    return max(kept, scoring.lookback) if scoring is not None else kept


def check_retention(settings: Settings, scoring: CompiledScoring | None) -> None:
    """Refuse a retention shorter than what scores and scenarios read."""
    days = settings.event_retention_days
    need = least_kept(settings, scoring)
    if days and timedelta(days=days) < need:
        raise RetentionError(
            f"NURTURE_EVENT_RETENTION_DAYS={days} is shorter than the {need.days} days of events that scoring "
            "(its lookback) and scenarios (NURTURE_EVENTS_LOOKBACK_DAYS) read: scores would change; "
            f"set it to {need.days} or more"
        )


def prune_events(
    store: Store,
    settings: Settings,
    scoring: CompiledScoring | None,
    before: datetime | None = None,
    *,
    dry_run: bool = False,
    overlap: timedelta = OVERLAP,
    on_month: Callable[[PruneResult], None] | None = None,
) -> PruneResult:
    """Roll up and drop the raw events of the whole months before `before` (default: the
    retention setting's cutoff), once the qualify job has seen them: received before its
    watermark less the `overlap` it rereads; a month at a time, each told to `on_month` once
    committed. Without a scoring file the job scores nothing
    (and keeps no watermark), so any event may go."""
    check_retention(settings, scoring)
    if before is None:
        if not settings.event_retention_days:
            raise NurtureError("nothing to prune: NURTURE_EVENT_RETENTION_DAYS is 0 (keep every event); give --before")
        before = store.clock.now() - timedelta(days=settings.event_retention_days)
    with store.reading() as conn:
        mark = store.settings.get(conn, "qualify:watermark")
    if scoring is None:  # no scoring file: the qualify job derives nothing from events, nothing waits for it
        processed: datetime | None = store.reports.database_time()
    else:
        processed = datetime.fromisoformat(mark) - overlap if mark else None

    def verdicts(events: Sequence[EventRecord]) -> list[str]:
        assert scoring is not None
        return [v.kind for v in scoring.classify(events)]

    with store.cluster_lock("prune") as mine:
        if not mine:
            raise NurtureError("another process is pruning events")
        return store.retention.prune(
            before,
            keep=least_kept(settings, scoring),
            processed_before=processed,
            classify=verdicts if scoring is not None else None,
            dry_run=dry_run,
            on_month=on_month,
        )
