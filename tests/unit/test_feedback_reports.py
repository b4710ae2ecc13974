"""Delivery reports and complaints as Gmail, Outlook, Yahoo, Postfix and Exim send them."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from nurture.feedback.events import FeedbackKind
from nurture.feedback.reports import ReportReader
from nurture.mail.verp import ReturnPath

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "feedback"
READER = ReportReader(ReturnPath("bounce.acme-analytics.example", "fixture-secret"))


def read(name: str, envelope: tuple[str, ...] = ()) -> list:  # type: ignore[type-arg]
    return READER.read((FIXTURES / name).read_bytes(), envelope)


@pytest.mark.parametrize(
    ("fixture", "kind", "recipient", "send_id", "status"),
    [
        ("gmail_user_unknown.eml", FeedbackKind.HARD_BOUNCE, "anna.gone@gmail.com", 101, "5.1.1"),
        ("gmail_dmarc_policy.eml", FeedbackKind.POLICY_BOUNCE, "ben@gmail.com", 102, "5.7.26"),
        ("outlook_recipient_not_found.eml", FeedbackKind.HARD_BOUNCE, "carla@outlook.com", 103, "5.1.10"),
        ("yahoo_failure_notice.eml", FeedbackKind.HARD_BOUNCE, "dan.old@yahoo.com", 104, None),
        ("postfix_user_unknown.eml", FeedbackKind.HARD_BOUNCE, "erik@nordwerk.example", 105, "5.1.1"),
        ("postfix_delayed.eml", FeedbackKind.DELAYED, "fay@slowplant.example", 106, "4.4.1"),
        ("exim_mailbox_full.eml", FeedbackKind.SOFT_BOUNCE, "gus@fullbox.example", 107, "5.2.2"),
        ("yahoo_arf_complaint.eml", FeedbackKind.COMPLAINT, "hana@yahoo.com", 108, None),
        ("outlook_jmrp_complaint.eml", FeedbackKind.COMPLAINT, None, 109, None),  # Outlook masks the recipient
    ],
)
def test_report_is_read_into_one_event_for_its_send(
    fixture: str, kind: FeedbackKind, recipient: str | None, send_id: int, status: str | None
) -> None:
    [event] = read(fixture)
    assert (event.kind, event.recipient, event.send_id, event.status) == (kind, recipient, send_id, status)
    assert event.diagnostic  # the receiver's own words are kept for the lead's timeline


def test_hard_bounce_keeps_the_receivers_reply_and_when_it_happened() -> None:
    [event] = read("gmail_user_unknown.eml")
    assert event.code == 550 and event.suppresses
    assert "The email account that you tried to reach does not exist" in event.diagnostic
    assert event.occurred_at == datetime(2026, 3, 3, 14, 31, 2, tzinfo=UTC)
    assert event.message_id == "<e101-welcome@acme-analytics.example>"


def test_yahoo_text_bounce_gets_its_code_from_the_quoted_reply() -> None:
    [event] = read("yahoo_failure_notice.eml")
    assert event.code == 554 and "mailbox not found" in event.diagnostic


def test_policy_and_soft_bounces_never_suppress_at_once() -> None:
    for name in ("gmail_dmarc_policy.eml", "exim_mailbox_full.eml", "postfix_delayed.eml"):
        [event] = read(name)
        assert not event.suppresses, name


def test_complaint_suppresses_and_names_the_reporting_program() -> None:
    [event] = read("outlook_jmrp_complaint.eml")
    assert event.suppresses and "Microsoft Junk Mail Reporting Program" in event.diagnostic


def test_forged_bounce_names_no_send() -> None:
    [event] = read("forged_bounce.eml")
    assert event.kind is FeedbackKind.HARD_BOUNCE and event.send_id is None


def test_envelope_recipient_of_the_smtp_listener_names_the_send() -> None:
    data = (FIXTURES / "yahoo_failure_notice.eml").read_bytes().replace(b"bounces+104-a6d1c52dd2b6", b"bounces")
    assert READER.read(data)[0].send_id is None
    address = ReturnPath("bounce.acme-analytics.example", "fixture-secret").address(104)
    assert READER.read(data, [address])[0].send_id == 104


def test_out_of_office_reply_is_no_report() -> None:
    assert read("out_of_office.eml") == []


def test_without_a_bounce_domain_no_report_names_a_send() -> None:
    [event] = ReportReader(None).read((FIXTURES / "postfix_user_unknown.eml").read_bytes())
    assert event.send_id is None and event.recipient == "erik@nordwerk.example"


@pytest.mark.parametrize("garbage", [b"", b"\x00\xff" * 50, b"Content-Type: multipart/report\r\n\r\n--x--"])
def test_garbage_is_no_report(garbage: bytes) -> None:
    assert READER.read(garbage) == []


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=2000))
def test_any_bytes_read_as_a_list_of_events_never_an_exception(data: bytes) -> None:
    assert isinstance(READER.read(data), list)


@settings(max_examples=100, deadline=None)
@given(st.sampled_from(sorted(p.name for p in FIXTURES.glob("*.eml"))), st.integers(0, 4000), st.binary(max_size=40))
def test_damaged_reports_read_without_an_exception(name: str, at: int, junk: bytes) -> None:
    data = (FIXTURES / name).read_bytes()
    assert isinstance(READER.read(data[:at] + junk + data[at + len(junk) :]), list)
