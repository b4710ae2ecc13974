"""The backtest's replay gives the score the model gives, at every instant of a lead's history.

`EngagementReplay` reuses verdicts and skips the explanation; `score_at` (the model's whole
`evaluate` over the events known at the instant) is the oracle. Random accounts of random
events — bursts of clicks, repeats, hidden-link requests, scanners, proxies, empty user
agents, events seconds and days apart, a lookback window that cuts through them — under
scoring files with and without decay, caps, account roll-up and its caps, suspect weights,
and leads that sales recycled.
"""

from __future__ import annotations

import ipaddress
import re
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from nurture.analytics.history import (
    Change,
    History,
    LeadHistory,
    deciding_series,
    engagement_series,
    score_at,
)
from nurture.scenario.expr import EventRecord
from nurture.scoring.bots import AgentRule, MachineData, Network
from nurture.scoring.engine import CompiledScoring
from nurture.scoring.model import Scoring
from nurture.scoring.replay import EngagementReplay
from nurture.vocabulary import Stage

START = datetime(2026, 3, 1, tzinfo=UTC)
MACHINES = MachineData(
    (
        Network("Scanner Inc", "scanner", (ipaddress.ip_network("10.9.0.0/16"),)),
        Network("Proxy Co", "proxy", (ipaddress.ip_network("10.8.0.0/16"),)),
    ),
    (
        AgentRule("ScanBot", "scanner", (re.compile("scanbot", re.IGNORECASE),)),
        AgentRule("ProxyFetch", "proxy", (re.compile("proxyfetch", re.IGNORECASE),)),
    ),
)

RULES: list[dict[str, Any]] = [
    {"name": "opened", "event": "open", "points": 1},
    {"name": "pricing", "event": "page_view", "match": {"url": "*pricing*"}, "points": 7},
    {"name": "clicked", "event": "click", "points": 3},
    {"name": "downloaded", "event": "download", "points": 9},
    {"name": "signal", "event": "custom:demo*", "points": 11},
]


def scoring_with(
    half_life: str,
    lookback: str,
    cap_per_day: int | None,
    cap_total: int | None,
    weight: float,
    account_cap: int | None,
    person_cap: int | None,
    suspect_weight: float,
    repeat_seconds: int,
) -> CompiledScoring:
    engagement = [dict(r) for r in RULES]
    engagement[2]["cap_per_day"] = cap_per_day
    engagement[1]["cap_total"] = cap_total
    model = Scoring.model_validate(
        {
            "engagement": engagement,
            "half_life": half_life,
            "lookback": lookback,
            "bots": {
                "suspect_weight": suspect_weight,
                "repeat_seconds": repeat_seconds,
                "repeat_machine": 3,
                "burst_clicks": 3,
                "burst_seconds": 5,
                "honeypot_seconds": 60,
                "user_agents": ["*evilscan*"],
            },
            "account": {"weight": weight, "cap": account_cap, "person_cap": person_cap},
            "hot": {"engagement": {"A": 40, "B": 50}},
            "routing": {"owners": [{"name": "Sam", "email": "sam@example.com"}]},
        }
    )
    return CompiledScoring(model, MACHINES)


scorings = st.builds(
    scoring_with,
    half_life=st.sampled_from(["30d", "1d", "6h", "90m"]),
    lookback=st.sampled_from(["180d", "2d", "20h", "1h"]),
    cap_per_day=st.sampled_from([None, 0, 4, 7]),
    cap_total=st.sampled_from([None, 10, 15]),
    weight=st.sampled_from([0.0, 0.5, 1.0, 0.3]),
    account_cap=st.sampled_from([None, 0, 5, 12]),
    person_cap=st.sampled_from([None, 0, 6]),
    suspect_weight=st.sampled_from([0.5, 0.0, 1.0, 0.25]),
    repeat_seconds=st.sampled_from([30, 0, 120]),
)

