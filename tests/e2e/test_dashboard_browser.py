"""The dashboard in a real headless browser (Debian's chromium, driven by Playwright)."""

from __future__ import annotations

import asyncio
import os
import re
import shutil
from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path

import pytest

from nurture.clock import FakeClock
from nurture.daemon import Daemon
from nurture.web.app import create_app
from tests.http_server import serving
from tests.integration.conftest import ROOT
from tests.integration.test_daemon import import_csv
from tests.integration.test_qualification import LEADS_CSV, record
from tests.smtp_server import SmtpServer

CHROMIUM = os.environ.get("NURTURE_TEST_CHROMIUM", "/usr/bin/chromium")
# Where the screenshots of every page go, for a reviewer to look at (gitignored).
SCREENSHOTS = Path(os.environ.get("NURTURE_SCREENSHOTS", str(ROOT / "test-artifacts" / "screenshots")))
# Skipped only where nobody asked for it: CI names the browser and then a missing one fails.
pytestmark = pytest.mark.skipif(
    not Path(CHROMIUM).exists() and "NURTURE_TEST_CHROMIUM" not in os.environ,
    reason=f"no chromium at {CHROMIUM} (apt-get install chromium; .ci/run does)",
)
# Headless in a closed network: no first-run, sync, component or background fetches.
FLAGS = [
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
]


@pytest.fixture
def hot_lead_site(
    sqlite_url: str, make_daemon: Callable[..., Daemon], workspace: Path, clock: FakeClock, tmp_path: Path
) -> Iterator[tuple[str, Daemon]]:
    for name in ("whitepaper_nurture.yaml", "scoring.yaml"):
        shutil.copy(ROOT / "scenarios" / name, workspace / "scenarios")
    daemon = make_daemon(sqlite_url, base_url="http://nurture.test")
    import_csv(daemon, tmp_path, LEADS_CSV)

    async def promote() -> None:
        await daemon.tick()
        record(daemon, "ada@nordwerk.example", "webinar_attended", clock.now() - timedelta(hours=3))
        record(daemon, "ada@nordwerk.example", "inquiry", clock.now() - timedelta(hours=1), url="/contact")
        clock.advance(timedelta(minutes=5))
        await daemon.tick()
        assert daemon.pool is not None
        await daemon.pool.close()

    asyncio.run(promote())
    daemon.store.access.set_user("max", "correct horse battery", "Max Keller")
    with serving(create_app(daemon.settings, clock, daemon.store)) as base:
        yield base, daemon


def test_sales_logs_in_accepts_a_hot_lead_and_sees_its_lifecycle_change(hot_lead_site: tuple[str, Daemon]) -> None:
    from playwright.sync_api import expect, sync_playwright

    base, daemon = hot_lead_site
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
        page = browser.new_page()
        page.goto(f"{base}/inbox")
        expect(page).to_have_url(f"{base}/login?next=/inbox")

        page.get_by_label("Name").fill("max")
        page.get_by_label("Password").fill("correct horse battery")
        page.get_by_role("button", name="Log in").click()
        expect(page).to_have_url(f"{base}/inbox")
        expect(page.get_by_role("heading", name="Hot leads")).to_contain_text("(1)")

        row = page.locator("#hot tr", has_text="ada@nordwerk.example")
        expect(row).to_contain_text("Nordwerk")
        row.get_by_label("Reason for ada@nordwerk.example").fill("Call booked for Tuesday")
        row.get_by_role("button", name="Accept").click()

        expect(page.get_by_role("status")).to_have_text("ada@nordwerk.example: hot → accepted")
        expect(page.locator("#hot tr", has_text="ada@nordwerk.example")).to_have_count(0)
        expect(page.locator("#recent")).to_contain_text("Call booked for Tuesday")

        page.locator("#recent").get_by_role("link", name="ada@nordwerk.example").click()
        expect(page.locator("#stage")).to_have_text("accepted")
        latest = page.locator("#lifecycle tr").nth(1)
        expect(latest).to_contain_text("hot → accepted")
        expect(latest).to_contain_text("Call booked for Tuesday")
        expect(latest).to_contain_text("max")
        expect(page.locator("#explain")).to_contain_text("webinar_attended")
        browser.close()

    lead = daemon.store.leads.by_email("ada@nordwerk.example")
    assert lead is not None and lead.lifecycle_stage == "accepted"


def more_leads(daemon: Daemon, count: int) -> None:
    """Enough leads for the lists to have pages, some hot, with owners and grades."""
    companies = ("Nordwerk", "Tiny Shop", "Acme Analytics", "Brückenbau")
    with daemon.store.transaction() as conn:
        for i in range(count):
            daemon.store.leads.upsert(
                conn,
                {
                    "email": f"person{i:03d}@firm{i % 7}.example",
                    "first_name": ("Lena", "Omar", "Greta", "Sven")[i % 4],
                    "last_name": f"Berg{i:03d}",
                    "company": companies[i % 4],
                    "lifecycle_stage": "hot" if i % 9 == 0 else "cold",
                    "grade": "ABCD"[i % 4],
                    "owner": "max" if i % 3 == 0 else "eva",
                    "score_engagement": i % 80,
                    "score_fit": 20 + i % 30,
                },
            )


