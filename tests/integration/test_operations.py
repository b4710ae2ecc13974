"""Operations over real HTTP: `/healthz` when the database is down, `/metrics` figures after a
bounce and a few events, and the ingest API's batch limit."""

from __future__ import annotations

import socket
from pathlib import Path

import httpx
import pytest

from nurture.clock import FakeClock
from nurture.config import Settings
from nurture.daemon import Daemon
from nurture.store.tables import EVENTS as EV
from nurture.web.app import create_app
from tests.http_server import serving
from tests.integration.conftest import tick
from tests.integration.test_web import api, count, daemon, site  # noqa: F401 (fixtures)
from tests.smtp_server import SmtpServer


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.mark.parametrize("kind", ["sqlite", "postgres"])
def test_healthz_answers_503_when_the_database_does_not_answer(kind: str, tmp_path: Path, clock: FakeClock) -> None:
    url = (
        f"sqlite:///{tmp_path / 'gone' / 'nurture.db'}"  # a folder that does not exist: nothing can open it
        if kind == "sqlite"
        else f"postgresql+psycopg://postgres@127.0.0.1:{closed_port()}/nurture"
    )
    settings = Settings(database_url=url, secret_key="test-secret", base_url="http://nurture.test")
    with serving(create_app(settings, clock)) as base:
        answer = httpx.get(f"{base}/healthz", timeout=30)
    assert answer.status_code == 503
    assert answer.json()["status"] == "unavailable" and answer.json()["database"]


def test_healthz_answers_200_while_the_database_answers(site: httpx.Client) -> None:  # noqa: F811
    answer = site.get("/healthz")
    assert (answer.status_code, answer.json()) == (200, {"status": "ok"})


def metric(text: str, name: str) -> float:
    """The value of one sample line of the Prometheus exposition, e.g. 'nurture_leads{stage="cold"}'."""
    for line in text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[-1])
    raise AssertionError(f"{name} not in /metrics:\n{text}")


def test_metrics_show_failures_by_reason_leads_by_stage_and_events_by_type(
    daemon: Daemon,  # noqa: F811
    api: httpx.Client,  # noqa: F811
    smtp: SmtpServer,
    clock: FakeClock,
) -> None:
    clock.set(clock.now().replace(hour=13))  # Monday 10:00 in São Paulo, 14:00 in Berlin: both in the window
    smtp.recorder.rcpt_replies["kim@tinyshop.example"] = "550 5.1.1 no such user"
    batch = {
        "events": [
            {"email": "ada@nordwerk.example", "type": "page_view", "props": {"url": "/blog"}},
            {"email": "ada@nordwerk.example", "type": "page_view", "props": {"url": "/docs"}},
            {"email": "ada@nordwerk.example", "type": "download", "props": {"asset": "whitepaper"}},
        ]
    }
    assert api.post("/api/v1/events/batch", json=batch).json() == {"stored": 3, "duplicates": 0}

    tick(daemon)
    text = api.get("/metrics", headers={"Authorization": "Bearer metrics-secret"}).text
    # Kim's welcome bounced; Ada's arrived.
    assert metric(text, 'nurture_email_failures_total{reason="bounced"}') == 1
    assert metric(text, 'nurture_email_failures_total{reason="failed"}') == 0
    assert metric(text, "nurture_emails_sent_total") == len(smtp.messages) == 1
    # Ada: 2 page views (1 point each) + a download (10) = 12 engagement, below the warm line of 15.
    assert metric(text, 'nurture_leads{stage="cold"}') == 2
    assert metric(text, 'nurture_events_total{type="page_view"}') == 2
    assert metric(text, 'nurture_events_total{type="download"}') == 1


def test_a_batch_of_1001_events_is_422_and_stores_nothing(daemon: Daemon, api: httpx.Client) -> None:  # noqa: F811
    event = {"email": "ada@nordwerk.example", "type": "page_view", "props": {"url": "/blog"}}
    answer = api.post("/api/v1/events/batch", json={"events": [event] * 1001}, timeout=120)
    assert answer.status_code == 422
    assert any(e["loc"][:2] == ["body", "events"] for e in answer.json()["detail"]), answer.json()
    assert count(daemon, EV) == 0
    exactly = api.post("/api/v1/events/batch", json={"events": [event] * 1000}, timeout=120)
    assert exactly.json() == {"stored": 1000, "duplicates": 0}
    assert count(daemon, EV) == 1000
