"""Finding leads on the dashboard: search by email, name and company; filters; sorts; pages
(over real HTTP, on SQLite and PostgreSQL)."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

import httpx

from nurture.daemon import Daemon
from nurture.web.app import create_app
from tests.http_server import serving
from tests.integration.conftest import copy_samples
from tests.integration.test_web import log_in

COMPANIES = ("Nordwerk", "Tiny Shop", "Acme Analytics", "Brückenbau")
DOMAINS = ("nordwerk", "tiny", "acme", "bruecke")


def fill(daemon: Daemon, n: int) -> None:
    with daemon.store.transaction() as conn:
        for i in range(n):
            daemon.store.leads.upsert(
                conn,
                {
                    "email": f"person{i:03d}@{DOMAINS[i % 4]}.example",
                    "first_name": ("Ada", "Kim", "Lena", "Omar")[i % 4],
                    "last_name": f"Lang{i:03d}",
                    "company": COMPANIES[i % 4],
                    "lifecycle_stage": "hot" if i % 10 == 0 else "cold",
                    "grade": "ABCD"[i % 4],
                    "owner": "max" if i % 3 == 0 else "eva",
                    "score_engagement": i,
                },
            )


def emails(html: str) -> list[str]:
    table = re.search(r'<table id="(?:leads|hot)">.*?</table>', html, re.S)
    assert table is not None
    return re.findall(r">(person\d+@[a-z]+\.example)<", table.group(0))


def test_leads_are_found_by_email_name_and_company_filtered_sorted_and_paged(
    db_url: str, make_daemon: Callable[..., Daemon], workspace: Path
) -> None:
    copy_samples(workspace)
    daemon = make_daemon(db_url, base_url="http://nurture.test")
    fill(daemon, 120)
    with serving(create_app(daemon.settings, daemon.clock, daemon.store)) as base, httpx.Client(base_url=base) as site:
        log_in(daemon, site)

        assert len(emails(site.get("/leads", params={"sort": "email"}).text)) == 50
        seen: list[str] = []
        url: str | None = "/leads?sort=email"
        while url:
            page = site.get(url).text
            seen += emails(page)
            found = re.search(r'<a href="([^"]+)" rel="next">', page)
            url = found.group(1).replace("&amp;", "&") if found else None
        assert len(seen) == 120 and seen == sorted(seen), "three pages, in order, none twice"

        assert emails(site.get("/leads", params={"q": "PERSON007"}).text) == ["person007@bruecke.example"]
        assert len(emails(site.get("/leads", params={"q": "lang01"}).text)) == 10, "last name prefix"
        by_first = emails(site.get("/leads", params={"q": "lena", "sort": "email"}).text)
        assert len(by_first) == 30 and all(int(e[6:9]) % 4 == 2 for e in by_first)
        company = site.get("/leads", params={"q": "tiny"}).text
        assert len(emails(company)) == 30 and "Matching “tiny”" in company
        assert emails(site.get("/leads", params={"q": "50%"}).text) == [], "a % is a character, not a wildcard"

        hot_a = emails(site.get("/leads", params={"stage": "hot", "grade": "A", "sort": "engagement"}).text)
        assert hot_a == [f"person{i:03d}@nordwerk.example" for i in (100, 80, 60, 40, 20, 0)]
        theirs = emails(site.get("/leads", params={"owner": "max", "grade": "B"}).text)
        assert len(theirs) == 10 and all(int(e[6:9]) % 3 == 0 and int(e[6:9]) % 4 == 1 for e in theirs)

        inbox = site.get("/inbox", params={"sort": "engagement", "owner": "eva"}).text
        assert 'Hot leads <span class="muted">(12)</span>' in inbox
        expected = (110, 100, 80, 70, 50, 40, 20, 10)  # hot (i % 10 == 0), not max's (i % 3 != 0)
        assert emails(inbox) == [f"person{i:03d}@{DOMAINS[i % 4]}.example" for i in expected]
        assert emails(site.get("/inbox", params={"q": "nordwerk"}).text) != []
        lead = daemon.store.leads.by_email("person010@acme.example")
        assert lead is not None
        now = daemon.clock.now()
        with daemon.store.transaction() as conn:
            row = {
                "lead_id": lead.id,
                "scenario_id": "whitepaper_nurture",
                "scenario_version": "v1",
                "state": "welcome",
            }
            daemon.store.enrolments.enrol(conn, [{**row, "entered_at": now, "enrolled_at": now, "due_at": now}])
        assert emails(site.get("/inbox", params={"scenario": "whitepaper_nurture"}).text) == ["person010@acme.example"]
