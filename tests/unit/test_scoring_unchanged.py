"""Scores of randomized leads stay exactly what they were before scoring was made faster.

`tests/data/scores_before_speedup.txt` holds, for 355 seeded random leads in accounts (tracking
events from the corpus's people and machines, bursts, repeats, honeypots, caps, decay,
recycled engagement, scenario adjustments), the fit, grade, engagement and a digest of the
whole `ScoreResult` (every contribution, discount, verdict and the account part) as the
scoring engine computed them before the qualify job was optimised. The job's path (each
person's own engagement computed once, shared by the account and the lead) and the plain
path (`evaluate` from the events) must both reproduce them.
"""

from __future__ import annotations

import hashlib
import json
import random
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from nurture.scenario.expr import EventRecord
from nurture.scoring.engine import AccountAggregate, CompiledScoring
from nurture.scoring.loader import load_scoring

ROOT = Path(__file__).resolve().parents[2]
EXPECTED = ROOT / "tests" / "data" / "scores_before_speedup.txt"
NOW = datetime(2026, 11, 20, 12, 0, tzinfo=UTC)
TYPES = ["open"] * 4 + ["click"] * 4 + ["page_view"] * 3
TYPES += ["download", "form_fill", "honeypot", "custom", "webinar_registered", "webinar_attended", "inquiry", "reply"]

Lead = tuple[str | None, dict[str, Any], list[EventRecord], datetime | None, int]


def _corpus() -> tuple[list[str], list[str], list[str], list[str]]:
    rows = [json.loads(line) for line in (ROOT / "tests" / "data" / "tracking_corpus.jsonl").open(encoding="utf-8")]
    people = [r for r in rows if r["category"] == "person"]
    ips = [*sorted({r["ip"] for r in rows if r.get("ip")}), "", "not-an-ip", "17.1.2.3", "40.107.1.1"]
    agents = [*sorted({r["user_agent"] for r in rows if "user_agent" in r}), "", "  ", "curl/8"]
    return (
        ips,
        sorted({r["ip"] for r in people if r.get("ip")}),
        agents,
        sorted({r["user_agent"] for r in people if r.get("user_agent")}),
    )


IPS, PEOPLE_IPS, AGENTS, PEOPLE_AGENTS = _corpus()


def _event(rng: random.Random, at: datetime) -> EventRecord:
    type_ = rng.choice(TYPES)
    props: dict[str, Any] = {}
    if rng.random() < 0.8:
        props["send"] = rng.choice([1, 2, 3, "4", None, 5.0])
    if type_ in ("click", "honeypot") or rng.random() < 0.1:
        props["link"] = rng.choice(["a", "b", "c", "d", None])
    if rng.random() < 0.7:
        props["ip"] = rng.choice(PEOPLE_IPS) if rng.random() < 0.6 else rng.choice(IPS)
    if rng.random() < 0.7:
        props["user_agent"] = rng.choice(PEOPLE_AGENTS) if rng.random() < 0.6 else rng.choice(AGENTS)
    timing = rng.random()
    if timing < 0.4:
        props["seconds_after_delivery"] = rng.choice([0, 1, 5, 9, 10, 11, 60, 3600, 99999, -3, 2.5, float("inf")])
    elif timing < 0.55:
        sent = at - timedelta(seconds=rng.randint(0, 100))
        formats = [sent.isoformat(), "bad", "2026-01-01T00:00:00", sent.strftime("%Y-%m-%dT%H:%M:%SZ")]
        props["sent_at"] = rng.choice(formats)
    if rng.random() < 0.05:
        props["proxy"] = rng.choice([True, "yes", "0", 1])
    if type_ == "click" and rng.random() < 0.05:
        props["honeypot"] = rng.choice([True, "true", False])
    if type_ == "page_view":
        props["url"] = rng.choice(["/pricing", "/blog/x", "https://x.example/pricing?a", "/", None, 5])
    if type_ == "custom":
        props["name"] = rng.choice(["login", "inquiry", "download"])
    return EventRecord(type_, at, props, str(rng.randint(1, 10**9)))


