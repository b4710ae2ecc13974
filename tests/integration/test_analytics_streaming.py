"""The analytics read the history a chunk of whole accounts at a time, only the leads they can
use, and give exactly the figures of the whole history read at once."""

from __future__ import annotations

import random
import statistics
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from nurture.analytics import backtest as backtest_module
from nurture.analytics import drift as drift_module
from nurture.analytics import learn as learn_module
from nurture.analytics import nearmiss as nearmiss_module
from nurture.analytics.backtest import Cut, backtest, parse_cuts, parse_thresholds
from nurture.analytics.drift import drift
from nurture.analytics.history import (
    Ceilings,
    History,
    StoredHistory,
    engagement_series,
    first_at_or_above,
    load_history,
    score_at,
)
from nurture.analytics.learn import Outcome, learn
from nurture.analytics.nearmiss import near_misses
from nurture.clock import FakeClock
from nurture.lifecycle import change_stage
from nurture.scoring.engine import CompiledScoring
from nurture.scoring.loader import load_scoring
from nurture.store import Store
from nurture.store.db import make_engine
from nurture.store.migrate import upgrade

START = datetime(2026, 2, 1, tzinfo=UTC)
END = datetime(2026, 2, 21, tzinfo=UTC)
NOW = END + timedelta(days=2)

SCORING = """\
scoring:
  fit:
    - name: big
      when: 'lead.company_size is not none and lead.company_size >= 500'
      points: 40
    - name: mid
      when: 'lead.company_size is not none and 100 <= lead.company_size < 500'
      points: 25
    - name: manager
      when: 'lead.job_title is not none and "manager" in lead.job_title|lower'
      points: 20
  grades: {A: 60, B: 40, C: 20}
  engagement:
    - {name: pricing, event: page_view, match: {url: "*pricing*"}, points: 10, cap_per_day: 10, cap_total: 30}
    - {name: page_view, event: page_view, points: 2, cap_per_day: 6}
    - {name: click, event: click, points: 5, cap_per_day: 10}
    - {name: webinar, event: webinar_attended, points: 15, cap_total: 15}
    - {name: inquiry, event: inquiry, points: 30}
  half_life: 20d
  lookback: 30d
  account:
    by: BY
    weight: 0.5
    cap: 12
    person_cap: 25
  hot:
    engagement: {A: 30, B: 45}
    min_own_engagement: 10
    warm_engagement: 10
  routing:
    owners:
      - {name: Dana, email: dana@sales.example}
"""

# Company names as people type them: the same account written differently, names the
# database lower-cases otherwise than Python, and leads in no account at all.
COMPANIES = [
    "Acme",
    "acme",
    "  Acme ",
    "ACME\t",
    "Nordwerk",
    "NORDWERK",
    "Ünïcorp",
    "ÜNÏCORP",
    "Smallco",
    "Bigco",
    "Bigco ",
    "Lonely Ltd",
    "Widgets",
    "Gadgets",
    None,
    "",
    "   ",
]
DOMAINS = ["acme.example", "nordwerk.example", "smallco.example", "gmail.com", "ACME.example"]
REASONS = ["No budget", "no budget ", "Student", "student", "Not a decision maker", "Company too small"]


