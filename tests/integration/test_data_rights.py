"""Consent decides what is sent; an export shows everything; an erasure leaves no trace.

Real daemon, real SMTP, SQLite and PostgreSQL."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import Text, cast, column, func, inspect, or_, select, table

from nurture.consent.erasure import keyed_hash
from nurture.consent.model import ConsentSource, ConsentStatus
from nurture.daemon import Daemon
from nurture.leads import erase_person, export_person, import_leads
from nurture.lifecycle import change_stage, log_activity
from nurture.vocabulary import NotificationStatus, SendStatus
from tests.integration.conftest import ROOT, tick
from tests.smtp_server import SmtpServer

HEAD = (
    "email,first_name,last_name,company,company_size,industry,job_title,country,timezone,source,"
    "consent,consent_topic,consent_at,consent_source,consent_wording,consent_ip\n"
)
LEADS = HEAD + (
    "jane.roe@quillfeather.example,Jane,Roe,Quillfeather Analytics,800,Manufacturing,COO,DE,Europe/Berlin,"
    "whitepaper,granted,marketing,2026-02-20T10:00:00+01:00,form,whitepaper-form-v2,198.51.100.7\n"
    "max@nordwerk.example,Max,Keller,Nordwerk,1500,Manufacturing,CTO,DE,Europe/Berlin,whitepaper,"
    "yes,marketing,2026-02-21,import,fair-2026,\n"
    "kai@nordwerk.example,Kai,Berg,Nordwerk,1500,Manufacturing,Engineer,DE,Europe/Berlin,whitepaper,,,,,,\n"
    "sam@tinyshop.example,Sam,Poor,Tiny Shop,5,Retail,Owner,US,UTC,whitepaper,,,,,,\n"
)
PERSON = ("jane.roe@quillfeather.example", "jane roe", "roe jane", "roe", "quillfeather")


@pytest.fixture
def daemon(db_url: str, make_daemon: Callable[..., Daemon], workspace: Path, tmp_path: Path) -> Daemon:
    for name in ("whitepaper_nurture.yaml", "scoring.yaml"):
        shutil.copy(ROOT / "scenarios" / name, workspace / "scenarios")
    built = make_daemon(db_url, consent_regime="auto")
    path = tmp_path / "leads.csv"
    path.write_text(LEADS, encoding="utf-8")
    report = import_leads(built.store, path)
    assert report.problems == [] and report.created == 4
    return built


def sends_of(daemon: Daemon, email: str) -> list[object]:
    lead = daemon.store.leads.by_email(email)
    assert lead is not None
    return list(daemon.store.sends.of_lead(lead.id))


def test_a_lead_in_germany_without_consent_is_not_mailed_and_the_send_says_why(
    daemon: Daemon, smtp: SmtpServer
) -> None:
    tick(daemon)
    received = sorted(m["To"].addresses[0].addr_spec for m in smtp.messages)
    assert received == ["jane.roe@quillfeather.example", "max@nordwerk.example", "sam@tinyshop.example"]
    [kai] = sends_of(daemon, "kai@nordwerk.example")
    assert kai.status == SendStatus.SKIPPED  # type: ignore[attr-defined]
    assert kai.last_error == "no consent for topic 'marketing' (opt-in regime)"  # type: ignore[attr-defined]
    welcome = next(m for m in smtp.messages if m["To"].addresses[0].addr_spec == "sam@tinyshop.example")
    text = welcome.get_body(("plain",)).get_content()  # type: ignore[union-attr]
    assert "Acme Analytics · 100 Main Street, Boston, MA 02110" in text


def test_the_import_recorded_when_and_how_each_lead_agreed(daemon: Daemon) -> None:
    jane = daemon.store.leads.by_email("jane.roe@quillfeather.example")
    assert jane is not None
    [record] = daemon.store.consents.of_lead(jane.id)
    assert (record.topic, record.status, record.source) == ("marketing", ConsentStatus.GRANTED, ConsentSource.FORM)
    assert record.at.isoformat() == "2026-02-20T09:00:00+00:00"
    assert (record.wording, record.ip) == ("whitepaper-form-v2", "198.51.100.7")


def test_an_export_holds_the_fields_consent_emails_events_and_notes(daemon: Daemon, smtp: SmtpServer) -> None:
    tick(daemon)
    now = daemon.clock.now()
    log_activity(daemon.store, "jane.roe@quillfeather.example", "call", "wants pricing for 3 plants", "max", now)
    document = export_person(daemon.store, daemon.settings, "JANE.ROE@quillfeather.example", ["marketing"])
    assert document is not None
    data = json.loads(document.model_dump_json())
    assert data["fields"]["company"] == "Quillfeather Analytics"
    assert data["consent"][0]["wording"] == "whitepaper-form-v2"
    assert data["consent_in_force"] == [
        {"topic": "marketing", "regime": "opt_in", "may_send": True,
         "reason": "consent to topic 'marketing' granted 2026-02-20T09:00:00+00:00 via form"}
    ]  # fmt: skip
    [email] = data["emails"]
    assert (email["template"], email["status"]) == ("welcome", "sent") and email["message_id"]
    assert data["activities"][0]["note"] == "wants pricing for 3 plants"
    assert data["enrolments"][0]["scenario_id"] == "whitepaper_nurture"
    assert export_person(daemon.store, daemon.settings, "nobody@example.com") is None


def text_columns_holding(daemon: Daemon, needle: str) -> list[str]:
    """`table.column` of every column, of every table in the database, whose text (JSON as
    stored, escaped or not) contains `needle`, ignoring case."""
    forms = sorted({needle.lower(), json.dumps(needle.lower())[1:-1]})
    found = []
    with daemon.store.reading() as conn:
        schema = inspect(conn)
        for name in schema.get_table_names():
            columns = [c["name"] for c in schema.get_columns(name)]
            handle = table(name, *(column(c) for c in columns))
            for c in columns:
                text = func.lower(cast(handle.c[c], Text))
                hits = conn.execute(
                    select(func.count()).select_from(handle).where(or_(*(text.contains(f) for f in forms)))
                ).scalar_one()
                if hits:
                    found.append(f"{name}.{c}")
    return found


def test_an_erasure_leaves_no_trace_in_any_table_and_the_address_is_never_mailed_again(
    daemon: Daemon, smtp: SmtpServer, tmp_path: Path
) -> None:
    tick(daemon)
    store, now = daemon.store, daemon.clock.now()
    jane = store.leads.by_email("jane.roe@quillfeather.example")
    max_ = store.leads.by_email("max@nordwerk.example")
    assert jane is not None and max_ is not None
    with store.transaction() as conn:
        store.events.record(
            conn,
            jane.id,
            "page_view",
            now,
            {"url": "https://acme.example/pricing", "who": "Jane Roe"},
            external_id="crm:jane.roe@quillfeather.example:1",
        )
        store.events.record(
            conn,
            max_.id,
            "form_fill",
            now,
            {"referred_by": "Jane Roe <jane.roe@quillfeather.example>"},
            external_id="crm:referral:Jane Roe",
        )
        store.leads.record_score(conn, jane, 30, 55, "A", now)
        change_stage(store, conn, jane.id, "cold", "hot", "score 85 (Quillfeather Analytics, COO)", "qualify", now)
        store.notifications.add(
            conn,
            [
                {"key": f"hot:{jane.id}:1:email", "kind": "email", "lead_id": jane.id, "target": "max@acme.example",
                 "subject": "Hot lead: Jane Roe (Quillfeather Analytics)", "payload": {"email": jane.email},
                 "status": NotificationStatus.PENDING, "attempts": 0, "created_at": now, "next_attempt_at": now},
                {"key": "digest:max:1", "kind": "digest", "lead_id": None, "target": "max@acme.example",
                 "subject": "Your leads today", "status": NotificationStatus.PENDING, "attempts": 0,
                 "payload": {"leads": [{"name": "Jane Roe", "company": "Quillfeather Analytics", "score": 85},
                                       {"name": "Max Keller", "company": "Nordwerk", "score": 60}]},
                 "created_at": now, "next_attempt_at": now},
            ],
        )  # fmt: skip
        store.leads.suppress(conn, jane.email, "unsubscribe", "unsubscribe link")
    log_activity(
        store, "jane.roe@quillfeather.example", "call", "Jane Roe of Quillfeather Analytics: budget Q3", "max", now
    )
    log_activity(
        store,
        "max@nordwerk.example",
        "meeting",
        "met JANE.ROE@quillfeather.example and Jane Roe at the fair",
        "max",
        now,
    )
    assert text_columns_holding(daemon, "quillfeather")  # the search finds what is there

    done = erase_person(store, daemon.settings, "Jane.Roe@Quillfeather.example", "privacy desk, ticket 4711")

    assert done.found and done.deleted["lead"] == 1 and done.deleted["send"] == 1
    for needle in PERSON:
        assert text_columns_holding(daemon, needle) == [], needle
    # Colleagues keep their own data, without her in it.
    [note] = [a for a in export_person(store, daemon.settings, "max@nordwerk.example").activities]  # type: ignore[union-attr]
    assert note.note == "met [erased] and [erased] at the fair"
    # The erasure is logged, with nothing about her.
    [entry] = store.consents.erasures()
    assert entry["actor"] == "privacy desk, ticket 4711" and entry["rows"]["deleted"]["lead"] == 1
    # She comes back through an import: she is never mailed again.
    path = tmp_path / "again.csv"
    path.write_text(HEAD + "jane.roe@quillfeather.example,Jane,Roe,,,,,US,UTC,whitepaper,granted,,,,,\n")
    assert import_leads(store, path).created == 1
    before = len(smtp.messages)
    daemon.clock.advance(timedelta(hours=1))
    tick(daemon)
    assert all(m["To"].addresses[0].addr_spec != "jane.roe@quillfeather.example" for m in smtp.messages[before:])
    [again] = sends_of(daemon, "jane.roe@quillfeather.example")
    assert again.status == SendStatus.SUPPRESSED and again.last_error == "the address was erased on request"  # type: ignore[attr-defined]
    with store.reading() as conn:
        assert store.consents.suppressed_entries(conn, [keyed_hash(daemon.settings.suppression_hash_key, jane.email)])
