"""The checked-in corpus of tracking requests: people, mail-security scanners and privacy proxies.

Each line of `tests/data/tracking_corpus.jsonl` is one request as the tracking endpoints
record it (client address, user agent, seconds after delivery, the hidden link), with the
category it comes from and what it should be. The report printed here is the classification
rate of each category; the assertions are what the product promises: no known scanner or
proxy in it scores anything, and every person in it scores.
"""

from __future__ import annotations

import json
from collections import defaultdict
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from nurture.scenario.expr import EventRecord
from nurture.scoring.bots import network_part
from nurture.scoring.engine import CompiledScoring
from nurture.scoring.loader import load_scoring

ROOT = Path(__file__).resolve().parents[2]
CORPUS = ROOT / "tests" / "data" / "tracking_corpus.jsonl"
DELIVERED = datetime(2026, 3, 2, 9, tzinfo=UTC)
NOW = datetime(2026, 3, 9, 9, tzinfo=UTC)
GRADE_A = {"company_size": 1500, "industry": "Manufacturing", "job_title": "Head of Operations", "country": "DE"}
PEOPLE = ("person", "person_private_relay")
UNDECIDED = ("ambiguous",)


@pytest.fixture(scope="module")
def scoring() -> CompiledScoring:
    return load_scoring(ROOT / "scenarios" / "scoring.yaml")


def load_corpus() -> list[dict[str, Any]]:
    rows = []
    for number, line in enumerate(CORPUS.read_text(encoding="utf-8").splitlines(), start=1):
        row = json.loads(line)
        row["line"] = number
        rows.append(row)
    return rows


def as_event(row: dict[str, Any]) -> EventRecord:
    """The event the tracking endpoint records for this request."""
    sent_at = DELIVERED + timedelta(days=row["send"] % 5)
    props = {
        key: row[key]
        for key in ("send", "link", "ip", "user_agent", "honeypot", "seconds_after_delivery")
        if key in row
    }
    props["sent_at"] = sent_at.isoformat()
    return EventRecord(row["type"], sent_at + timedelta(seconds=row["seconds_after_delivery"]), props)


def classified(scoring: CompiledScoring) -> list[tuple[dict[str, Any], str, bool, str]]:
    """(row, verdict, counted, reasons) for every request, each lead's requests classified together."""
    by_lead: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for row in load_corpus():
        by_lead[row["lead"]].append(row)
    out = []
    for rows in by_lead.values():
        for row, verdict in zip(rows, scoring.classify([as_event(r) for r in rows]), strict=True):
            kind = "repeat" if verdict.kind == "human" and verdict.repeat else verdict.kind
            out.append((row, kind, verdict.counts, verdict.reason))
    return out


def test_corpus_classification_rate_of_each_category(scoring: CompiledScoring) -> None:
    results = classified(scoring)
    table: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    for row, kind, _counted, _ in results:
        table[row["category"]][kind] += 1
    report = ["category                 requests  human  repeat  suspect  machine  as expected"]
    for category in sorted(table):
        counts = table[category]
        rows = [r for r, *_ in results if r["category"] == category]
        right = sum(1 for r, kind, *_ in results if r["category"] == category and kind == r["expect"])
        report.append(
            f"{category:<24} {len(rows):>8} {counts['human']:>6} {counts['repeat']:>7} {counts['suspect']:>8} "
            f"{counts['machine']:>8}  {right / len(rows):>10.0%}"
        )
    print("\n" + "\n".join(report))
    wrong = [
        f"line {r['line']} ({r['category']}, {r['type']}): expected {r['expect']}, got {kind}: {why or 'no signal'}"
        for r, kind, _, why in results
        if kind != r["expect"]
    ]
    assert wrong == []
    assert len(table) >= 12  # people, proxies and scanners of every kind the product names


def test_no_known_scanner_or_proxy_in_the_corpus_scores_anything(scoring: CompiledScoring) -> None:
    leaks = [
        f"line {r['line']} ({r['category']})"
        for r, _kind, counted, _ in classified(scoring)
        if r["category"] not in PEOPLE + UNDECIDED and counted
    ]
    assert leaks == []
    machine_leads: dict[str, list[EventRecord]] = defaultdict(list)
    for row in load_corpus():
        if row["category"] not in PEOPLE + UNDECIDED:
            machine_leads[row["lead"]].append(as_event(row))
    assert len(machine_leads) >= 20
    for lead, events in machine_leads.items():
        result = scoring.evaluate(GRADE_A, events, NOW)
        assert (lead, result.engagement, result.hot) == (lead, 0, False)


def test_every_person_in_the_corpus_scores(scoring: CompiledScoring) -> None:
    people: dict[str, list[EventRecord]] = defaultdict(list)
    for row, kind, counted, why in classified(scoring):
        if row["category"] in PEOPLE:
            assert counted or kind == "repeat", f"line {row['line']}: a person's request scored nothing: {why}"
            people[row["lead"]].append(as_event(row))
    assert len(people) >= 8
    for lead, events in people.items():
        result = scoring.evaluate(GRADE_A, events, NOW)
        assert result.engagement > 0, lead
        assert result.machine_events == 0, lead


def test_verdicts_survive_keeping_only_the_network_part_of_addresses(scoring: CompiledScoring) -> None:
    """After `tracking_address_days` only the /24 (/48) of an address is kept; nothing changes."""
    full = [(row["line"], kind) for row, kind, _, _ in classified(scoring)]
    rows = load_corpus()
    by_lead: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for row in rows:
        by_lead[row["lead"]].append({**row, "ip": network_part(row["ip"])})
    truncated = []
    for lead_rows in by_lead.values():
        for row, verdict in zip(lead_rows, scoring.classify([as_event(r) for r in lead_rows]), strict=True):
            truncated.append((row["line"], "repeat" if verdict.kind == "human" and verdict.repeat else verdict.kind))
    assert sorted(truncated) == sorted(full)
