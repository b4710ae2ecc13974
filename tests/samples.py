"""Every email the sample scenarios send, composed as the daemon composes it, for tests that
look at the messages themselves (spam scoring, deliverability warnings, DKIM)."""

from __future__ import annotations

import csv
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from nurture.mail.compose import Composer
from nurture.mail.message import BuiltMessage
from nurture.scenario.loader import load_scenario, scenario_files
from nurture.scenario.model import SendEmail
from nurture.vocabulary import STANDARD_FIELDS

ROOT = Path(__file__).resolve().parent.parent
SENT_AT = datetime(2026, 3, 3, 14, 30, tzinfo=UTC)


@dataclass(frozen=True)
class SampleEmail:
    scenario_id: str
    step_id: str
    template: str
    message: BuiltMessage


def _sample_lead(source: str) -> dict[str, Any]:
    with (ROOT / "examples" / "leads.csv").open(encoding="utf-8") as handle:
        row = next(r for r in csv.DictReader(handle) if r["source"] == source)
    lead: dict[str, Any] = {name: row.get(name) or None for name in STANDARD_FIELDS}
    lead.update(id=7, custom={k: v for k, v in row.items() if k not in STANDARD_FIELDS and v}, owner=None)
    lead.update(score_fit=20, score_engagement=15, grade="B", company_size=int(row["company_size"] or 0))
    return lead


def sample_emails(composer: Composer | None = None) -> list[SampleEmail]:
    """One composed message per send step of every sample scenario."""
    loaded = [load_scenario(path) for path in scenario_files([ROOT / "scenarios"]) if path.stem != "scoring"]
    composer = composer or sample_composer()
    composer.scenario_names = {s.id: s.scenario.name for s in loaded}
    emails = []
    send_id = 100
    for item in loaded:
        scenario = item.scenario
        source = (scenario.entry.source or ["seminar" if "seminar" in scenario.id else "whitepaper"])[0]
        lead = _sample_lead(source)
        for step in scenario.steps:
            if not isinstance(step, SendEmail):
                continue
            send_id += 1
            row = {
                "id": send_id,
                "scenario_id": scenario.id,
                "template": step.template,
                "subject": step.subject,
                "sender": step.from_ or scenario.from_,
                "reply_to": step.reply_to,
                "idempotency_key": f"e{send_id}-{step.id}",
            }
            emails.append(SampleEmail(scenario.id, step.id, step.template, composer.compose(row, lead, SENT_AT)))
    return emails


def sample_composer(**options: Any) -> Composer:
    return Composer(
        ROOT / "email_templates",
        "https://go.acme-analytics.example",
        "sample-secret",
        "acme-analytics.example",
        "unsubscribe@acme-analytics.example",
        **options,
    )
