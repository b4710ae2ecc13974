"""The preference centre and double opt-in in a real headless browser (Debian's chromium)."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path

import httpx
import pytest

from nurture.clock import FakeClock
from nurture.consent.model import ALL_TOPICS, ConsentSource, ConsentStatus
from nurture.daemon import Daemon
from nurture.web.app import create_app
from tests.e2e.test_dashboard_browser import CHROMIUM, FLAGS
from tests.http_server import serving
from tests.integration.conftest import ROOT, tick, write_scenario
from tests.integration.test_daemon import import_csv
from tests.smtp_server import SmtpServer

pytestmark = pytest.mark.skipif(
    not Path(CHROMIUM).exists(), reason=f"no chromium at {CHROMIUM} (apt-get install chromium; .ci/run does)"
)

NEWS = """
id: product_news
name: Product news
topic: product-news
steps:
  - id: news
    type: send_email
    template: monthly_digest
    subject: What is new
"""


@pytest.fixture
def site(
    sqlite_url: str, make_daemon: Callable[..., Daemon], workspace: Path, clock: FakeClock, tmp_path: Path
) -> Iterator[tuple[str, Daemon]]:
    text = (ROOT / "scenarios" / "whitepaper_nurture.yaml").read_text(encoding="utf-8")
    (workspace / "scenarios" / "whitepaper_nurture.yaml").write_text(text + "topic: whitepapers\n", encoding="utf-8")
    write_scenario(workspace, NEWS, "news.yaml")
    (workspace / "scenarios" / "scoring.yaml").write_text((ROOT / "scenarios" / "scoring.yaml").read_text())
    daemon = make_daemon(sqlite_url, consent_regime="auto")
    import_csv(daemon, tmp_path, "email,first_name,country,timezone,source\nann@shop.example,Ann,US,UTC,whitepaper\n")
    with serving(create_app(daemon.settings, clock, daemon.store)) as base:
        daemon.settings.base_url = base
        yield base, daemon


def link_in(smtp: SmtpServer, to: str, pattern: str) -> str:
    for message in smtp.messages:
        if message["To"].addresses[0].addr_spec == to:
            found = re.search(pattern, message.get_body(("plain",)).get_content())  # type: ignore[union-attr]
            if found:
                return found[0]
    raise AssertionError(f"no email to {to} with {pattern}")


def test_a_person_leaves_one_topic_chooses_again_and_leaves_everything(
    site: tuple[str, Daemon], smtp: SmtpServer
) -> None:
    from playwright.sync_api import expect, sync_playwright

    _base, daemon = site
    tick(daemon)
    assert len(smtp.messages) == 2  # the whitepaper welcome and the product news
    ann = daemon.store.leads.by_email("ann@shop.example")
    assert ann is not None
    welcome = next(m for m in smtp.messages if m["Subject"] != "What is new")
    unsubscribe = re.search(r'href="([^"]+/u/[^"]+)"', welcome.get_body(("html",)).get_content())  # type: ignore[union-attr]
    assert unsubscribe

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
        page = browser.new_page()
        page.goto(unsubscribe[1])
        expect(page.get_by_role("heading", name="Email preferences")).to_be_visible()
        expect(page.get_by_label("Whitepapers")).to_be_checked()
        expect(page.get_by_label("Product news")).to_be_checked()
        assert daemon.store.consents.of_lead(ann.id) == []  # looking changes nothing

        page.get_by_role("button", name="Leave only “Whitepapers”").click()
        expect(page.get_by_role("status")).to_have_text("You will receive no more emails about Whitepapers.")
        expect(page.get_by_label("Whitepapers")).not_to_be_checked()
        expect(page.get_by_label("Product news")).to_be_checked()

        page.get_by_label("Whitepapers").check()
        page.get_by_role("button", name="Save my choices").click()
        expect(page.get_by_role("status")).to_have_text("Your choices are saved.")
        expect(page.get_by_label("Whitepapers")).to_be_checked()

        page.get_by_role("button", name="Unsubscribe from everything").click()
        expect(page.get_by_text("You receive no emails from Acme Analytics.")).to_be_visible()
        expect(page.get_by_label("Product news")).not_to_be_checked()
        agent = page.evaluate("navigator.userAgent")
        browser.close()

    records = daemon.store.consents.of_lead(ann.id)
    assert [(r.topic, r.status, r.source) for r in records] == [
        ("whitepapers", ConsentStatus.WITHDRAWN, ConsentSource.PREFERENCES),
        ("whitepapers", ConsentStatus.GRANTED, ConsentSource.PREFERENCES),
        (ALL_TOPICS, ConsentStatus.WITHDRAWN, ConsentSource.PREFERENCES),
    ]
    assert all(r.ip == "127.0.0.1" and r.user_agent == agent for r in records)
    ann = daemon.store.leads.by_email("ann@shop.example")
    assert ann is not None and ann.unsubscribed


def test_a_sign_up_is_confirmed_by_double_opt_in_and_an_old_link_expires(
    site: tuple[str, Daemon], smtp: SmtpServer, clock: FakeClock
) -> None:
    from playwright.sync_api import expect, sync_playwright

    base, daemon = site
    key = daemon.store.access.create_key("website")
    signup = {
        "email": "hana@example.jp", "last_name": "山田", "country": "JP", "timezone": "Asia/Tokyo", "source": "web",
        "consent": [{"topic": "product-news", "status": "pending", "source": "form", "wording": "news-form-ja-v1",
                     "ip": "203.0.113.7", "user_agent": "Mozilla/5.0 (form)"}],
    }  # fmt: skip
    answer = httpx.post(f"{base}/api/v1/leads", json=signup, headers={"Authorization": f"Bearer {key}"})
    assert answer.status_code == 200, answer.text
    tick(daemon)
    hana = daemon.store.leads.by_email("hana@example.jp")
    assert hana is not None
    mailed = [m for m in smtp.messages if m["To"].addresses[0].addr_spec == "hana@example.jp"]
    assert len(mailed) == 1 and "メール配信のご確認" in str(mailed[0]["Subject"])  # only the confirmation
    confirm = link_in(smtp, "hana@example.jp", r"https?://\S+/consent/confirm/\S+")

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
        page = browser.new_page()
        page.goto(confirm)
        expect(page.get_by_role("heading", name="Confirm your subscription")).to_be_visible()
        assert [r.status for r in daemon.store.consents.of_lead(hana.id)] == [ConsentStatus.PENDING]
        page.get_by_role("button", name="Yes, send me these emails").click()
        expect(page.get_by_role("heading", name="Thank you")).to_be_visible()
        agent = page.evaluate("navigator.userAgent")

        clock.advance(timedelta(days=8))
        expired = page.goto(confirm)
        assert expired is not None and expired.status == 410
        expect(page.get_by_role("alert")).to_contain_text("expired")
        browser.close()

    pending, confirmed = daemon.store.consents.of_lead(hana.id)
    assert (pending.wording, pending.ip, pending.user_agent) == ("news-form-ja-v1", "203.0.113.7", "Mozilla/5.0 (form)")
    assert confirmed.confirmed and confirmed.topic == "product-news"
    assert (confirmed.ip, confirmed.user_agent) == ("127.0.0.1", agent)
