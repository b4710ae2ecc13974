"""Machine activity through the real tracking endpoints: client address, timing, the hidden link."""

from __future__ import annotations

import re
import shutil
from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path

import httpx
import pytest
from sqlalchemy import select

from nurture.clock import FakeClock
from nurture.daemon import Daemon
from nurture.store.tables import EVENTS
from nurture.web.app import create_app
from tests.http_server import serving
from tests.integration.conftest import ROOT
from tests.integration.test_daemon import import_csv
from tests.integration.test_web import LEADS_CSV, log_in, path_of, send_welcome
from tests.smtp_server import SmtpServer

CHROME = (
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36"
)
SAFE_LINKS = "microsoft office/16.0 (windows nt 10.0; microsoft outlook 16.0.17928; pro)"


@pytest.fixture
def daemon(db_url: str, make_daemon: Callable[..., Daemon], workspace: Path, tmp_path: Path) -> Daemon:
    for name in ("whitepaper_nurture.yaml", "scoring.yaml"):
        shutil.copy(ROOT / "scenarios" / name, workspace / "scenarios")
    built = make_daemon(db_url, base_url="http://nurture.test")
    import_csv(built, tmp_path, LEADS_CSV)
    return built


@pytest.fixture
def site(daemon: Daemon) -> Iterator[httpx.Client]:
    with serving(create_app(daemon.settings, daemon.clock, daemon.store)) as base, httpx.Client(base_url=base) as c:
        yield c


def pixel_of(html: str) -> str:
    """The open pixel's address: the welcome email is too short to carry one, but its token is
    the recipient's, the same as the unsubscribe link's."""
    unsubscribe = next(u for u in re.findall(r'href="([^"]+)"', html) if "/u/" in u)
    return path_of(unsubscribe).replace("/u/", "/o/") + ".gif"


def tracked_props(daemon: Daemon, type_: str) -> list[dict[str, object]]:
    with daemon.store.reading() as conn:
        rows = conn.execute(select(EVENTS.c.props).where(EVENTS.c.type == type_).order_by(EVENTS.c.id)).all()
    return [dict(r.props) for r in rows]


def engagement_of(daemon: Daemon, email: str) -> tuple[int, list[str]]:
    lead = daemon.store.leads.by_email(email)
    assert lead is not None and daemon.catalog.scoring is not None
    with daemon.store.reading() as conn:
        result = daemon.qualifier.score_lead(daemon.catalog.scoring, conn, lead, daemon.clock.now())
    return result.engagement, [f"{a.type}:{a.verdict.kind}" for a in result.activity]


def test_every_email_carries_a_hidden_link_and_a_request_for_it_discounts_that_sends_clicks(
    daemon: Daemon, site: httpx.Client, smtp: SmtpServer, clock: FakeClock
) -> None:
    message = send_welcome(daemon, smtp)
    html = message.get_body(("html",)).get_content()  # type: ignore[union-attr]
    text = message.get_body(("plain",)).get_content()  # type: ignore[union-attr]
    [hidden] = re.findall(r'<a href="([^"]+/h/[^"]+)" style="display:none" aria-hidden="true"', html)
    assert "/h/" not in text  # a person reading the text part never sees it either
    link = next(u for u in re.findall(r'href="([^"]+)"', html) if "/c/" in u)

    clock.advance(timedelta(minutes=2))
    scanner = {"User-Agent": CHROME, "X-Forwarded-For": "3.236.10.20"}
    assert site.get(path_of(link), headers=scanner).status_code == 302
    answer = site.get(path_of(hidden), headers=scanner)
    assert answer.status_code == 200 and answer.headers["cache-control"].startswith("no-store")
    [trap] = tracked_props(daemon, "honeypot")
    assert trap["ip"] == "3.236.10.20" and trap["send"] is not None
    assert engagement_of(daemon, "ada@nordwerk.example") == (0, ["click:machine", "honeypot:machine"])

    clock.advance(timedelta(hours=3))
    person = {"User-Agent": CHROME, "X-Forwarded-For": "91.64.112.37"}
    assert site.get(path_of(link), headers=person).status_code == 302
    engagement, verdicts = engagement_of(daemon, "ada@nordwerk.example")
    assert engagement == 5 and verdicts == ["click:machine", "honeypot:machine", "click:human"]

    log_in(daemon, site)
    lead = daemon.store.leads.by_email("ada@nordwerk.example")
    assert lead is not None
    page = site.get(f"/leads/{lead.id}").text
    timeline = re.search(r'<table id="timeline">.*?</table>', page, re.S)
    assert timeline is not None
    assert "machine: requested the hidden link no person sees" in timeline.group(0)
    assert "machine: 0s from a request for this email" in timeline.group(0)
    assert "Tracking: 1 by people, 2 by machines." in page
    funnel = site.get("/scenarios/whitepaper_nurture").text
    welcome = re.search(r"<tr><td><strong>welcome</strong>.*?</tr>", funnel, re.S)
    assert welcome is not None and "0 opened, 1 clicked" in welcome.group(0)  # the scanned email, apart


