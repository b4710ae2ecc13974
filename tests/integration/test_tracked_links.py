"""Every link tracked, end to end: a plain link in a real email, clicked over real HTTP,
ends a `wait_for: click` in the daemon."""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import httpx
from sqlalchemy import select

from nurture.clock import FakeClock
from nurture.daemon import Daemon
from nurture.store.tables import ENROLMENTS
from tests.http_server import serving
from tests.integration.conftest import tick, write_scenario
from tests.integration.test_daemon import import_csv
from tests.smtp_server import SmtpServer

SCENARIO = """
id: pricing_nudge
name: Pricing nudge
utm: {source: nurture, medium: email}
send_window: {days: [mon, tue, wed, thu, fri, sat, sun], start: "00:00", end: "23:59"}
steps:
  - id: offer
    type: send_email
    template: plain_offer
    subject: Our prices
  - id: await_click
    type: wait_for
    event: click
    where: 'event.link == "acme.example/pricing"'
    timeout: 3d
    on_event: clicked
    on_timeout: gave_up
  - id: clicked
    type: exit
    reason: clicked the plain link
  - id: gave_up
    type: exit
    reason: no click
"""
TEMPLATE = """<p>Hello {{ lead.first_name }},</p>
<p>See <a href="https://acme.example/pricing">our prices</a>.</p>
<p><a href="{{ unsubscribe_url }}">Unsubscribe</a></p>
"""


def test_a_click_on_a_plain_link_ends_a_wait_for_click(
    db_url: str, make_daemon: Callable[..., Daemon], workspace: Path, smtp: SmtpServer, clock: FakeClock, tmp_path: Path
) -> None:
    (workspace / "email_templates" / "plain_offer.html").write_text(TEMPLATE, encoding="utf-8")
    write_scenario(workspace, SCENARIO)
    daemon = make_daemon(db_url, base_url="http://nurture.test")
    import_csv(daemon, tmp_path, "email,first_name,timezone,source\nann@example.com,Ann,UTC,web\n")

    tick(daemon)
    [message] = smtp.messages
    html = message.get_body(("html",)).get_content()  # type: ignore[union-attr]
    text = message.get_body(("plain",)).get_content()  # type: ignore[union-attr]
    assert "https://acme.example/pricing" not in html and "https://acme.example/pricing" not in text
    [link] = [u for u in re.findall(r'href="([^"]+)"', html) if "/c/" in u]

    from nurture.web.app import create_app

    with serving(create_app(daemon.settings, daemon.clock, daemon.store)) as base, httpx.Client(base_url=base) as site:
        clock.advance(timedelta(hours=1))
        answer = site.get(urlsplit(link).path, headers={"User-Agent": "Mozilla/5.0 (Macintosh)"})
    assert answer.status_code == 302
    target = urlsplit(answer.headers["location"])
    assert (target.netloc, target.path) == ("acme.example", "/pricing")

    clock.advance(timedelta(minutes=5))
    tick(daemon)
    with daemon.store.reading() as conn:
        enrolment = conn.execute(select(ENROLMENTS.c.status, ENROLMENTS.c.state)).one()
    assert enrolment.status == "completed" and enrolment.state == "__end__"
    utm = {"utm_source": ["nurture"], "utm_medium": ["email"], "utm_campaign": ["pricing_nudge"]}
    assert parse_qs(target.query) == utm, "the scenario's UTM parameters, with its id as the campaign"
