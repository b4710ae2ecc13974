"""What the scenario report counts for one lead, computed once when the lead's email events,
emails, conversions or enrolments change, and kept as outcome rows (see
`nurture.store.outcomes`), so the report reads counters instead of every event.

The definitions are the report's (see `nurture.analytics.report`): an email is opened /
clicked when a person (not a machine, by the scoring model's bot rules over the lead's email
events) opened or clicked it; machine opens and clicks, unsubscribes (by day) and bounces
reported on an email that was sent are counted; an email converted when the lead reached
hot, accepted or customer at or after it was sent; an enrolment's time to hot runs to the
lead's first promotion to hot at or after it. The verdicts are those of the bot rules in
force when the lead was counted; `nurture report --recount` counts everyone again.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable
from datetime import timedelta

from nurture.scoring.engine import CompiledScoring
from nurture.store import Store
from nurture.store.outcomes import HOT_DIGITS, LeadActivity, OutcomeKey, OutcomeSend
from nurture.vocabulary import EventType, SendStatus, Stage

CONVERTED = (Stage.HOT, Stage.ACCEPTED, Stage.CUSTOMER)
MACHINE_TYPES = (EventType.OPEN, EventType.CLICK, EventType.HONEYPOT)
_MICROSECOND = timedelta(microseconds=1)


def outcomes_of(activity: LeadActivity, scoring: CompiledScoring | None) -> dict[OutcomeKey, int]:
    """The outcome rows of one lead: {(send, enrolment, scenario, step, metric, detail, day): n}."""
    found: dict[OutcomeKey, int] = defaultdict(int)
    by_send = {s.id: s for s in activity.sends}
    events = activity.events
    machine = scoring.machine_activity(events) if scoring and events else {}
    # (type, send referred to, whether a machine, how many, UTC day): raw events one by one,
    # pruned events as their daily rollups (with the verdicts given when they were rolled up).
    seen = [
        (e.type, e.props.get("send"), index in machine, 1, e.at.date().isoformat()) for index, e in enumerate(events)
    ]
    seen.extend(
        (r.type, r.send_id, scoring is not None and r.verdict == "machine", r.n, r.day.isoformat())
        for r in activity.rolled
    )
    for type_, ref, is_machine, n, day in seen:
        send = by_send.get(ref) if isinstance(ref, int) else None
        if send is None:
            continue

        def key(metric: str, detail: str = "", send: OutcomeSend = send) -> OutcomeKey:
            return (send.id, None, send.scenario_id, send.step, metric, detail, send.day)

        if is_machine and type_ in MACHINE_TYPES:
            found[key("bot_events")] += n
            found[key("machine_opened" if type_ == EventType.OPEN else "machine_clicked")] = 1
        elif type_ == EventType.CLICK:
            found[key("clicked")] = 1
            found[key("opened")] = 1
        elif type_ == EventType.OPEN:
            found[key("opened")] = 1
        elif type_ == EventType.UNSUBSCRIBE:
            found[key("unsubscribed", day)] += n
        elif type_ == EventType.BOUNCE and send.status == SendStatus.SENT:
            found[key("bounced")] += n
    last = max((at for at, stage in activity.changes if stage in CONVERTED), default=None)
    first_day: dict[str, str] = {}
    if last is not None:
        for send in activity.sends:
            if send.sent_at is not None and last >= send.sent_at:
                found[(send.id, None, send.scenario_id, send.step, "converted", "", send.day)] = 1
                first_day[send.scenario_id] = min(first_day.get(send.scenario_id, send.day), send.day)
    for scenario_id, day in first_day.items():
        found[(None, None, scenario_id, "", "converted_lead", "", day)] = 1
    hot = [at for at, stage in activity.changes if stage == Stage.HOT]
    for enrolment in activity.enrolments:
        first = next((at for at in hot if at >= enrolment.enrolled_at), None)
        if first is not None:
            waited = (first - enrolment.enrolled_at) // _MICROSECOND
            detail = str(waited).zfill(HOT_DIGITS)  # text that sorts as the number does
            found[(None, enrolment.id, enrolment.scenario_id, "", "hot", detail, enrolment.day)] = 1
    return dict(found)


def catch_up(
    store: Store,
    scoring: CompiledScoring | None,
    limit: int | None = None,
    batch: int = 1000,
    progress: Callable[[int], None] | None = None,
) -> int:
    """Recount the leads named since the last catch-up (at most `limit` names); returns how
    many names were handled (`progress` hears the running total after each batch)."""
    done = 0
    while limit is None or done < limit:
        handled = store.outcomes.catch_up_batch(lambda activity: outcomes_of(activity, scoring), batch)
        if not handled:
            break
        done += handled
        if progress is not None:
            progress(done)
    return done
