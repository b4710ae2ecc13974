"""Qualification analytics on seeded synthetic histories whose right answers are known."""

from __future__ import annotations

import random
import shutil
import statistics
import textwrap
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from nurture.analytics.backtest import Cut, backtest, parse_cuts, parse_thresholds
from nurture.analytics.drift import drift
from nurture.analytics.history import load_history
from nurture.analytics.learn import learn, read_outcomes
from nurture.analytics.nearmiss import near_misses, slices
from nurture.analytics.report import scenario_report
from nurture.clock import FakeClock
from nurture.errors import NurtureError, ValidationFailed
from nurture.lifecycle import change_stage
from nurture.scoring.engine import CompiledScoring
from nurture.scoring.loader import load_scoring
from nurture.store import Store
from nurture.store.db import make_engine
from nurture.store.migrate import upgrade
from nurture.store.tables import LEADS, SENDS
from tests.integration.conftest import ROOT, ticks, write_scenario
from tests.integration.test_daemon import import_csv, run
from tests.smtp_server import SmtpServer

WINDOW_START = datetime(2026, 1, 1, tzinfo=UTC)
WINDOW_END = datetime(2026, 3, 31, tzinfo=UTC)

# No decay, no caps, no account roll-up: each counted event is worth exactly its points,
# so the figures below can be computed by hand from the generator's own numbers.
SCORING = """\
scoring:
  fit:
    - name: big
      when: 'lead.company_size is not none and lead.company_size >= 500'
      points: 60
    - name: mid
      when: 'lead.company_size is not none and 100 <= lead.company_size < 500'
      points: 40
    - name: smallish
      when: 'lead.company_size is not none and 20 <= lead.company_size < 100'
      points: 20
    - name: manager
      when: 'lead.job_title is not none and "manager" in lead.job_title|lower'
      points: 15
  grades: {A: 60, B: 40, C: 20}
  engagement:
    - {name: page_view, event: page_view, points: 10}
    - {name: webinar, event: webinar_attended, points: 10}
  half_life: 100000d
  lookback: 3650d
  account: {weight: 0}
  hot:
    engagement: {A: 40, B: 60}
    warm_engagement: 10
  routing:
    owners:
      - {name: Dana, email: dana@sales.example}
"""


@pytest.fixture
def scoring(tmp_path: Path) -> tuple[Path, CompiledScoring]:
    path = tmp_path / "scoring.yaml"
    path.write_text(SCORING)
    return path, load_scoring(path)


@pytest.fixture
def store(db_url: str) -> Store:
    engine = make_engine(db_url)
    upgrade(engine)
    return Store(engine, FakeClock(WINDOW_END + timedelta(days=10)))


@dataclass
class Planted:
    email: str
    grade: str
    visits: list[datetime]
    converted: bool


def add_lead(store: Store, email: str, size: int, title: str | None = None, industry: str | None = None) -> int:
    with store.transaction() as conn:
        lead_id, _ = store.leads.upsert(
            conn, {"email": email, "company_size": size, "job_title": title, "industry": industry, "company": email}
        )
    return lead_id


def add_events(store: Store, lead_id: int, type_: str, times: list[datetime]) -> None:
    with store.transaction() as conn:
        for at in times:
            store.events.record(conn, lead_id, type_, at, {"url": "/docs"})


def stage(store: Store, lead_id: int, old: str, new: str, at: datetime, reason: str = "test") -> None:
    with store.transaction() as conn:
        change_stage(store, conn, lead_id, old, new, reason, "sales", at)


def plant_backtest_history(store: Store, seed: int = 7, leads: int = 60) -> list[Planted]:
    """Leads of grade A, B or D; each makes 0-9 page visits in the window; the more visits,
    the likelier sales accepted the lead."""
    rng = random.Random(seed)
    planted = []
    for n in range(leads):
        grade, size = rng.choice([("A", 1000), ("B", 200), ("D", 5)])
        visits = sorted(
            WINDOW_START + timedelta(days=rng.randrange(85), hours=rng.randrange(24)) for _ in range(rng.randrange(10))
        )
        visits = sorted(set(visits))
        converted = rng.random() < len(visits) / 10
        lead_id = add_lead(store, f"lead{n:03d}@synthetic.example", size)
        add_events(store, lead_id, "page_view", visits)
        if converted:
            stage(store, lead_id, "cold", "accepted", WINDOW_END + timedelta(days=1), "call booked")
        planted.append(Planted(f"lead{n:03d}@synthetic.example", grade, visits, converted))
    return planted