def _events(rng: random.Random) -> list[EventRecord]:
    found: list[EventRecord] = []
    for _ in range(rng.choice([0, 0, 1, 2, 3, 5, 8, 12, 20, 40])):
        at = NOW - timedelta(seconds=rng.randint(-3600, 200 * 86400))
        found.append(_event(rng, at))
        while rng.random() < 0.5:  # clusters: bursts, repeats, a hidden link near a click
            at += timedelta(seconds=rng.choice([0, 1, 2, 3, 10, 29, 31, 59, 61, 120]))
            nearby = _event(rng, at)
            if rng.random() < 0.5:
                nearby.type, nearby.props = found[-1].type, dict(found[-1].props)
            found.append(nearby)
    rng.shuffle(found)
    return sorted(found, key=lambda e: e.at) if rng.random() < 0.8 else found


def random_leads(seed: int = 17, accounts: int = 120) -> list[Lead]:
    """(account key, fields, events, engagement_since, adjustment) of seeded random leads."""
    rng = random.Random(seed)
    leads: list[Lead] = []
    for number in range(accounts):
        key = f"company {number}" if rng.random() < 0.8 else None
        for _ in range(rng.choice([1, 1, 2, 3, 5, 8])):
            fields = {
                "id": len(leads) + 1,
                "email": f"lead{len(leads) + 1}@c{number}.example",
                "company": key,
                "company_size": rng.choice([None, 5, 200, 999, 1000, 5000]),
                "industry": rng.choice([None, "Manufacturing", "SaaS", "Logistics"]),
                "job_title": rng.choice([None, "Head of Operations", "engineer", "CTO", "部長"]),
                "country": rng.choice([None, "US", "JP", "BR"]),
            }
            since = rng.choice([None, None, None, NOW - timedelta(days=rng.randint(0, 100))])
            leads.append((key, fields, _events(rng), since, rng.choice([0, 0, 0, 5, -10, 30])))
    return leads


def plain_scores(scoring: CompiledScoring, leads: list[Lead]) -> Iterator[tuple[dict[str, Any], Any]]:
    """Each lead's result the simple way: the account from its members' events, the lead from its own."""
    members: dict[str, list[Lead]] = {}
    for lead in leads:
        if lead[0] is not None:
            members.setdefault(lead[0], []).append(lead)
    aggregates = {
        key: scoring.account_aggregate(key, [(f["id"], f["email"], evs, since) for _, f, evs, since, _ in people], NOW)
        for key, people in members.items()
    }
    for key, fields, events, since, adjustment in leads:
        account = aggregates.get(key) if key is not None else None
        yield (
            fields,
            scoring.evaluate(
                fields, events, NOW, engagement_since=since, adjustment=adjustment, account=account, member=fields["id"]
            ),
        )


def job_scores(scoring: CompiledScoring, leads: list[Lead]) -> Iterator[tuple[dict[str, Any], Any]]:
    """The qualify job's way: each person's own engagement once, for the account and the lead."""
    own = {fields["id"]: scoring.own(events, NOW, since) for _, fields, events, since, _ in leads}
    members: dict[str, list[Lead]] = {}
    for lead in leads:
        if lead[0] is not None:
            members.setdefault(lead[0], []).append(lead)
    aggregates: dict[str, AccountAggregate] = {
        key: scoring.aggregate_of(key, [(f["id"], f["email"], own[f["id"]].points) for _, f, *_ in people])
        for key, people in members.items()
    }
    for key, fields, events, since, adjustment in leads:
        account = aggregates.get(key) if key is not None else None
        yield (
            fields,
            scoring.evaluate(
                fields,
                events,
                NOW,
                engagement_since=since,
                adjustment=adjustment,
                account=account,
                member=fields["id"],
                own=own[fields["id"]],
            ),
        )


def lines(results: Iterator[tuple[dict[str, Any], Any]]) -> list[str]:
    return [
        f"{fields['id']} fit {r.fit} {r.grade} engagement {r.engagement} own {r.own} hot {r.hot} "
        f"{hashlib.sha256(repr(r).encode()).hexdigest()[:16]}"
        for fields, r in results
    ]


@pytest.fixture(scope="module")
def scoring() -> CompiledScoring:
    return load_scoring(ROOT / "scenarios" / "scoring.yaml")


def test_random_leads_score_exactly_as_before(scoring: CompiledScoring) -> None:
    expected = EXPECTED.read_text(encoding="utf-8").splitlines()
    assert lines(plain_scores(scoring, random_leads())) == expected


def test_the_job_scores_random_leads_exactly_as_before(scoring: CompiledScoring) -> None:
    expected = EXPECTED.read_text(encoding="utf-8").splitlines()
    assert lines(job_scores(scoring, random_leads())) == expected