def plant(store: Store, seed: int, leads: int = 90) -> list[Outcome]:
    rng = random.Random(seed)
    outcomes = []
    for n in range(leads):
        domain = rng.choice(DOMAINS) if n % 2 else f"firm{rng.randrange(12)}.example"
        email = f"p{n:03d}@{'x@' if n % 29 == 0 else ''}{domain}"
        with store.transaction() as conn:
            lead_id, _ = store.leads.upsert(
                conn,
                {
                    "email": email,
                    "company": rng.choice(COMPANIES),
                    "company_size": rng.choice([None, 20, 150, 800]),
                    "job_title": rng.choice([None, "Engineer", "IT Manager"]),
                },
            )
            for _ in range(rng.randrange(12)):
                at = START + timedelta(days=rng.uniform(-35, 25))
                kind = rng.choice(["page_view", "page_view", "click", "webinar_attended", "inquiry", "open"])
                props: dict[str, Any] = {"url": rng.choice(["/docs", "/pricing", "/blog"])}
                if kind in ("click", "open"):
                    sent = at - timedelta(seconds=rng.choice([3, 600, 7200]))
                    props = {"send": rng.randrange(5), "sent_at": sent.isoformat(), "link": rng.choice("abc")}
                store.events.record(conn, lead_id, kind, at, props)
            stage, at = "cold", START + timedelta(days=rng.uniform(-10, 20))
            for _ in range(rng.randrange(4)):
                new = rng.choice(["hot", "hot", "rejected", "accepted", "recycled", "customer", "warm"])
                if new == stage:
                    continue
                change_stage(store, conn, lead_id, stage, new, rng.choice(REASONS), "sales", at)
                stage, at = new, at + timedelta(days=rng.uniform(0.5, 6))
        outcomes.append(Outcome(email.lower(), rng.random() < 0.45, NOW - timedelta(days=rng.randrange(15)), n + 2))
    outcomes.append(Outcome("nobody@x.example", False, None, leads + 2))
    return outcomes


@pytest.fixture(params=["company", "email_domain"])
def scoring(request: pytest.FixtureRequest, tmp_path: Path) -> CompiledScoring:
    path = tmp_path / "scoring.yaml"
    path.write_text(SCORING.replace("BY", request.param))
    return load_scoring(path)


def test_streamed_analytics_give_the_figures_of_the_whole_history(db_url: str, scoring: CompiledScoring) -> None:
    store = Store(make_engine(db_url), FakeClock(NOW))
    upgrade(store.engine)
    outcomes = plant(store, seed=5)

    def stored(scope: Any, since: datetime | None = None, until: datetime | None = None) -> StoredHistory:
        return StoredHistory(store, scoring, scope, since, until, leads_per_chunk=4)

    window = stored(backtest_module.scope(START, END), START, END)
    chunks = list(window)
    assert len(chunks) > 5  # several chunks, each of whole accounts
    for chunk in chunks:
        for members in chunk.by_account.values():
            assert all(chunk.leads[m].account == chunk.leads[members[0]].account for m in members)
    read = [lead_id for chunk in chunks for lead_id in chunk.leads]
    assert len(read) == len(set(read))  # no lead twice

    thresholds, cuts = parse_thresholds("10:60:10"), parse_cuts(None, scoring)
    whole = backtest(scoring, load_history(store, scoring, START, END), START, END, thresholds, cuts)
    assert backtest(scoring, window, START, END, thresholds, cuts) == whole
    assert whole[0].promoted > 0 and whole[0].converting > 0

    whole_misses = near_misses(scoring, load_history(store, scoring, NOW, NOW), NOW, 40, 30)
    assert near_misses(scoring, stored(nearmiss_module.scope(), NOW, NOW), NOW, 40, 30) == whole_misses
    assert whole_misses

    def drift_figures(report: drift_module.DriftReport) -> Any:
        rules = [(r.rule, r.kind, r.promoted, r.rejected, r.accepted, list(r.reasons.items())) for r in report.rules]
        return report.promotions, report.rejected, rules

    whole_drift = drift(scoring, load_history(store, scoring))
    assert drift_figures(drift(scoring, stored(drift_module.scope()))) == drift_figures(whole_drift)
    assert whole_drift.rejected > 0

    text = SCORING.replace("BY", scoring.model.account.by)
    whole_proposal = learn(scoring, text, "scoring.yaml", load_history(store, scoring), outcomes, NOW)
    assert learn(scoring, text, "scoring.yaml", stored(learn_module.scope(outcomes)), outcomes, NOW) == whole_proposal
    assert whole_proposal.held_out and whole_proposal.unknown == ["nobody@x.example"]