def test_backtest_counts_precision_recall_and_time_to_promotion_match_the_planted_history(
    store: Store, scoring: tuple[Path, CompiledScoring]
) -> None:
    planted = plant_backtest_history(store)
    model = scoring[1]
    thresholds = parse_thresholds("20:80:20")
    cuts = parse_cuts("A,AB", model)
    rows = backtest(
        model, load_history(store, model, WINDOW_START, WINDOW_END), WINDOW_START, WINDOW_END, thresholds, cuts
    )

    population = [p for p in planted if p.visits]
    converting = sum(p.converted for p in population)
    assert converting > 5 and len(population) > 40  # the seed gives a meaningful history
    by_key = {(r.cut, r.threshold): r for r in rows}
    for cut in ("A", "A+B"):
        for threshold in thresholds:
            needed = threshold // 10  # visits worth 10 points each, nothing decays
            promoted = [p for p in population if p.grade in cut and len(p.visits) >= needed]
            good = sum(p.converted for p in promoted)
            row = by_key[(cut, threshold)]
            assert (row.promoted, row.good, row.missed) == (len(promoted), good, converting - good)
            assert row.precision == (good / len(promoted) if promoted else None)
            assert row.recall == good / converting
            waits = [(p.visits[needed - 1] - p.visits[0]).total_seconds() / 86400 for p in promoted]
            assert row.median_days == (statistics.median(waits) if waits else None)
    # The model's own definition: A from 40 points (4 visits), B from 60 (6 visits), D never.
    current = by_key[("current", None)]
    expected = [
        p for p in population if (p.grade == "A" and len(p.visits) >= 4) or (p.grade == "B" and len(p.visits) >= 6)
    ]
    assert current.promoted == len(expected)
    # Too strict a line loses opportunities: recall falls as the threshold rises.
    recalls = [by_key[("A+B", t)].recall for t in thresholds]
    assert recalls == sorted(recalls, reverse=True) and recalls[0] > recalls[-1]


def test_backtest_ignores_scanner_clicks_like_the_live_model(
    store: Store, scoring: tuple[Path, CompiledScoring]
) -> None:
    model = scoring[1]
    lead_id = add_lead(store, "ada@synthetic.example", 1000)
    sent = WINDOW_START + timedelta(days=3)
    with store.transaction() as conn:
        for n in range(5):  # page views score; then five scanner visits score nothing
            store.events.record(conn, lead_id, "page_view", sent + timedelta(hours=n), {"url": "/a"})
            store.events.record(
                conn,
                lead_id,
                "page_view",
                sent + timedelta(days=1, seconds=n),
                {"url": "/b", "user_agent": "Barracuda/1.0 (bot)"},
            )
    [current, at_50, at_60] = backtest(
        model, load_history(store, model), WINDOW_START, WINDOW_END, [50, 60], [Cut(("A",))]
    )
    assert (current.promoted, at_50.promoted, at_60.promoted) == (1, 1, 0)


