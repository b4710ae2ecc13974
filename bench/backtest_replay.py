"""The backtest's replay on a synthetic history in memory: accounts of 20, lines they reach.

    PYTHONPATH=src python bench/backtest_replay.py [accounts] [--profile]

Prints the leads replayed, the instants scored, the seconds per replayed lead and the
backtest's table (so two versions of the code can be compared on the same history); with
--profile, cProfile's top functions by cumulative time. No database: the history is built
with a fixed seed, so each run replays the same events.
"""

from __future__ import annotations

import cProfile
import os
import pstats
import random
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from nurture.analytics import history as history_module
from nurture.analytics.backtest import backtest, parse_cuts, parse_thresholds
from nurture.analytics.history import Change, History, LeadHistory
from nurture.scenario.expr import EventRecord
from nurture.scoring.loader import load_scoring
from nurture.vocabulary import Stage

ROOT = Path(__file__).resolve().parents[1]
SINCE = datetime(2026, 3, 1, tzinfo=UTC)
UNTIL = SINCE + timedelta(days=7)
MEMBERS = 20
FIELDS = {"company_size": 1500, "industry": "Manufacturing", "job_title": "Head of Operations", "country": "DE"}


def synthetic(accounts: int, seed: int = 17) -> History:
    rng = random.Random(seed)
    leads: dict[int, LeadHistory] = {}
    by_account: dict[str, list[int]] = {}
    lead_id = 0
    for a in range(accounts):
        name = f"account{a}"
        by_account[name] = []
        for _ in range(MEMBERS):
            lead_id += 1
            events = []
            for send in range(rng.randint(2, 6)):
                sent = SINCE - timedelta(days=30) + timedelta(seconds=rng.randint(0, 37 * 86400))
                ident = lead_id * 100 + send
                events.append(EventRecord("open", sent + timedelta(minutes=rng.randint(1, 600)), {"send": ident}))
                if rng.random() < 0.6:
                    at = sent + timedelta(minutes=rng.randint(1, 900))
                    events.append(EventRecord("click", at, {"send": ident, "link": f"l{rng.randint(1, 3)}"}))
                    if rng.random() < 0.2:  # a scanner's burst on the same send
                        for k in range(3):
                            events.append(
                                EventRecord("click", sent + timedelta(seconds=2 + k), {"send": ident, "link": f"l{k}"})
                            )
            for _ in range(rng.randint(0, 4)):
                at = SINCE - timedelta(days=30) + timedelta(seconds=rng.randint(0, 37 * 86400))
                url = "https://x.example/pricing" if rng.random() < 0.3 else "https://x.example/blog"
                events.append(EventRecord("page_view", at, {"url": url}))
            changes = (
                [Change(SINCE + timedelta(days=9), Stage.HOT, Stage.ACCEPTED, "", "sales")]
                if rng.random() < 0.1
                else []
            )
            leads[lead_id] = LeadHistory(
                lead_id, f"p{lead_id}@{name}.example", dict(FIELDS), name, SINCE, Stage.WARM, True, events, changes
            )
            by_account[name].append(lead_id)
    return History(leads, by_account)


def main() -> None:
    accounts = int(next((a for a in sys.argv[1:] if a.isdigit()), "50"))
    scoring = load_scoring(ROOT / "scenarios" / "scoring.yaml")
    history = synthetic(accounts)
    thresholds, cuts = parse_thresholds("5:25:5"), parse_cuts(None, scoring)
    calls = {"leads": 0, "instants": 0}
    deciding = history_module.deciding_series

    def counted(*args, **kwargs):  # type: ignore[no-untyped-def]
        first, series = deciding(*args, **kwargs)
        calls["leads"] += 1
        calls["instants"] += len(series)
        return first, series

    import nurture.analytics.backtest as backtest_module

    backtest_module.deciding_series = counted  # type: ignore[assignment]
    profile = cProfile.Profile() if "--profile" in sys.argv else None
    started = time.perf_counter()
    if profile:
        profile.enable()
    rows = backtest(scoring, history, SINCE, UNTIL, thresholds, cuts)
    if profile:
        profile.disable()
    seconds = time.perf_counter() - started
    print(f"load average {os.getloadavg()[0]:.2f}; {len(history.leads)} leads in accounts of {MEMBERS}")
    print(
        f"replayed {calls['leads']} leads, {calls['instants']} instants scored, {seconds:.2f} s, "
        f"{1000 * seconds / max(calls['leads'], 1):.2f} ms a replayed lead"
    )
    for row in rows:
        print(row)
    if profile:
        pstats.Stats(profile).sort_stats("cumulative").print_stats(12)


if __name__ == "__main__":
    main()