def replayed_in_full(
    scoring: CompiledScoring, history: History, thresholds: list[int], cuts: list[Cut]
) -> list[tuple[str, int | None, int, int, int, float | None]]:
    """The backtest as first written: every lead of the population replayed at every instant."""
    population = []
    for lead in history.leads.values():
        if any(START <= e.at <= END for e in lead.events):
            series = engagement_series(scoring, history, lead, START, END)
            population.append((lead, scoring.fit(lead.fields)[1], series[0][0], series))
    converting = sum(1 for lead, *_ in population if lead.converted)
    rules: list[tuple[str, int | None, dict[str, int]]] = [
        ("current", None, {str(g): n for g, n in scoring.model.hot.engagement.items()})
    ]
    rules += [(cut.label, t, dict.fromkeys(cut.grades, t)) for cut in cuts for t in thresholds]
    rows = []
    for label, threshold, rule in rules:
        waits = []
        good = 0
        for lead, grade, first, series in population:
            crossed = first_at_or_above(series, rule[grade]) if grade in rule else None
            if crossed is not None:
                waits.append((crossed - first).total_seconds() / 86400)
                good += lead.converted
        rows.append((label, threshold, len(waits), good, converting, statistics.median(waits) if waits else None))
    return rows


@pytest.mark.parametrize("thresholds", ["1:9:2", "5:60:5", "40:90:10"])
def test_the_backtest_replaying_only_what_decides_gives_the_figures_of_a_full_replay(
    db_url: str, scoring: CompiledScoring, thresholds: str
) -> None:
    store = Store(make_engine(db_url), FakeClock(NOW))
    upgrade(store.engine)
    plant(store, seed=21)
    history = load_history(store, scoring, START, END)
    lines, cuts = parse_thresholds(thresholds), parse_cuts("A,AB,ABC,ABCD", scoring)
    rows = backtest(scoring, history, START, END, lines, cuts)
    figures = [(r.cut, r.threshold, r.promoted, r.good, r.converting, r.median_days) for r in rows]
    assert figures == replayed_in_full(scoring, history, lines, cuts)
    assert any(r.promoted for r in rows)


def test_no_replayed_engagement_is_above_the_ceiling_that_lets_analyses_skip_a_lead(
    db_url: str, scoring: CompiledScoring
) -> None:
    store = Store(make_engine(db_url), FakeClock(NOW))
    upgrade(store.engine)
    plant(store, seed=13)
    history = load_history(store, scoring)
    ceilings = Ceilings(scoring, history)
    for lead in history.leads.values():
        colleagues = history.colleague_events(lead)
        for at in {e.at for e in lead.events} | {e.at for e in colleagues}:
            engagement = score_at(scoring, lead, at, colleagues).engagement
            assert engagement <= ceilings.of(lead)


def test_an_analysis_reads_only_the_leads_it_can_use_with_their_accounts(db_url: str, scoring: CompiledScoring) -> None:
    store = Store(make_engine(db_url), FakeClock(NOW))
    upgrade(store.engine)
    plant(store, seed=9)
    with store.transaction() as conn:  # active before the window only, each its own account
        for n in range(3):
            lead_id, _ = store.leads.upsert(conn, {"email": f"quiet@quiet{n}.example", "company": f"Quiet {n}"})
            store.events.record(conn, lead_id, "page_view", START - timedelta(days=50), {"url": "/docs"})
    everyone = load_history(store, scoring)
    in_window = {lead.id for lead in everyone.leads.values() if any(START <= e.at <= END for e in lead.events)}
    accounts = {everyone.leads[i].account for i in in_window} - {None, ""}
    expected = in_window | {lead.id for lead in everyone.leads.values() if lead.account in accounts}
    read = {
        lead_id
        for chunk in StoredHistory(store, scoring, backtest_module.scope(START, END), START, END, leads_per_chunk=4)
        for lead_id in chunk.leads
    }
    assert expected <= read < set(everyone.leads)