def test_near_misses_name_what_each_lead_lacks(store: Store, scoring: tuple[Path, CompiledScoring]) -> None:
    model = scoring[1]
    now = store.clock.now()
    day = now - timedelta(days=5)
    cases = {
        "close-b@x.example": (200, None, 5),  # B: 50 of 60 → 10 short
        "closer-b@x.example": (200, None, 4),  # wait: 40 → 20 short, not near
        "almost-a@x.example": (1000, None, 3),  # A: 30 of 40 → 10 short
        "fit-short@x.example": (50, "Sales Manager", 7),  # C (35 fit): engaged enough for B, 5 fit points short
        "far-d@x.example": (5, None, 9),  # D (0 fit): 40 fit points short
        "hot-a@x.example": (1000, None, 5),  # hot already
    }
    for email, (size, title, visits) in cases.items():
        lead_id = add_lead(store, email, size, title)
        add_events(store, lead_id, "page_view", [day + timedelta(hours=h) for h in range(visits)])
    misses = near_misses(model, load_history(store, model, now, now), now, engagement_gap=10, fit_gap=10)
    found = {m.email: m for m in misses}
    assert set(found) == {"close-b@x.example", "almost-a@x.example", "fit-short@x.example"}
    assert found["close-b@x.example"].lacks == ["10 more engagement points (grade B is hot from 60)"]
    assert found["fit-short@x.example"].fit_gap == 5
    assert found["fit-short@x.example"].lacks == ["5 more fit points for grade B: e.g. big (+60), mid (+40)"]
    assert slices(misses) == [("A", 35, 0), ("A", 30, 1), ("B", 55, 0), ("B", 50, 1)]


def test_drift_groups_rejected_promotions_by_the_rules_that_made_them_hot(
    store: Store, scoring: tuple[Path, CompiledScoring]
) -> None:
    model = scoring[1]
    start = WINDOW_START
    for n in range(10):  # hot through webinars: sales rejects 8 of 10
        lead_id = add_lead(store, f"webinar{n}@x.example", 1000)
        add_events(store, lead_id, "webinar_attended", [start + timedelta(days=d) for d in range(4)])
        stage(store, lead_id, "cold", "hot", start + timedelta(days=5))
        stage(
            store,
            lead_id,
            "hot",
            "rejected" if n < 8 else "accepted",
            start + timedelta(days=6),
            "Student" if n < 8 else "fit",
        )
    for n in range(10):  # hot through page views: sales rejects 1 of 10
        lead_id = add_lead(store, f"pages{n}@x.example", 1000)
        add_events(store, lead_id, "page_view", [start + timedelta(days=d) for d in range(4)])
        stage(store, lead_id, "cold", "hot", start + timedelta(days=5))
        stage(store, lead_id, "hot", "rejected" if n < 1 else "accepted", start + timedelta(days=6), "no budget")
    report = drift(model, load_history(store, model))
    rules = {r.rule: r for r in report.rules}
    assert (report.promotions, report.rejected) == (20, 9)
    assert (rules["webinar"].promoted, rules["webinar"].rejected, rules["webinar"].accepted) == (10, 8, 2)
    assert (rules["page_view"].promoted, rules["page_view"].rejected) == (10, 1)
    assert (rules["big"].promoted, rules["big"].rejected) == (20, 9)
    assert report.rules[0].rule == "webinar" and rules["webinar"].reasons.most_common(1) == [("student", 8)]


LEARN_SCORING = """\
# The shared hot-lead definition (comments and layout survive a proposal).
scoring:
  fit:
    - name: manufacturing
      when: 'lead.industry == "Manufacturing"'
      points: 30
    - name: has_title
      when: 'lead.job_title is not none'
      points: 30
  grades: {A: 60, B: 40, C: 20}
  engagement:
    - {name: webinar, event: webinar_attended, points: 10}
    - {name: page_view, event: page_view, points: 10}
  half_life: 100000d
  lookback: 3650d
  account: {weight: 0}
  hot:
    engagement: {A: 30, B: 40}
  routing:
    owners:
      - {name: Dana, email: dana@sales.example}
"""


