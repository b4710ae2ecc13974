"""ESP webhooks over real HTTP: signed requests act on the lead an email went to (found by
the Message-ID nurture gave it); forged, replayed and unconfigured ones are refused."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import shutil
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from sqlalchemy import select

from nurture.clock import FakeClock
from nurture.daemon import Daemon
from nurture.feedback.webhooks import SnsVerifier
from nurture.store.tables import ACTIVITIES, LEADS
from nurture.web.app import create_app
from tests.http_server import serving
from tests.integration.conftest import ROOT, tick
from tests.integration.test_daemon import import_csv
from tests.smtp_server import SmtpServer
from tests.unit.test_webhooks import CERT_URL, TOPIC, fixture, sns_key, sns_message  # noqa: F401

SENDGRID_KEY = ec.generate_private_key(ec.SECP256R1())
SENDGRID_PUBLIC = base64.b64encode(
    SENDGRID_KEY.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
).decode()
MAILGUN_KEY = "key-test-signing"
LEADS_CSV = (
    "email,first_name,last_name,company,timezone,source\n"
    "ada@nordwerk.example,Ada,Lang,Nordwerk,Europe/Berlin,whitepaper\n"
    "kim@tinyshop.example,Kim,Poor,Tiny Shop,Europe/Berlin,whitepaper\n"
    "lou@alpha.example,Lou,Alpha,Alpha,Europe/Berlin,whitepaper\n"
    "max@beta.example,Max,Beta,Beta,Europe/Berlin,whitepaper\n"
)


@pytest.fixture
def daemon(
    db_url: str, make_daemon: Any, workspace: Path, tmp_path: Path, smtp: SmtpServer, clock: FakeClock
) -> Daemon:
    for name in ("whitepaper_nurture.yaml", "scoring.yaml"):  # the hand-off step needs the routing
        shutil.copy(ROOT / "scenarios" / name, workspace / "scenarios")
    built: Daemon = make_daemon(
        db_url,
        sendgrid_public_key=SENDGRID_PUBLIC,
        mailgun_signing_key=MAILGUN_KEY,
        postmark_username="postmark",
        postmark_password="pm-secret",
        ses_topic_arns=[TOPIC],
    )
    import_csv(built, tmp_path, LEADS_CSV)

    tick(built)
    assert len(smtp.messages) == 4
    return built


@pytest.fixture
def site(daemon: Daemon, sns_key: Any) -> Iterator[httpx.Client]:  # noqa: F811
    app = create_app(daemon.settings, daemon.clock, daemon.store)
    # The SES route verifies with a test certificate, fetched through the injectable fetcher.
    cert = sns_key[1]
    app.state.webhook_verifiers["ses"] = SnsVerifier(
        frozenset({TOPIC}), fetch_cert=lambda url: cert, clock=daemon.clock.now
    )
    with serving(app) as base, httpx.Client(base_url=base, timeout=30) as client:
        yield client


def message_id(daemon: Daemon, email: str) -> str:
    lead = daemon.store.leads.by_email(email)
    assert lead is not None
    [send] = daemon.store.sends.of_lead(lead.id)
    return str(send.message_id)


def lead_flags(daemon: Daemon, email: str) -> tuple[bool, bool]:
    with daemon.store.reading() as conn:
        row = conn.execute(select(LEADS.c.bounced, LEADS.c.unsubscribed).where(LEADS.c.email == email)).one()
    return bool(row.bounced), bool(row.unsubscribed)


def notes(daemon: Daemon) -> list[str]:
    with daemon.store.reading() as conn:
        return list(conn.execute(select(ACTIVITIES.c.note).order_by(ACTIVITIES.c.id)).scalars())


def sendgrid_post(
    client: httpx.Client, events: list[dict[str, Any]], now: int, key: Any = SENDGRID_KEY
) -> httpx.Response:
    body = json.dumps(events).encode()
    signature = key.sign(str(now).encode() + body, ec.ECDSA(hashes.SHA256()))
    headers = {
        "X-Twilio-Email-Event-Webhook-Signature": base64.b64encode(signature).decode(),
        "X-Twilio-Email-Event-Webhook-Timestamp": str(now),
        "Content-Type": "application/json",
    }
    return client.post("/webhooks/sendgrid", content=body, headers=headers)


def test_sendgrid_bounce_suppresses_the_lead_its_email_went_to(daemon: Daemon, site: httpx.Client) -> None:
    now = int(daemon.clock.now().timestamp())
    event = {
        "email": "ada@nordwerk.example",
        "timestamp": now,
        "smtp-id": message_id(daemon, "ada@nordwerk.example"),
        "event": "bounce",
        "sg_event_id": "sg-1",
        "reason": "550 5.1.1 The email account that you tried to reach does not exist.",
        "status": "5.1.1",
        "type": "bounce",
    }
    forged = sendgrid_post(site, [event], now, key=ec.generate_private_key(ec.SECP256R1()))
    assert forged.status_code == 403 and lead_flags(daemon, "ada@nordwerk.example") == (False, False)
    answer = sendgrid_post(site, [event], now)
    assert answer.status_code == 200 and answer.json() == {"events": 1, "duplicates": 0, "suppressed": 1}
    assert lead_flags(daemon, "ada@nordwerk.example") == (True, False)
    assert notes(daemon)[-1].startswith("hard bounce (5.1.1): address suppressed — sendgrid: 550 5.1.1")
    again = sendgrid_post(site, [event], now)  # SendGrid retries a delivery it thinks failed
    assert again.json() == {"events": 1, "duplicates": 1, "suppressed": 0}


def test_mailgun_complaint_unsubscribes_and_a_replay_is_refused(daemon: Daemon, site: httpx.Client) -> None:
    stamp = str(int(daemon.clock.now().timestamp()))
    token = "f" * 50
    payload = fixture("mailgun_complained.json")
    payload["event-data"]["recipient"] = "kim@tinyshop.example"
    payload["event-data"]["message"]["headers"]["message-id"] = message_id(daemon, "kim@tinyshop.example").strip("<>")
    payload["event-data"]["user-variables"] = {}
    signature = hmac.new(MAILGUN_KEY.encode(), (stamp + token).encode(), hashlib.sha256).hexdigest()
    payload["signature"] = {"timestamp": stamp, "token": token, "signature": signature}
    assert site.post("/webhooks/mailgun", json=payload).status_code == 200
    assert lead_flags(daemon, "kim@tinyshop.example") == (False, True)
    assert site.post("/webhooks/mailgun", json=payload).status_code == 403


def test_postmark_needs_its_credentials(daemon: Daemon, site: httpx.Client) -> None:
    payload = fixture("postmark_bounce.json") | {"Email": "lou@alpha.example", "Metadata": {}}
    assert site.post("/webhooks/postmark", json=payload).status_code == 401
    assert lead_flags(daemon, "lou@alpha.example") == (False, False)
    answer = site.post("/webhooks/postmark", json=payload, auth=("postmark", "pm-secret"))
    assert answer.status_code == 200 and lead_flags(daemon, "lou@alpha.example") == (True, False)


def test_ses_bounce_through_sns(daemon: Daemon, site: httpx.Client, sns_key: Any, clock: FakeClock) -> None:  # noqa: F811
    key, _ = sns_key
    payload = fixture("ses_bounce.json")
    payload["bounce"]["bouncedRecipients"][0]["emailAddress"] = "max@beta.example"
    payload["mail"]["commonHeaders"]["messageId"] = message_id(daemon, "max@beta.example")
    payload["mail"]["tags"] = {}
    stamp = (clock.now() - timedelta(seconds=5)).strftime("%Y-%m-%dT%H:%M:%S.000Z")
    message = sns_message(key, payload, Timestamp=stamp)
    assert site.post("/webhooks/ses", content=json.dumps(message)).status_code == 200
    assert lead_flags(daemon, "max@beta.example") == (True, False)
    stale = sns_message(key, payload, Timestamp=(clock.now() - timedelta(hours=3)).strftime("%Y-%m-%dT%H:%M:%S.000Z"))
    assert site.post("/webhooks/ses", content=json.dumps(stale)).status_code == 403


def test_unconfigured_providers_are_not_found(daemon: Daemon) -> None:
    settings = daemon.settings.model_copy(update={"sendgrid_public_key": None, "mailgun_signing_key": None})
    with serving(create_app(settings, daemon.clock, daemon.store)) as base, httpx.Client(base_url=base) as client:
        assert client.post("/webhooks/sendgrid", content=b"[]").status_code == 404
        assert client.post("/webhooks/mailgun", content=b"{}").status_code == 404


def test_suppression_list_in_and_out_through_the_api(daemon: Daemon, site: httpx.Client) -> None:
    site.headers["Authorization"] = f"Bearer {daemon.store.access.create_key('migration')}"
    bad = site.post("/api/v1/suppressions", json={"suppressions": [{"email": "ok@x.example"}, {"email": "nope"}]})
    assert bad.status_code == 422 and bad.json()["detail"][0]["loc"] == ["body", "suppressions", 1, "email"]
    assert site.get("/api/v1/suppressions").json() == []  # a bad request stores nothing
    batch = {
        "suppressions": [
            {"email": "Old@Customer.example", "reason": "complaint", "created_at": "2025-09-01T10:00:00Z"},
            {"email": "ada@nordwerk.example"},
        ]
    }
    assert site.post("/api/v1/suppressions", json=batch).json() == {"added": 2, "already": 0}
    assert site.post("/api/v1/suppressions", json=batch).json() == {"added": 0, "already": 2}
    listed = {row["email"]: row for row in site.get("/api/v1/suppressions").json()}
    assert listed["old@customer.example"]["reason"] == "complaint"
    assert listed["old@customer.example"]["created_at"].startswith("2025-09-01T10:00:00")
    assert listed["ada@nordwerk.example"] | {"created_at": None} == {
        "email": "ada@nordwerk.example",
        "reason": "imported",
        "created_at": None,
        "source": "api",
    }
    assert site.get("/api/v1/suppressions", headers={"Authorization": "Bearer wrong"}).status_code == 401
