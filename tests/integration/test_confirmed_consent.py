"""A scenario that requires confirmed consent, end to end: real daemon, real SMTP, the double
opt-in link followed over real HTTP, SQLite and PostgreSQL."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path

import httpx
import pytest

from nurture.clock import FakeClock
from nurture.consent.model import ConsentSource, ConsentStatus
from nurture.daemon import Daemon
from nurture.web.app import create_app
from tests.http_server import serving
from tests.integration.conftest import tick, write_scenario
from tests.smtp_server import SmtpServer

NEWS = """
id: product_news
name: Product news
topic: product-news
require_confirmed_consent: true
steps:
  - id: news
    type: send_email
    template: monthly_digest
    subject: What is new
"""


@pytest.fixture
def site(
    db_url: str, make_daemon: Callable[..., Daemon], workspace: Path, clock: FakeClock
) -> Iterator[tuple[httpx.Client, Daemon]]:
    write_scenario(workspace, NEWS, "news.yaml")
    daemon = make_daemon(db_url, consent_regime="auto")
    with serving(create_app(daemon.settings, clock, daemon.store)) as base, httpx.Client(base_url=base) as client:
        daemon.settings.base_url = base  # the links in the emails lead to this server
        client.headers["Authorization"] = f"Bearer {daemon.store.access.create_key('website')}"
        yield client, daemon


def sign_up(client: httpx.Client, email: str, status: str, source: str) -> None:
    lead = {
        "email": email, "first_name": "Hana", "country": "JP", "timezone": "Asia/Tokyo", "source": "web",
        "consent": [{"topic": "product-news", "status": status, "source": source, "wording": "news-form-ja-v1"}],
    }  # fmt: skip
    answer = client.post("/api/v1/leads", json=lead)
    assert answer.status_code == 200, answer.text


def mail_to(smtp: SmtpServer, email: str) -> list[str]:
    return [str(m["Subject"]) for m in smtp.messages if m["To"].addresses[0].addr_spec == email]


def scenarios_of(daemon: Daemon, email: str) -> list[tuple[str, str]]:
    lead = daemon.store.leads.by_email(email)
    assert lead is not None
    return [(row.scenario_id, row.status) for row in daemon.store.enrolments.of_lead(lead.id)]


def test_a_scenario_that_requires_confirmed_consent_enrols_a_sign_up_only_after_its_link_was_followed(
    site: tuple[httpx.Client, Daemon], smtp: SmtpServer, clock: FakeClock
) -> None:
    client, daemon = site
    sign_up(client, "hana@example.jp", "pending", "form")  # awaits its double opt-in
    sign_up(client, "ken@example.jp", "granted", "form")  # agreed on a form, never confirmed
    tick(daemon)

    [confirmation] = mail_to(smtp, "hana@example.jp")  # only the confirmation email
    assert "メール配信のご確認" in confirmation
    assert scenarios_of(daemon, "hana@example.jp") == []
    assert scenarios_of(daemon, "ken@example.jp") == [] and mail_to(smtp, "ken@example.jp") == []

    body = next(m for m in smtp.messages if m["To"].addresses[0].addr_spec == "hana@example.jp")
    text = body.get_body(("plain",)).get_content()  # type: ignore[union-attr]
    link = re.search(r"https?://\S+(/consent/confirm/\S+)", text)
    assert link is not None, text
    # A mail scanner fetching the link confirms nothing.
    assert client.get(link[1]).status_code == 200
    clock.advance(timedelta(minutes=5))
    tick(daemon)
    assert scenarios_of(daemon, "hana@example.jp") == [] and len(mail_to(smtp, "hana@example.jp")) == 1

    clock.advance(timedelta(hours=3))  # she confirms later that day: the enrol job has run since
    tick(daemon)
    confirmed = client.post(link[1], headers={"User-Agent": "Mozilla/5.0 (Hana's phone)"})
    assert confirmed.status_code == 200 and "Thank you" in confirmed.text
    clock.advance(timedelta(minutes=1))
    tick(daemon)

    assert [scenario for scenario, _status in scenarios_of(daemon, "hana@example.jp")] == ["product_news"]
    clock.advance(timedelta(hours=14))  # 21:06 in Tokyo: the news goes out in the morning
    tick(daemon)
    assert mail_to(smtp, "hana@example.jp") == [confirmation, "What is new"]
    hana = daemon.store.leads.by_email("hana@example.jp")
    assert hana is not None
    pending, grant = daemon.store.consents.of_lead(hana.id)
    assert (pending.status, grant.status, grant.source) == (
        ConsentStatus.PENDING,
        ConsentStatus.GRANTED,
        ConsentSource.DOUBLE_OPT_IN,
    )
    assert grant.user_agent == "Mozilla/5.0 (Hana's phone)"
    # A grant that was never confirmed still does not enrol.
    assert scenarios_of(daemon, "ken@example.jp") == [] and mail_to(smtp, "ken@example.jp") == []