def test_learned_weights_recover_the_planted_signal_and_only_propose(store: Store, tmp_path: Path) -> None:
    """Conversions depend on the industry and on webinars; job titles and page views are noise."""
    path = tmp_path / "scoring.yaml"
    path.write_text(LEARN_SCORING)
    model = load_scoring(path)
    rng = random.Random(11)
    rows = ["email,converted,at"]
    outcome_at = WINDOW_END
    for n in range(400):
        manufacturing, titled = rng.random() < 0.5, rng.random() < 0.5
        webinars, views = rng.randrange(4), rng.randrange(6)
        email = f"p{n:03d}@synthetic.example"
        lead_id = add_lead(
            store, email, 100, "Engineer" if titled else None, "Manufacturing" if manufacturing else "Retail"
        )
        add_events(store, lead_id, "webinar_attended", [WINDOW_START + timedelta(days=10 * i) for i in range(webinars)])
        add_events(store, lead_id, "page_view", [WINDOW_START + timedelta(days=3 * i, hours=1) for i in range(views)])
        odds = -3.0 + 2.5 * manufacturing + 1.2 * webinars
        converted = rng.random() < 1 / (1 + 2.718281828**-odds)
        rows.append(f"{email},{'yes' if converted else 'no'},{outcome_at.isoformat()}")
    rows.append("nobody@synthetic.example,no,")
    outcomes = tmp_path / "outcomes.csv"
    outcomes.write_text("\n".join(rows) + "\n")

    proposal = learn(model, LEARN_SCORING, str(path), load_history(store, model), read_outcomes(outcomes), outcome_at)
    points = {name: new for name, (_, new) in proposal.points.items()}
    assert points["manufacturing"] > 3 * points["has_title"]
    assert points["webinar"] > 3 * points["page_view"]
    assert points["manufacturing"] + points["has_title"] == 60  # fit keeps its scale
    assert proposal.weights["manufacturing"] == pytest.approx(2.5, abs=0.8)
    assert proposal.weights["webinar"] == pytest.approx(1.2, abs=0.4)
    assert proposal.held_out and proposal.unknown == ["nobody@synthetic.example"]
    assert proposal.before.precision is not None and proposal.after.recall is not None

    assert path.read_text() == LEARN_SCORING  # never rewrites the live model
    assert proposal.text.startswith("# The shared hot-lead definition")
    assert f"      points: {points['manufacturing']}\n" in proposal.text
    assert f"- {{name: webinar, event: webinar_attended, points: {points['webinar']}}}" in proposal.text
    assert "-      points: 30" in proposal.diff and f"+      points: {points['has_title']}" in proposal.diff
    load_scoring_text = tmp_path / "proposed.yaml"
    load_scoring_text.write_text(proposal.text)
    assert load_scoring(load_scoring_text).model.fit[0].points == points["manufacturing"]


def test_bad_outcome_rows_are_reported_by_line_and_nothing_is_learned(tmp_path: Path) -> None:
    path = tmp_path / "outcomes.csv"
    path.write_text(
        textwrap.dedent(
            """\
            email,converted,at
            ok@x.example,yes,2026-03-01T00:00:00Z
            broken,yes,
            maybe@x.example,perhaps,
            naive@x.example,no,2026-03-01T00:00:00
            """
        )
    )
    with pytest.raises(ValidationFailed) as failed:
        read_outcomes(path)
    text = str(failed.value)
    assert f"{path}:3: not an email address: 'broken'" in text
    assert f"{path}:4: converted must be yes/no" in text
    assert f"{path}:5: at needs a time zone offset" in text
    (tmp_path / "nocolumns.csv").write_text("mail,won\nx@y.example,1\n")
    with pytest.raises(NurtureError, match="needs the columns email and converted"):
        read_outcomes(tmp_path / "nocolumns.csv")


REPORTED = """
id: reported
name: Reported
entry:
  when: 'lead.source == "web"'
exit_when: [unsubscribed, bounced]
lead_fields: [whitepaper_title]
send_window:
  days: [mon, tue, wed, thu, fri, sat, sun]
  start: "00:00"
  end: "23:59"
  timezone: UTC
from: "Acme <hello@acme.example>"
steps:
  - id: hello
    type: send_email
    template: welcome
    subject: "Hello {{ lead.first_name }}"
  - id: pause
    type: wait
    duration: 2d
  - id: follow_up
    type: send_email
    template: case_study
    subject: "Case study for {{ lead.company }}"
"""
REPORT_LEADS = "email,first_name,company,source\n" + "".join(
    f"{name}@r.example,{name.title()},{name.title()} Ltd,web\n" for name in ("ann", "bob", "cho", "dee", "eve")
)