def test_every_dashboard_page_in_a_browser_with_screenshots(
    hot_lead_site: tuple[str, Daemon], smtp: SmtpServer
) -> None:
    """Log in, search, page and sort the leads, open a lead, decide on one in the inbox, look at a
    scenario, preview an email for a lead and send oneself a test, look at scoring; a
    screenshot of every page is saved for a reviewer."""
    from playwright.sync_api import expect, sync_playwright

    base, daemon = hot_lead_site
    more_leads(daemon, 70)
    daemon.store.access.set_user("max", "correct horse battery", email="max@acme.example")
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    shots: list[str] = []

    def shot(page: object, name: str) -> None:
        path = SCREENSHOTS / f"{len(shots) + 1:02d}-{name}.png"
        page.screenshot(path=str(path), full_page=True)  # type: ignore[attr-defined]
        shots.append(path.name)

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        page.goto(f"{base}/leads")
        expect(page).to_have_url(f"{base}/login?next=/leads")
        shot(page, "login")
        page.get_by_label("Name").fill("max")
        page.get_by_label("Password").fill("correct horse battery")
        page.get_by_role("button", name="Log in").click()
        expect(page).to_have_url(f"{base}/leads")

        # Leads: 72 of them, 50 a page, newest change first; the next page has the rest.
        expect(page.locator("#leads tr")).to_have_count(51)
        shot(page, "leads")
        page.get_by_role("link", name="Next →").click()
        expect(page.locator("#leads tr")).to_have_count(23)
        expect(page.get_by_role("link", name="Next →")).to_have_count(0)
        page.get_by_role("link", name="← Previous").click()
        expect(page.locator("#leads tr")).to_have_count(51)

        # Search by company, filter by owner, sort by engagement.
        page.get_by_label("Search").fill("brücken")
        page.get_by_label("Owner").fill("max")
        page.get_by_label("Sort").select_option("engagement")
        page.get_by_role("button", name="Search").click()
        rows = page.locator("#leads tr")
        expect(rows).to_have_count(7)  # Brückenbau (i % 4 == 3) and max's (i % 3 == 0): 3, 15, … 63, and the header
        engagement = [int(t) for t in page.locator("#leads tr td:nth-child(7)").all_inner_texts()]
        assert engagement == sorted(engagement, reverse=True) and len(engagement) == 6
        shot(page, "leads-search")
        page.get_by_label("Search").fill("ada@nord")
        page.get_by_label("Owner").fill("")
        page.get_by_role("button", name="Search").click()
        expect(page.locator("#leads tr")).to_have_count(2)

        # The lead's page: its score over time with the hot line.
        page.locator("#leads").get_by_role("link", name="ada@nordwerk.example").click()
        expect(page.locator("#score-chart svg[role=img]")).to_be_visible()
        expect(page.locator("#score-chart")).to_contain_text("Engagement score over time")
        shot(page, "lead")

        # The inbox: search the hot leads, decide on one.
        page.get_by_role("link", name="Hot leads").click()
        expect(page.get_by_role("heading", name="Hot leads")).to_contain_text("(9)")
        shot(page, "inbox")
        page.get_by_label("Search").fill("nordwerk")
        page.get_by_role("button", name="Search").click()
        row = page.locator("#hot tr", has_text="ada@nordwerk.example")
        row.get_by_label("Reason for ada@nordwerk.example").fill("No budget this year")
        row.get_by_role("button", name="Reject").click()
        expect(page.get_by_role("status")).to_have_text("ada@nordwerk.example: hot → rejected")
        expect(page).to_have_url(re.compile(r"/inbox\?q=nordwerk&"))  # back where the decision was made
        expect(page.locator("#recent")).to_contain_text("No budget this year")
        shot(page, "inbox-decided")

        # Scenarios, and one scenario: its funnel, checks, and an email previewed for a lead.
        page.get_by_role("link", name="Scenarios").click()
        shot(page, "scenarios")
        page.locator('a[href="/scenarios/whitepaper_nurture"]').click()
        expect(page.locator("#funnel-chart svg")).to_be_visible()
        expect(page.locator("#findings")).to_be_visible()
        shot(page, "scenario")
        page.get_by_label("Email step").select_option("case_study")
        page.get_by_label("For the lead").fill("kim@tinyshop.example")
        page.get_by_role("button", name="Preview").click()
        expect(page.locator("#preview-subject")).to_have_text("How Nordwerk cut scrap by 23% with Acme Analytics")
        frame = page.frame_locator("#preview-html")
        expect(frame.locator("body")).to_contain_text("Kim")
        shot(page, "preview")
        page.get_by_role("button", name="Send me a test").click()
        expect(page.get_by_role("status")).to_have_text(
            "test of case_study for kim@tinyshop.example sent to max@acme.example"
        )
        shot(page, "preview-sent")

        page.get_by_role("link", name="Scoring").click()
        expect(page.locator("#distribution")).to_be_visible()
        shot(page, "scoring")
        browser.close()

    [test] = [m for m in smtp.messages if m["To"].addresses[0].addr_spec == "max@acme.example"]
    assert str(test["Subject"]) == "[test] How Nordwerk cut scrap by 23% with Acme Analytics"
    lead = daemon.store.leads.by_email("ada@nordwerk.example")
    assert lead is not None and lead.lifecycle_stage == "rejected"
    assert all((SCREENSHOTS / name).stat().st_size > 5000 for name in shots) and len(shots) == 11