def test_opens_and_clicks_record_the_client_address_user_agent_and_time_since_delivery(
    daemon: Daemon, site: httpx.Client, smtp: SmtpServer, clock: FakeClock
) -> None:
    message = send_welcome(daemon, smtp)
    html = message.get_body(("html",)).get_content()  # type: ignore[union-attr]
    pixel = pixel_of(html)
    link = next(u for u in re.findall(r'href="([^"]+)"', html) if "/c/" in u)

    clock.advance(timedelta(seconds=1))
    site.get(path_of(pixel), headers={"User-Agent": CHROME, "X-Forwarded-For": "34.201.7.9"})
    clock.advance(timedelta(minutes=30))
    site.get(path_of(link), headers={"User-Agent": SAFE_LINKS, "X-Forwarded-For": "20.83.1.2"})
    [opened] = tracked_props(daemon, "open")
    [clicked] = tracked_props(daemon, "click")
    assert (opened["ip"], opened["seconds_after_delivery"], opened["user_agent"]) == ("34.201.7.9", 1.0, CHROME)
    assert (clicked["ip"], clicked["seconds_after_delivery"]) == ("20.83.1.2", 1801.0)
    engagement, verdicts = engagement_of(daemon, "ada@nordwerk.example")
    assert engagement == 0 and verdicts == ["open:machine", "click:machine"]  # 1 s after delivery; Safe Links


def test_the_address_can_be_kept_as_its_network_only(
    db_url: str, make_daemon: Callable[..., Daemon], workspace: Path, tmp_path: Path, smtp: SmtpServer
) -> None:
    for name in ("whitepaper_nurture.yaml", "scoring.yaml"):
        shutil.copy(ROOT / "scenarios" / name, workspace / "scenarios")
    daemon = make_daemon(db_url, base_url="http://nurture.test", tracking_address_days=0)
    import_csv(daemon, tmp_path, LEADS_CSV)
    message = send_welcome(daemon, smtp)
    html = message.get_body(("html",)).get_content()  # type: ignore[union-attr]
    pixel = pixel_of(html)
    with serving(create_app(daemon.settings, daemon.clock, daemon.store)) as base, httpx.Client(base_url=base) as c:
        c.get(path_of(pixel), headers={"X-Forwarded-For": "34.201.7.9"})  # from a proxy on this host
    [opened] = tracked_props(daemon, "open")
    assert opened["ip"] == "34.201.7.0"  # its /24 only


def test_full_client_addresses_are_kept_only_for_the_days_configured(
    daemon: Daemon, site: httpx.Client, smtp: SmtpServer, clock: FakeClock
) -> None:
    message = send_welcome(daemon, smtp)
    html = message.get_body(("html",)).get_content()  # type: ignore[union-attr]
    link = next(u for u in re.findall(r'href="([^"]+)"', html) if "/c/" in u)
    clock.advance(timedelta(minutes=1))
    site.get(path_of(link), headers={"User-Agent": CHROME, "X-Forwarded-For": "40.107.33.12"})  # Safe Links
    clock.advance(timedelta(days=daemon.settings.tracking_address_days + 1))
    site.get(path_of(link), headers={"User-Agent": CHROME, "X-Forwarded-For": "91.64.112.37"})  # a person, today
    before = engagement_of(daemon, "ada@nordwerk.example")

    cutoff = clock.now() - timedelta(days=daemon.settings.tracking_address_days)
    assert daemon.store.events.forget_addresses(cutoff) == 1
    assert [p["ip"] for p in tracked_props(daemon, "click")] == ["40.107.33.0", "91.64.112.37"]
    assert engagement_of(daemon, "ada@nordwerk.example") == before  # the verdicts did not change
    assert before[1] == ["click:machine", "click:human"]
    assert daemon.store.events.forget_addresses(cutoff) == 0  # resumes where it stopped