def test_scenario_report_matches_hand_computed_figures(
    db_url: str,
    make_daemon: Any,
    workspace: Path,
    smtp: SmtpServer,
    clock: FakeClock,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Five leads: Ann opens, clicks and turns hot; Bob opens twice; a scanner clicks Cho's
    email two seconds after delivery; Dee unsubscribes; Eve's address bounces."""
    write_scenario(workspace, REPORTED)
    shutil.copy(ROOT / "scenarios" / "scoring.yaml", workspace / "scenarios")
    daemon = make_daemon(db_url)
    import_csv(daemon, tmp_path, REPORT_LEADS)
    smtp.recorder.rcpt_replies["eve@r.example"] = "550 5.1.1 no such user"
    store = daemon.store

    def send_of(email: str, step: str) -> Any:
        with store.reading() as conn:
            return conn.execute(
                select(SENDS.c.id, SENDS.c.lead_id, SENDS.c.sent_at)
                .join(LEADS, LEADS.c.id == SENDS.c.lead_id)
                .where(LEADS.c.email == email, SENDS.c.step == step)
            ).one()

    def engage(email: str, step: str, type_: str, after: timedelta, **props: Any) -> None:
        send = send_of(email, step)
        with store.transaction() as conn:
            store.events.record(
                conn,
                send.lead_id,
                type_,
                send.sent_at + after,
                {"send": send.id, "sent_at": send.sent_at.isoformat(), **props},
            )

    run(ticks(daemon, clock))
    enrolled_at = clock.now()
    engage("ann@r.example", "hello", "open", timedelta(hours=1))
    engage("ann@r.example", "hello", "click", timedelta(hours=1, minutes=1), link="whitepaper")
    engage("bob@r.example", "hello", "open", timedelta(hours=2))
    engage("bob@r.example", "hello", "open", timedelta(hours=3))
    engage("cho@r.example", "hello", "click", timedelta(seconds=2), link="whitepaper")
    engage("dee@r.example", "hello", "unsubscribe", timedelta(hours=1), via="link")
    clock.advance(timedelta(hours=4))
    run(ticks(daemon, clock, timedelta(days=2, hours=1), timedelta(hours=1)))
    engage("bob@r.example", "follow_up", "open", timedelta(hours=5))
    ann = send_of("ann@r.example", "follow_up")
    hot_at = ann.sent_at + timedelta(hours=6)
    with store.transaction() as conn:
        change_stage(store, conn, ann.lead_id, "cold", "hot", "grade A with engagement 45", "qualify", hot_at)

    compiled = daemon.catalog.current["reported"]
    report = scenario_report(store, compiled, daemon.catalog.scoring)
    rows = {r.step: r for r in report.steps}
    figures = ("entered", "sent", "delivered", "opened", "clicked", "unsubscribed", "bounced", "converted")
    assert [getattr(rows["hello"], f) for f in figures] == [5, 4, 4, 2, 1, 1, 1, 1]
    assert rows["hello"].bot_events == 1
    assert rows["pause"].entered == 5
    assert [getattr(rows["follow_up"], f) for f in figures] == [3, 3, 3, 1, 0, 0, 0, 1]
    assert (report.enrolled, report.hot, report.finished) == (
        5,
        1,
        {"bounced": 1, "unsubscribed": 1, "reached the end": 3},
    )
    assert report.median_time_to_hot == hot_at - enrolled_at
    totals = report.totals()
    assert (totals.sent, totals.opened, totals.clicked, totals.converted) == (7, 3, 1, 1)
    assert rows["hello"].rate("opened") == 0.5
    # Read two leads at a time (as a large scenario is read, a few thousand at a time): the same report.
    reading = store.reports.scenario_activity
    monkeypatch.setattr(
        store.reports, "scenario_activity", lambda sid, since=None, until=None: reading(sid, since, until, chunk=2)
    )
    assert scenario_report(store, compiled, daemon.catalog.scoring) == report
