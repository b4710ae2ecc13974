"""ESP event webhooks: real signatures made with test keys, the providers' documented sample
payloads, and forged, altered, stale and replayed requests refused."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.x509.oid import NameOID
from hypothesis import given, settings
from hypothesis import strategies as st

from nurture.feedback.events import FeedbackKind
from nurture.feedback.webhooks import (
    MailgunVerifier,
    PostmarkVerifier,
    SendGridVerifier,
    SnsVerifier,
    WebhookRejected,
    check_sns_url,
    mailgun_events,
    postmark_events,
    sendgrid_events,
    ses_events,
    sns_subscribe_url,
)

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "webhooks"
NOW = datetime(2026, 3, 3, 16, 0, tzinfo=UTC)
TOPIC = "arn:aws:sns:us-east-1:123456789012:nurture-feedback"
CERT_URL = "https://sns.us-east-1.amazonaws.com/SimpleNotificationService-9c6465fa7f48f5cacd23014631ec1136.pem"


def fixture(name: str) -> Any:
    return json.loads((FIXTURES / name).read_text())


# -- Amazon SES through SNS ----------------------------------------------------------------------


@pytest.fixture(scope="module")
def sns_key() -> tuple[rsa.RSAPrivateKey, bytes]:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "sns.amazonaws.com")])
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(1)
        .not_valid_before(NOW - timedelta(days=1))
        .not_valid_after(NOW + timedelta(days=30))
        .sign(key, hashes.SHA256())
    )
    return key, cert.public_bytes(serialization.Encoding.PEM)


def sns_message(key: rsa.RSAPrivateKey, payload: Any, version: str = "2", **changes: Any) -> dict[str, Any]:
    message = {
        "Type": "Notification",
        "MessageId": "22b80b92-fdea-4c2c-8f9d-bdfb0c7bf324",
        "TopicArn": TOPIC,
        "Subject": "Amazon SES Email Event Notification",
        "Message": json.dumps(payload),
        "Timestamp": "2026-03-03T15:59:58.000Z",
        "SignatureVersion": version,
        "SigningCertURL": CERT_URL,
        "UnsubscribeURL": "https://sns.us-east-1.amazonaws.com/?Action=Unsubscribe&SubscriptionArn=x",
        **changes,
    }
    if message["Type"] == "SubscriptionConfirmation":
        del message["Subject"]
        message["SubscribeURL"] = "https://sns.us-east-1.amazonaws.com/?Action=ConfirmSubscription&Token=abc"
        message["Token"] = "abc"
        fields = ("Message", "MessageId", "SubscribeURL", "Timestamp", "Token", "TopicArn", "Type")
    else:
        fields = ("Message", "MessageId", "Subject", "Timestamp", "TopicArn", "Type")
    signed = "".join(f"{f}\n{message[f]}\n" for f in fields).encode()
    digest = hashes.SHA1() if version == "1" else hashes.SHA256()
    message["Signature"] = base64.b64encode(key.sign(signed, padding.PKCS1v15(), digest)).decode()
    return message


def sns_verifier(cert: bytes, fetched: list[str] | None = None) -> SnsVerifier:
    def fetch(url: str) -> bytes:
        if fetched is not None:
            fetched.append(url)
        return cert

    return SnsVerifier(frozenset({TOPIC}), fetch_cert=fetch, clock=lambda: NOW)


@pytest.mark.parametrize("version", ["1", "2"])
def test_ses_bounce_through_sns_verifies_and_reads(sns_key: tuple[rsa.RSAPrivateKey, bytes], version: str) -> None:
    key, cert = sns_key
    fetched: list[str] = []
    verifier = sns_verifier(cert, fetched)
    body = json.dumps(sns_message(key, fixture("ses_bounce.json"), version)).encode()
    [event] = ses_events(verifier.verify(body))
    assert (event.kind, event.source, event.recipient, event.status) == (
        FeedbackKind.HARD_BOUNCE,
        "ses",
        "jane@dataharbor.example",
        "5.1.1",
    )
    assert event.send_id == 201 and event.message_id == "<e201-welcome@acme-analytics.example>"
    assert event.diagnostic == "smtp; 550 5.1.1 <jane@dataharbor.example>... User unknown"
    assert event.occurred_at == datetime(2026, 3, 3, 14, 59, 38, 237000, tzinfo=UTC)
    verifier.verify(body)
    assert fetched == [CERT_URL]  # the certificate is fetched once


def test_ses_complaint_delivery_and_click(sns_key: tuple[rsa.RSAPrivateKey, bytes]) -> None:
    key, cert = sns_key
    verifier = sns_verifier(cert)

    def read(name: str) -> Any:
        return ses_events(verifier.verify(json.dumps(sns_message(key, fixture(name))).encode()))

    [complaint] = read("ses_complaint.json")
    assert complaint.kind is FeedbackKind.COMPLAINT and complaint.recipient == "richard@dataharbor.example"
    assert complaint.message_id == "<e202-case_study@acme-analytics.example>"
    [delivery] = read("ses_delivery.json")
    assert delivery.kind is FeedbackKind.DELIVERED and delivery.diagnostic.startswith("250 ok")
    [click] = read("ses_click.json")
    assert click.kind is FeedbackKind.CLICK and click.url == "https://acme-analytics.example/customers/nordwerk"
    assert click.user_agent is not None and click.user_agent.startswith("Mozilla/5.0") and click.send_id == 203


def test_sns_forgeries_are_refused(sns_key: tuple[rsa.RSAPrivateKey, bytes]) -> None:
    key, cert = sns_key
    verifier = sns_verifier(cert)
    good = sns_message(key, fixture("ses_bounce.json"))
    altered = dict(good, Message=good["Message"].replace("jane@", "someone@"))
    other_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    cases = {
        "altered message": altered,
        "signed by another key": sns_message(other_key, fixture("ses_bounce.json")),
        "someone else's topic": sns_message(key, fixture("ses_bounce.json"), TopicArn="arn:aws:sns:us-east-1:666:x"),
        "certificate off SNS": sns_message(
            key, fixture("ses_bounce.json"), SigningCertURL="https://evil.example/c.pem"
        ),
        "stale": sns_message(key, fixture("ses_bounce.json"), Timestamp="2026-03-03T13:00:00.000Z"),
        "unknown version": sns_message(key, fixture("ses_bounce.json"), SignatureVersion="3"),
    }
    for name, message in cases.items():
        with pytest.raises(WebhookRejected):
            verifier.verify(json.dumps(message).encode())
            pytest.fail(name)
    with pytest.raises(WebhookRejected, match="not JSON"):
        verifier.verify(b"{")


@pytest.mark.parametrize(
    "url",
    [
        "http://sns.us-east-1.amazonaws.com/cert.pem",
        "https://sns.us-east-1.amazonaws.com.evil.example/cert.pem",
        "https://evil.example/sns.us-east-1.amazonaws.com/cert.pem",
        "https://sns.us-east-1.amazonaws.com:8443/cert.pem",
        "https://user@evil.example/cert.pem",
    ],
)
def test_only_https_sns_hosts_are_fetched(url: str) -> None:
    with pytest.raises(WebhookRejected):
        check_sns_url(url)
    assert check_sns_url(CERT_URL) == CERT_URL
    assert check_sns_url("https://sns.cn-north-1.amazonaws.com.cn/c.pem")


def test_subscription_confirmation_gives_the_checked_url(sns_key: tuple[rsa.RSAPrivateKey, bytes]) -> None:
    key, cert = sns_key
    message = sns_verifier(cert).verify(
        json.dumps(sns_message(key, "You have chosen to subscribe", Type="SubscriptionConfirmation")).encode()
    )
    assert ses_events(message) == []
    assert sns_subscribe_url(message) == "https://sns.us-east-1.amazonaws.com/?Action=ConfirmSubscription&Token=abc"


# -- SendGrid ------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def sendgrid_key() -> tuple[ec.EllipticCurvePrivateKey, str]:
    key = ec.generate_private_key(ec.SECP256R1())
    public = key.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    return key, base64.b64encode(public).decode()


def sendgrid_headers(key: ec.EllipticCurvePrivateKey, body: bytes, timestamp: str) -> dict[str, str]:
    signature = key.sign(timestamp.encode() + body, ec.ECDSA(hashes.SHA256()))
    return {
        "X-Twilio-Email-Event-Webhook-Signature": base64.b64encode(signature).decode(),
        "X-Twilio-Email-Event-Webhook-Timestamp": timestamp,
    }


def test_sendgrid_events_verify_and_read(sendgrid_key: tuple[ec.EllipticCurvePrivateKey, str]) -> None:
    key, public = sendgrid_key
    body = (FIXTURES / "sendgrid_events.json").read_bytes()
    stamp = str(int(NOW.timestamp()) - 30)
    verifier = SendGridVerifier(public, clock=lambda: NOW)
    events = sendgrid_events(verifier.verify(body, sendgrid_headers(key, body, stamp)))
    kinds = [(e.kind, e.recipient) for e in events]
    assert kinds == [
        (FeedbackKind.DELIVERED, "ann@dataharbor.example"),
        (FeedbackKind.HARD_BOUNCE, "bob@dataharbor.example"),
        (FeedbackKind.POLICY_BOUNCE, "cy@bigmail.example"),  # "blocked": the sender's reputation
        (FeedbackKind.DELAYED, "dee@slowplant.example"),
        (FeedbackKind.COMPLAINT, "eve@dataharbor.example"),
        (FeedbackKind.OPEN, "ann@dataharbor.example"),
        (FeedbackKind.CLICK, "ann@dataharbor.example"),
        (FeedbackKind.UNSUBSCRIBE, "fay@dataharbor.example"),
    ]
    bounce = events[1]
    assert bounce.status == "5.1.1" and bounce.send_id == 302 and bounce.event_id == "6g4ZI7SA-xmRDv57GoPIPw=="
    assert bounce.message_id == "<e302-welcome@acme-analytics.example>"


def test_sendgrid_forgeries_are_refused(sendgrid_key: tuple[ec.EllipticCurvePrivateKey, str]) -> None:
    key, public = sendgrid_key
    body = (FIXTURES / "sendgrid_events.json").read_bytes()
    stamp = str(int(NOW.timestamp()))
    verifier = SendGridVerifier(public, clock=lambda: NOW)
    headers = sendgrid_headers(key, body, stamp)
    with pytest.raises(WebhookRejected):
        verifier.verify(body.replace(b"bob@", b"bib@"), headers)
    with pytest.raises(WebhookRejected):
        verifier.verify(body, dict(headers, **{"X-Twilio-Email-Event-Webhook-Timestamp": str(int(stamp) + 1)}))
    with pytest.raises(WebhookRejected):
        verifier.verify(body, sendgrid_headers(ec.generate_private_key(ec.SECP256R1()), body, stamp))
    old = str(int((NOW - timedelta(hours=1)).timestamp()))
    with pytest.raises(WebhookRejected, match="outside the accepted"):
        verifier.verify(body, sendgrid_headers(key, body, old))  # a captured request sent again later
    with pytest.raises(WebhookRejected, match="missing"):
        verifier.verify(body, {})


# -- Mailgun -------------------------------------------------------------------------------------

MAILGUN_KEY = "key-3ax6xnjp29jd6fds4gc373sgvjxteol0"


def mailgun_body(name: str, token: str, timestamp: int, key: str = MAILGUN_KEY) -> bytes:
    payload = fixture(name)
    signature = hmac.new(key.encode(), f"{timestamp}{token}".encode(), hashlib.sha256).hexdigest()
    payload["signature"] = {"timestamp": str(timestamp), "token": token, "signature": signature}
    return json.dumps(payload).encode()


def test_mailgun_events_verify_and_read() -> None:
    verifier = MailgunVerifier(MAILGUN_KEY, clock=lambda: NOW)
    stamp = int(NOW.timestamp()) - 10
    [hard] = mailgun_events(verifier.verify(mailgun_body("mailgun_failed_permanent.json", "t1" * 25, stamp)))
    assert (hard.kind, hard.recipient, hard.code, hard.status, hard.send_id) == (
        FeedbackKind.HARD_BOUNCE,
        "alice@dataharbor.example",
        550,
        "5.1.1",
        401,
    )
    assert hard.message_id == "<e401-welcome@acme-analytics.example>"
    [soft] = mailgun_events(verifier.verify(mailgun_body("mailgun_failed_temporary.json", "t2" * 25, stamp)))
    assert soft.kind is FeedbackKind.SOFT_BOUNCE and soft.status == "4.2.2"
    [complaint] = mailgun_events(verifier.verify(mailgun_body("mailgun_complained.json", "t3" * 25, stamp)))
    assert complaint.kind is FeedbackKind.COMPLAINT and complaint.send_id == 403
    [click] = mailgun_events(verifier.verify(mailgun_body("mailgun_clicked.json", "t4" * 25, stamp)))
    assert click.kind is FeedbackKind.CLICK and click.user_agent and "Chrome" in click.user_agent


def test_mailgun_replays_old_and_forged_requests_are_refused() -> None:
    verifier = MailgunVerifier(MAILGUN_KEY, clock=lambda: NOW)
    stamp = int(NOW.timestamp())
    body = mailgun_body("mailgun_complained.json", "a" * 50, stamp)
    verifier.verify(body)
    with pytest.raises(WebhookRejected, match="replayed"):
        verifier.verify(body)
    with pytest.raises(WebhookRejected, match="outside the accepted"):
        verifier.verify(mailgun_body("mailgun_complained.json", "b" * 50, stamp - 3600))
    with pytest.raises(WebhookRejected, match="does not verify"):
        verifier.verify(mailgun_body("mailgun_complained.json", "c" * 50, stamp, key="not-our-key"))
    with pytest.raises(WebhookRejected):
        verifier.verify(body.replace(b"carl@", b"karl@").replace(b"a" * 50, b"d" * 50))
    with pytest.raises(WebhookRejected, match="no signature"):
        verifier.verify(json.dumps(fixture("mailgun_complained.json")).encode())


# -- Postmark ------------------------------------------------------------------------------------

POSTMARK = PostmarkVerifier(username="postmark", password="s3cret-webhook-pass")
AUTH = {"Authorization": "Basic " + base64.b64encode(b"postmark:s3cret-webhook-pass").decode()}


def test_postmark_events_read_with_the_right_credentials() -> None:
    def read(name: str) -> Any:
        return postmark_events(POSTMARK.verify((FIXTURES / name).read_bytes(), AUTH))

    [bounce] = read("postmark_bounce.json")
    assert (bounce.kind, bounce.recipient, bounce.status, bounce.send_id) == (
        FeedbackKind.HARD_BOUNCE,
        "zaphod@dataharbor.example",
        "5.1.1",
        501,
    )
    assert bounce.event_id == "bounce:4323372036854775807"
    [complaint] = read("postmark_spam_complaint.json")
    assert complaint.kind is FeedbackKind.COMPLAINT and complaint.recipient == "john@dataharbor.example"
    [delivery] = read("postmark_delivery.json")
    assert delivery.kind is FeedbackKind.DELIVERED
    [opened] = read("postmark_open.json")
    assert opened.kind is FeedbackKind.OPEN and opened.user_agent is not None
    [suppressed] = read("postmark_subscription_change.json")
    assert suppressed.kind is FeedbackKind.HARD_BOUNCE


def test_postmark_without_the_credentials_is_refused() -> None:
    body = (FIXTURES / "postmark_bounce.json").read_bytes()
    for headers in ({}, {"Authorization": "Basic " + base64.b64encode(b"postmark:guess").decode()}):
        with pytest.raises(WebhookRejected, match="credentials"):
            POSTMARK.verify(body, headers)
    by_header = PostmarkVerifier(header_name="X-Nurture-Token", header_value="tok-123")
    assert by_header.verify(body, {"x-nurture-token": "tok-123"})["RecordType"] == "Bounce"
    with pytest.raises(WebhookRejected):
        by_header.verify(body, {"X-Nurture-Token": "tok-124"})


JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner, max_size=5),
    max_leaves=20,
)
KEYS = st.sampled_from(
    [
        "eventType",
        "notificationType",
        "bounce",
        "mail",
        "complaint",
        "delivery",
        "event",
        "event-data",
        "RecordType",
        "Type",
        "Metadata",
        "delivery-status",
        "message",
        "headers",
        "commonHeaders",
        "tags",
        "bouncedRecipients",
    ]
)


@settings(max_examples=300, deadline=None)
@given(
    st.dictionaries(KEYS | st.text(max_size=8), JSON, max_size=8),
    st.sampled_from(["Bounce", "Complaint", "Delivery", "Click"]),
)
def test_odd_payloads_from_a_verified_sender_give_events_or_none_never_an_exception(payload: dict, kind: str) -> None:  # type: ignore[type-arg]
    payload = {"eventType": kind, **payload}
    ses_events({"Type": "Notification", "Message": json.dumps(payload)})
    sendgrid_events([payload, {"event": "bounce", **payload}])
    mailgun_events({"event": "failed", **payload})
    postmark_events({"RecordType": "Bounce", **payload})
