"""The HTTP face over real HTTP: tracking links from a real email, the ingest API, metrics, dashboard guards."""

from __future__ import annotations

import json
import re
import shutil
from collections.abc import Callable, Iterator
from datetime import timedelta
from email.message import EmailMessage
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest
from sqlalchemy import func, select

from nurture.clock import FakeClock
from nurture.daemon import Daemon
from nurture.lifecycle import change_stage
from nurture.mail.tracking import sign
from nurture.store.tables import EVENTS, LEADS, SUPPRESSIONS, ApiKey
from nurture.store.tables import LIFECYCLE_CHANGES as LC
from nurture.web.app import create_app
from tests.http_server import serving
from tests.integration.conftest import ROOT, tick
from tests.integration.test_daemon import import_csv
from tests.smtp_server import SmtpServer

AK = ApiKey.__table__  # type: ignore[attr-defined]
LEADS_CSV = (
    "email,first_name,last_name,company,company_size,industry,job_title,country,timezone,source\n"
    "ada@nordwerk.example,Ada,Lang,Nordwerk,1500,Manufacturing,Head of Operations,DE,Europe/Berlin,whitepaper\n"
    "kim@tinyshop.example,Kim,Poor,Tiny Shop,5,Retail,Student,BR,America/Sao_Paulo,whitepaper\n"
)


@pytest.fixture
def daemon(db_url: str, make_daemon: Callable[..., Daemon], workspace: Path, tmp_path: Path) -> Daemon:
    for name in ("whitepaper_nurture.yaml", "scoring.yaml"):
        shutil.copy(ROOT / "scenarios" / name, workspace / "scenarios")
    # https would make the session cookie Secure
    built = make_daemon(db_url, base_url="http://nurture.test", metrics_token="metrics-secret")
    import_csv(built, tmp_path, LEADS_CSV)
    return built


@pytest.fixture
def site(daemon: Daemon) -> Iterator[httpx.Client]:
    with serving(create_app(daemon.settings, daemon.clock, daemon.store)) as base, httpx.Client(base_url=base) as c:
        yield c


@pytest.fixture
def api(daemon: Daemon, site: httpx.Client) -> httpx.Client:
    site.headers["Authorization"] = f"Bearer {daemon.store.access.create_key('crm')}"
    return site


def count(daemon: Daemon, table: Any, *where: Any) -> int:
    with daemon.store.reading() as conn:
        return int(conn.execute(select(func.count()).select_from(table).where(*where)).scalar_one())


def send_welcome(daemon: Daemon, smtp: SmtpServer) -> EmailMessage:
    tick(daemon)
    [message] = [m for m in smtp.messages if m["To"].addresses[0].addr_spec == "ada@nordwerk.example"]
    return message


def path_of(url: str) -> str:
    """Links carry the public base URL; the test server answers the same paths."""
    return urlsplit(url).path


# -- tracking -----------------------------------------------------------------------------------------


def test_click_in_a_real_email_redirects_and_counts_once_per_click(
    daemon: Daemon, site: httpx.Client, smtp: SmtpServer
) -> None:
    message = send_welcome(daemon, smtp)
    html = message.get_body(("html",)).get_content()  # type: ignore[union-attr]
    link = next(u for u in re.findall(r'href="([^"]+)"', html) if "/c/" in u)

    answer = site.get(path_of(link), headers={"User-Agent": "Mozilla/5.0 (Macintosh)"})
    assert answer.status_code == 302
    assert answer.headers["location"] == "https://acme-analytics.example/whitepapers/modern-manufacturing-analytics.pdf"
    with daemon.store.reading() as conn:
        [click] = conn.execute(select(EVENTS.c.type, EVENTS.c.props).where(EVENTS.c.type == "click")).all()
    assert click.props["link"] == "whitepaper" and click.props["step"] == "welcome"
    assert click.props["sent_at"] is not None  # lets the scoring model spot scanner clicks

    # The welcome email is too short for a pixel; the open pixel's token is the recipient's,
    # the one its unsubscribe link carries.
    unsubscribe = next(u for u in re.findall(r'href="([^"]+)"', html) if "/u/" in u)
    opened = site.get(path_of(unsubscribe).replace("/u/", "/o/") + ".gif")
    assert opened.status_code == 200 and opened.headers["content-type"] == "image/gif"
    assert count(daemon, EVENTS, EVENTS.c.type == "open") == 1


