"""The erasure plan covers every column of every table; redaction, keyed hashes; the export format."""

from __future__ import annotations

import json
from datetime import UTC, datetime

from sqlmodel import SQLModel

import nurture.store.tables  # noqa: F401  (registers the tables)
from nurture.consent.erasure import (
    HASH_PREFIX,
    PLAN,
    REDACTED,
    Column,
    Identity,
    keyed_hash,
    mentions,
    redact,
    unclassified,
)
from nurture.consent.export import FORMAT, LifecycleOut, PersonExport, ScoresOut, build_export, export_schema
from nurture.consent.model import Regime

T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)


def test_every_column_of_every_table_is_classified_for_erasure() -> None:
    tables = {name: [c.name for c in table.columns] for name, table in SQLModel.metadata.tables.items()}
    assert unclassified(tables) == [], "classify these in nurture/consent/erasure.py so an erasure covers them"


def test_a_new_table_or_column_nobody_classified_is_reported() -> None:
    tables = {"lead": ["id", "email", "nickname"], "webinar_seat": ["id", "attendee"]}
    found = unclassified(tables)
    assert "lead.nickname" in found
    assert "webinar_seat.attendee" in found
    assert "lead.first_name (classified, but no such column)" in found


def test_every_table_that_belongs_to_a_person_names_the_column_that_says_whose_it_is() -> None:
    for plan in PLAN:
        personal = plan.of(Column.PERSONAL)
        if personal:
            assert plan.belongs_by is not None, f"{plan.table} holds personal data but no owner column"
            assert plan.belongs_by in plan.columns


def test_redaction_removes_the_address_and_full_name_in_text_and_nested_json() -> None:
    person = Identity("Jane.Roe@Example.com", "Jane", "Roe")
    note = "Call with JANE ROE (jane.roe@example.com): wants a demo; Jane's colleague Max stays."
    assert redact(note, person) == f"Call with {REDACTED} ({REDACTED}): wants a demo; Jane's colleague Max stays."
    props = {"form": {"referrer": "jane.roe@example.com", "names": ["Roe Jane", "Max Keller"]}, "n": 3}
    cleaned = redact(props, person)
    assert cleaned == {"form": {"referrer": REDACTED, "names": [REDACTED, REDACTED]}, "n": 3}  # an object about her
    assert mentions(props, person) and not mentions(cleaned, person)
    assert redact({"jane.roe@example.com": 1}, person) == {REDACTED: 1}


def test_japanese_names_are_found_in_either_order_with_or_without_a_space() -> None:
    person = Identity("hana@example.jp", "花子", "山田")
    for text in ("山田花子様よりお問い合わせ", "山田 花子", "山田\u3000花子", "花子 山田"):
        assert REDACTED in redact(text, person), text
    assert redact("山田様", person) == "山田様"  # a family name alone is too common to remove everywhere


def test_the_suppression_entry_of_an_erased_address_is_a_keyed_hash() -> None:
    entry = keyed_hash("key-1", "Jane.Roe@Example.com")
    assert entry.startswith(HASH_PREFIX)
    assert entry == keyed_hash("key-1", " jane.roe@example.com")
    assert entry != keyed_hash("key-2", "jane.roe@example.com")
    assert "jane" not in entry.lower() and "example" not in entry.lower()
    assert len(entry) <= 320  # fits the suppression list's address column


def test_the_export_schema_describes_every_part_of_a_persons_data() -> None:
    schema = export_schema()
    assert set(schema["required"]) >= {
        "email", "fields", "consent", "emails", "events", "scores", "lifecycle", "activities", "suppressed",
    }  # fmt: skip
    document = PersonExport(
        exported_at=T0,
        email="jane@example.com",
        fields={"first_name": "Jane"},
        consent=[],
        consent_in_force=[],
        suppressed=[],
        enrolments=[],
        emails=[],
        events=[],
        scores=ScoresOut(fit=10, engagement=5, grade="B", adjustment=0, history=[]),
        lifecycle=LifecycleOut(stage="cold", changes=[]),
        activities=[],
        notifications=[],
        audit=[],
    )
    data = json.loads(document.model_dump_json())
    assert data["format"] == FORMAT
    assert PersonExport.model_validate(data) == document