# Offsets from the previous event: the same second, seconds, minutes, hours, days.
gaps = st.sampled_from([0, 1, 2, 4, 20, 45, 61, 90, 600, 3600, 5 * 3600, 86400, 2 * 86400])
props = st.fixed_dictionaries(
    {},
    optional={
        "send": st.sampled_from([1, 2, 3, "s1", 1.0]),
        "link": st.sampled_from(["a", "b", "c", "d"]),
        "ip": st.sampled_from(["10.9.1.1", "10.8.3.4", "192.0.2.7", "", "not an ip"]),
        "user_agent": st.sampled_from(["Mozilla/5.0", "", "ScanBot/2", "ProxyFetch", "EvilScan 1", "  "]),
        "honeypot": st.sampled_from([True, "yes", False]),
        "seconds_after_delivery": st.sampled_from([0, 3, 50, 4000]),
        "url": st.sampled_from(["https://x.example/pricing", "https://x.example/blog"]),
        "proxy": st.sampled_from([True, "1"]),
    },
)
kinds = st.sampled_from(
    ["open", "click", "click", "click", "page_view", "download", "honeypot", "custom:demo_x", "reply"]
)


# Stored times are UTC; another zone's (whose days differ) takes the replay's other path.
zones = st.sampled_from([UTC, UTC, timezone(timedelta(hours=-5))])


@st.composite
def event_lists(draw: Any, size: int) -> list[EventRecord]:
    at = START + timedelta(seconds=draw(st.integers(0, 3 * 86400)))
    zone = draw(zones)
    events = []
    for _ in range(draw(st.integers(0, size))):
        at += timedelta(seconds=draw(gaps))
        events.append(EventRecord(draw(kinds), at.astimezone(zone), draw(props)))
    return draw(st.permutations(events))  # stored order is not time order


@st.composite
def accounts(draw: Any) -> History:
    leads = {}
    for lead_id in range(1, draw(st.integers(1, 4)) + 1):
        events = draw(event_lists(14))
        changes = []
        if draw(st.booleans()) and events:
            recycled = min(events, key=lambda e: e.at).at + timedelta(seconds=draw(gaps))
            changes.append(Change(recycled, Stage.REJECTED, Stage.RECYCLED, "recycled", "sales"))
        leads[lead_id] = LeadHistory(
            lead_id, f"p{lead_id}@acme.example", {}, "acme", START, Stage.WARM, True, events, changes
        )
    return History(leads, {"acme": list(leads)})


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(scoring=scorings, history=accounts())
def test_the_replay_scores_every_instant_as_the_model_does(scoring: CompiledScoring, history: History) -> None:
    for lead in history.leads.values():
        colleagues = history.colleague_events(lead)
        replay = EngagementReplay(scoring, lead.events, colleagues)
        instants = sorted({e.at for e in lead.events} | {e.at for e in colleagues})
        # Between events too, where decay and the lookback's edge are all that move.
        instants += [t + timedelta(seconds=s) for t in instants[:3] for s in (1, 59, 3601, 86401)]
        for t in instants:
            expected = score_at(scoring, lead, t, colleagues).engagement
            assert replay.at(t, lead.engagement_since(t)) == expected, t


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(scoring=scorings, history=accounts(), lines=st.sampled_from([(1, 5), (5, 25), (3, 9), (40, 60)]))
def test_the_backtest_series_are_the_models_scores(
    scoring: CompiledScoring, history: History, lines: tuple[int, int]
) -> None:
    since, until = START + timedelta(hours=6), START + timedelta(days=6)
    for lead in history.leads.values():
        colleagues = history.colleague_events(lead)
        series = engagement_series(scoring, history, lead, since, until)
        assert series == [(t, score_at(scoring, lead, t, colleagues).engagement) for t, _ in series]
        if not series:
            continue
        first, deciding = deciding_series(scoring, history, lead, since, until, *lines)
        assert first == series[0][0]
        for t, points in deciding:
            assert points == score_at(scoring, lead, t, colleagues).engagement
        # Every instant that reaches a line before the series stops is in it.
        reached = [(t, p) for t, p in series if p >= lines[0]]
        stop = next((t for t, p in series if p >= lines[1]), None)
        assert [x for x in deciding if x[1] >= lines[0]] == [x for x in reached if stop is None or x[0] <= stop]