def test_tampered_or_forged_links_get_400_and_count_nothing(
    daemon: Daemon, site: httpx.Client, smtp: SmtpServer
) -> None:
    message = send_welcome(daemon, smtp)
    html = message.get_body(("html",)).get_content()  # type: ignore[union-attr]
    link = path_of(next(u for u in re.findall(r'href="([^"]+)"', html) if "/c/" in u))
    body, mac = link.removeprefix("/c/").split(".")
    forged_target = sign("not-the-secret", {"l": 1, "s": 1, "n": "x", "u": "https://evil.example/"})
    open_redirect = sign("test-secret", {"l": 1, "s": 1, "n": "x", "u": "javascript:alert(1)"})

    for path in (
        f"/c/{body[:-2]}AA.{mac}",  # payload altered
        f"/c/{body}.{mac[::-1]}",  # signature altered
        f"/c/{forged_target}",
        f"/c/{open_redirect}",
        "/c/garbage",
        "/o/garbage.gif",
    ):
        answer = site.get(path)
        assert answer.status_code == 400, path
        assert "location" not in answer.headers
    assert count(daemon, EVENTS, EVENTS.c.type.in_(("click", "open"))) == 0


def test_one_click_unsubscribe_leaves_the_topic_of_the_email_at_once_and_is_idempotent(
    daemon: Daemon, site: httpx.Client, smtp: SmtpServer
) -> None:
    message = send_welcome(daemon, smtp)
    assert message["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    url = next(u for u in re.findall(r"<([^>]+)>", message["List-Unsubscribe"]) if u.startswith("http"))
    lead = daemon.store.leads.by_email("ada@nordwerk.example")
    assert lead is not None

    page = site.get(path_of(url))  # a link scanner's GET changes nothing
    assert page.status_code == 200 and "ad•@nordwerk.example" in page.text
    assert daemon.store.consents.of_lead(lead.id) == []

    for _ in range(2):  # RFC 8058: the mail client POSTs List-Unsubscribe=One-Click
        done = site.post(path_of(url), data={"List-Unsubscribe": "One-Click"})
        assert done.status_code == 200
        assert "no more emails about Marketing" in done.text
    [record] = daemon.store.consents.of_lead(lead.id)
    assert (record.topic, record.status, record.source) == ("marketing", "withdrawn", "one_click")
    [send] = daemon.store.sends.of_lead(lead.id)
    assert record.detail == f"send {send.id}" and record.user_agent
    lead = daemon.store.leads.by_email("ada@nordwerk.example")
    assert lead is not None and not lead.unsubscribed  # other topics still reach her
    assert count(daemon, SUPPRESSIONS) == 0

    tampered = path_of(url)[:-3] + "xyz"
    assert site.post(tampered).status_code == 400


# -- ingest API -----------------------------------------------------------------------------------------


def test_api_needs_a_valid_unrevoked_key_stored_only_as_a_hash(daemon: Daemon, site: httpx.Client) -> None:
    event = {"email": "ada@nordwerk.example", "type": "page_view", "props": {"url": "/pricing"}}
    assert site.post("/api/v1/events", json=event).status_code == 401
    assert site.post("/api/v1/events", json=event, headers={"X-API-Key": "nk_wrong"}).status_code == 401

    key = daemon.store.access.create_key("website")
    with daemon.store.reading() as conn:
        stored = conn.execute(select(AK.c.key_hash, AK.c.prefix)).one()
    assert key not in stored.key_hash and len(stored.prefix) < len(key) // 3
    assert site.post("/api/v1/events", json=event, headers={"X-API-Key": key}).status_code == 200

    daemon.store.access.revoke_key("website")
    assert site.post("/api/v1/events", json=event, headers={"X-API-Key": key}).status_code == 401
    assert count(daemon, EVENTS) == 1


def test_events_with_a_repeated_id_are_stored_once(daemon: Daemon, api: httpx.Client) -> None:
    batch = {
        "events": [
            {"id": "web-1", "email": "ada@nordwerk.example", "type": "page_view", "props": {"url": "/pricing"}},
            {"id": "web-2", "email": "ADA@nordwerk.example", "type": "webinar_attended", "at": "2026-03-01T15:00:00Z"},
            {"id": "web-3", "email": "kim@tinyshop.example", "type": "form_fill", "props": {"form": "contact"}},
        ]
    }
    first = api.post("/api/v1/events/batch", json=batch)
    assert first.status_code == 200 and first.json() == {"stored": 3, "duplicates": 0}
    replay = api.post("/api/v1/events/batch", json=batch)
    assert replay.json() == {"stored": 0, "duplicates": 3}
    single = api.post("/api/v1/events", json=batch["events"][0])
    assert single.json() == {"stored": 0, "duplicates": 1}
    assert count(daemon, EVENTS) == 3


@pytest.mark.parametrize(
    ("bad", "loc", "message"),
    [
        ({"type": "pageview"}, ["body", "events", 1, "type"], "Input should be"),
        ({"email": "nobody@nowhere.example"}, ["body", "events", 1, "email"], "no lead with email"),
        ({"at": "2026-03-01T15:00:00"}, ["body", "events", 1, "at"], "timezone"),
        ({"at": "2030-01-01T00:00:00Z"}, ["body", "events", 1, "at"], "future"),
        ({"props": {"nested": {"a": 1}}}, ["body", "events", 1, "props", "nested"], "valid"),
        ({"colour": "red"}, ["body", "events", 1, "colour"], "Extra inputs"),
        # What no database stores as JSON: Python's JSON reader takes NaN and Infinity; a NUL
        # character is not PostgreSQL text (these were a 500 on PostgreSQL).
        ({"props": {"score": float("nan")}}, ["body", "events", 1, "props"], "not a number JSON can store"),
        ({"props": {"url": "a\x00b"}}, ["body", "events", 1, "props"], "NUL character"),
        ({"id": "evt\x00"}, ["body", "events", 1, "id"], "NUL character"),
        ({"email": "ada\x00@nordwerk.example"}, ["body", "events", 1, "email"], "NUL character"),
    ],
)
def test_a_bad_event_is_422_naming_its_field_and_nothing_of_the_batch_is_stored(
    daemon: Daemon, api: httpx.Client, bad: dict[str, Any], loc: list[Any], message: str
) -> None:
    good = {"email": "ada@nordwerk.example", "type": "download", "props": {"asset": "whitepaper"}}
    body = json.dumps({"events": [good, {**good, **bad}, good]})  # NaN as Python's JSON writes it
    answer = api.post("/api/v1/events/batch", content=body, headers={"Content-Type": "application/json"})
    assert answer.status_code == 422
    errors = answer.json()["detail"]
    assert any(e["loc"][: len(loc)] == loc and message.lower() in e["msg"].lower() for e in errors), errors
    assert count(daemon, EVENTS) == 0


def test_leads_upsert_by_email_and_a_bad_batch_stores_nothing(daemon: Daemon, api: httpx.Client) -> None:
    created = api.post("/api/v1/leads", json={"email": "Neo@Matrix.example", "company": "Matrix", "tags": ["fair"]})
    assert created.status_code == 200 and created.json()["created"] == 1
    updated = api.post("/api/v1/leads", json={"email": "neo@matrix.example", "job_title": "CTO", "custom": {"a": 1}})
    assert updated.json()["updated"] == 1
    lead = api.get("/api/v1/leads/neo@matrix.example").json()
    assert (lead["company"], lead["tags"], lead["custom"]) == ("Matrix", ["fair"], {"a": 1})

    bad = api.post(
        "/api/v1/leads/batch",
        json={"leads": [{"email": "new1@x.example"}, {"email": "new2@x.example", "country": "Germany"}]},
    )
    assert bad.status_code == 422
    assert bad.json()["detail"][0]["loc"] == ["body", "leads", 1, "country"]
    assert count(daemon, LEADS, LEADS.c.email.like("new%")) == 0
    assert api.post("/api/v1/leads", json={"email": "not-an-email"}).json()["detail"][0]["loc"] == ["body", "email"]
    assert api.get("/api/v1/leads/nobody@x.example").status_code == 404


def test_sales_feedback_through_the_api_changes_the_lifecycle(daemon: Daemon, api: httpx.Client) -> None:
    lead = daemon.store.leads.by_email("ada@nordwerk.example")
    assert lead is not None
    with daemon.store.transaction() as conn:
        change_stage(daemon.store, conn, lead.id, "cold", "hot", "test", "qualify", daemon.clock.now())
    ok = api.post(
        "/api/v1/feedback", json={"email": "ada@nordwerk.example", "action": "accept", "reason": "call", "by": "max"}
    )
    assert ok.status_code == 200 and ok.json() == {
        "email": "ada@nordwerk.example",
        "from_stage": "hot",
        "to_stage": "accepted",
    }
    again = api.post("/api/v1/feedback", json={"email": "ada@nordwerk.example", "action": "accept", "reason": "x"})
    assert again.status_code == 409 and "cannot accept" in again.json()["detail"]
    assert (
        api.post(
            "/api/v1/feedback", json={"email": "ada@nordwerk.example", "action": "maybe", "reason": "x"}
        ).status_code
        == 422
    )
    with daemon.store.reading() as conn:
        last = conn.execute(select(LC.c.to_stage, LC.c.actor).order_by(LC.c.id.desc())).first()
    assert last is not None and tuple(last) == ("accepted", "max")


def test_openapi_describes_the_ingest_api(site: httpx.Client) -> None:
    spec = site.get("/api/openapi.json").json()
    assert {"/api/v1/events", "/api/v1/events/batch", "/api/v1/leads", "/api/v1/feedback"} <= set(spec["paths"])
    assert "/c/{token}" not in spec["paths"] and "/inbox" not in spec["paths"]


# -- operations and dashboard guards ------------------------------------------------------------------


def test_metrics_report_sends_backlog_and_job_durations(
    daemon: Daemon, site: httpx.Client, smtp: SmtpServer, clock: FakeClock
) -> None:
    send_welcome(daemon, smtp)
    daemon.job_seconds["advance"] = 0.25
    daemon.heartbeat()
    assert site.get("/metrics").status_code == 401  # not for anyone who asks
    site.headers["Authorization"] = "Bearer metrics-secret"
    text = site.get("/metrics").text
    sent = len(smtp.messages)
    assert f"nurture_emails_sent_total {float(sent)}" in text
    assert 'nurture_outbox_backlog{state="pending"} 0.0' in text
    assert 'nurture_job_duration_seconds{job="advance",worker="w1"} 0.25' in text
    clock.advance(timedelta(hours=1))
    assert "nurture_job_duration_seconds{" not in site.get("/metrics").text  # a stopped daemon drops out
    assert site.get("/healthz").json() == {"status": "ok"}


def test_dashboard_pages_need_a_login_and_forms_need_the_csrf_token(daemon: Daemon, site: httpx.Client) -> None:
    daemon.store.access.set_user("max", "correct horse battery", "Max Keller")
    answer = site.get("/inbox")
    assert answer.status_code == 303 and answer.headers["location"] == "/login?next=/inbox"

    page = site.get("/login")
    token = re.search(r'name="csrf" value="([^"]+)"', page.text)
    assert token is not None
    assert site.post("/login", data={"username": "max", "password": "correct horse battery"}).status_code == 403
    wrong = site.post("/login", data={"username": "max", "password": "wrong", "csrf": token.group(1)})
    assert wrong.status_code == 401
    ok = site.post("/login", data={"username": "max", "password": "correct horse battery", "csrf": token.group(1)})
    assert ok.status_code == 303 and ok.headers["location"] == "/inbox"
    assert site.get("/inbox").status_code == 200

    lead = daemon.store.leads.by_email("ada@nordwerk.example")
    assert lead is not None
    forged = site.post(f"/leads/{lead.id}/feedback", data={"action": "reject", "reason": "spam"})
    assert forged.status_code == 403
    assert daemon.store.leads.by_email("ada@nordwerk.example").lifecycle_stage == "cold"  # type: ignore[union-attr]
    evil = site.post(
        "/login",
        data={
            "username": "max",
            "password": "correct horse battery",
            "csrf": token.group(1),
            "next": "https://evil.example/",
        },
    )
    assert evil.status_code in (303, 403) and "evil" not in evil.headers.get("location", "")


def log_in(daemon: Daemon, site: httpx.Client) -> None:
    daemon.store.access.set_user("max", "correct horse battery", "Max Keller")
    token = re.search(r'name="csrf" value="([^"]+)"', site.get("/login").text)
    assert token is not None
    form = {"username": "max", "password": "correct horse battery", "csrf": token.group(1)}
    assert site.post("/login", data=form).status_code == 303


def funnel_row(html: str, step: str) -> list[int]:
    row = re.search(rf"<tr><td><strong>{step}</strong>.*?</tr>", html, re.S)
    assert row is not None, step
    return [int(n) for n in re.findall(r'<td class="n">(\d+)', row.group(0))]


def test_scenario_page_shows_the_per_step_funnel_without_scanner_clicks(
    daemon: Daemon, site: httpx.Client, smtp: SmtpServer, clock: FakeClock
) -> None:
    send_welcome(daemon, smtp)
    clock.advance(timedelta(hours=4))  # 10:00 in São Paulo: Kim's window opens
    send_welcome(daemon, smtp)
    assert len(smtp.messages) == 2
    clock.advance(timedelta(minutes=3))  # people click minutes later, not within seconds of delivery
    for message in smtp.messages:
        html = message.get_body(("html",)).get_content()  # type: ignore[union-attr]
        link = path_of(next(u for u in re.findall(r'href="([^"]+)"', html) if "/c/" in u))
        person = message["To"].addresses[0].addr_spec == "ada@nordwerk.example"
        agent = "Mozilla/5.0 (Macintosh)" if person else "Mozilla/5.0 (compatible; Barracuda)"
        assert site.get(link, headers={"User-Agent": agent}).status_code == 302
    log_in(daemon, site)
    page = site.get("/scenarios/whitepaper_nurture")
    assert page.status_code == 200
    # entered, sent, opened, clicked, unsubscribed, bounced, converted
    assert funnel_row(page.text, "welcome") == [2, 2, 1, 1, 0, 0, 0]
    assert funnel_row(page.text, "pause_before_case_study") == [2]
    assert "2 enrolled, 2 active" in page.text
    journey = page.text[page.text.index("<svg") : page.text.index("</svg>")]
    assert ">welcome</text>" in journey and ">2 entered</text>" in journey and ">timeout</text>" in journey

    scoring = site.get("/scoring")
    assert scoring.status_code == 200 and "2 reachable leads: 2 cold." in scoring.text