def test_an_export_shows_what_is_in_force_per_topic_and_the_emails_with_their_variables() -> None:
    lead = {
        "id": 7, "email": "hana@example.jp", "first_name": "花子", "last_name": "山田", "company": "Sakura KK",
        "country": "JP", "custom": {"seminar_name": "IoT 2026"}, "tags": ["seminar"], "score_fit": 30,
        "score_engagement": 12, "grade": "B", "score_adjustment": 0, "scored_at": T0, "engagement_since": None,
        "lifecycle_stage": "warm", "owner": "Sato", "created_at": T0, "updated_at": T0,
    }  # fmt: skip
    consent = {"topic": "seminars", "status": "granted", "source": "double_opt_in", "at": T0, "detail": None,
               "wording": "seminar-form-ja-v3", "ip": "203.0.113.7", "user_agent": "Mozilla/5.0"}  # fmt: skip
    send = {"scenario_id": "seminar_followup_ja", "scenario_version": "abc123def456", "step": "thanks",
            "template": "ja_seminar_thanks", "subject": "{{ lead.last_name }} 様", "sender": "Acme <m@acme.example>",
            "reply_to": None, "status": "skipped", "created_at": T0, "sent_at": None, "message_id": None,
            "last_error": "no consent for topic 'marketing' (opt-in regime)"}  # fmt: skip
    person = {
        "lead": lead, "consent": [consent], "suppressed": [], "enrolments": [], "sends": [send],
        "events": [{"type": "form_fill", "at": T0, "props": {"form": "seminar"}, "external_id": None,
                    "received_at": T0}],
        "scores": [{"at": T0, "fit": 30, "engagement": 12, "grade": "B"}], "lifecycle": [], "activities": [],
        "notifications": [], "audit": [],
    }  # fmt: skip
    document = build_export(person, now=T0, regime=Regime.OPT_IN, topics=["marketing"])
    assert document.fields["custom.seminar_name"] == "IoT 2026" and document.fields["last_name"] == "山田"
    assert [(t.topic, t.may_send) for t in document.consent_in_force] == [("marketing", False), ("seminars", True)]
    assert document.consent[0].ip == "203.0.113.7"
    [email] = document.emails
    assert email.status == "skipped" and email.detail == "no consent for topic 'marketing' (opt-in regime)"
    assert email.variables["company"] == "Sakura KK"
    assert document.scores.history[0].engagement == 12 and document.lifecycle.owner == "Sato"


def test_names_with_pattern_characters_and_short_cjk_names_are_redacted_literally() -> None:
    assert redact("met O'Brien (Ann) at the booth", Identity("a@b.example", "(Ann)", "O'Brien")) == (
        f"met {REDACTED} at the booth"
    )
    tricky = Identity("x.y+z@b.example", "A.*", "B?")
    assert (
        redact("A.* B? wrote from x.y+z@b.example; ANYTHING else", tricky)
        == f"{REDACTED} wrote from {REDACTED}; ANYTHING else"
    )
    assert redact("林誠さんと面談", Identity("lin@example.jp", "誠", "林")) == f"{REDACTED}さんと面談"


def test_an_entry_about_the_person_inside_a_digest_goes_whole_while_the_top_level_keeps_other_facts() -> None:
    person = Identity("jane.roe@quill.example", "Jane", "Roe")
    digest = {"owner": "max", "leads": [{"name": "Jane Roe", "company": "Quill Analytics", "score": 80},
                                        {"name": "Ada Lang", "company": "Nordwerk", "score": 70}]}  # fmt: skip
    assert redact(digest, person) == {
        "owner": "max",
        "leads": [{"name": REDACTED, "company": REDACTED, "score": 80}, digest["leads"][1]],
    }
    props = {"referred_by": "jane.roe@quill.example", "form": "demo"}
    assert redact(props, person) == {"referred_by": REDACTED, "form": "demo"}
