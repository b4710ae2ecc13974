"""The lead page shows what the stored score was made of and when, next to the score now."""

from __future__ import annotations

import asyncio
import re
from datetime import timedelta

import httpx

from nurture.clock import FakeClock
from nurture.daemon import Daemon
from tests.integration.test_qualification import record
from tests.integration.test_web import daemon, log_in, site  # noqa: F401  (fixtures)


def test_the_lead_page_shows_the_stored_score_as_of_when_and_the_score_now(
    daemon: Daemon,  # noqa: F811
    site: httpx.Client,  # noqa: F811
    clock: FakeClock,
) -> None:
    scored_at = clock.now()
    record(daemon, "ada@nordwerk.example", "webinar_attended", scored_at - timedelta(hours=3))
    record(daemon, "ada@nordwerk.example", "inquiry", scored_at - timedelta(hours=1), url="/contact")
    asyncio.run(daemon.qualify())
    lead = daemon.store.leads.by_email("ada@nordwerk.example")
    assert lead is not None and lead.scored_at == scored_at
    stored_engagement = lead.score_engagement
    clock.advance(timedelta(days=60))  # engagement decays; the stored score stays as it was made
    log_in(daemon, site)
    page = site.get(f"/leads/{lead.id}").text
    assert f"scored {scored_at:%Y-%m-%d %H:%M} UTC" in page
    assert f'What the stored score was made of <span class="muted">(as of {scored_at:%Y-%m-%d %H:%M} UTC)' in page
    stored_table = page[page.index('id="explain-stored"') : page.index("</table>", page.index('id="explain-stored"'))]
    assert "webinar_attended" in stored_table
    now = re.search(r"Why this score now <span class=\"muted\">\(([^:]+:\d\d) UTC: fit \d+, engagement (\d+)", page)
    assert now is not None and now.group(1) == f"{clock.now():%Y-%m-%d %H:%M}"
    assert int(now.group(2)) < stored_engagement
