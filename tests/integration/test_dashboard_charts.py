"""The dashboard's charts on their pages, from what really happened (over real HTTP)."""

from __future__ import annotations

import re
from datetime import timedelta

import httpx

from nurture.clock import FakeClock
from nurture.daemon import Daemon
from nurture.lifecycle import feedback
from tests.integration.test_qualification import record
from tests.integration.test_web import daemon, log_in, send_welcome, site  # noqa: F401  (fixtures)
from tests.smtp_server import SmtpServer


def chart(html: str, ident: str) -> str:
    found = re.search(rf'<div class="chart" id="{ident}">(.*?)</div>', html, re.S)
    assert found is not None, f"no {ident} on the page"
    return found.group(1)


def tips(svg: str) -> list[str]:
    return re.findall(r"<title>([^<]*)</title>", svg)


def test_lead_scenario_and_scoring_pages_draw_their_charts(
    daemon: Daemon,  # noqa: F811
    site: httpx.Client,  # noqa: F811
    smtp: SmtpServer,
    clock: FakeClock,
) -> None:
    welcome = send_welcome(daemon, smtp)
    assert welcome is not None
    record(daemon, "ada@nordwerk.example", "webinar_attended", clock.now() - timedelta(hours=3))
    record(daemon, "ada@nordwerk.example", "inquiry", clock.now() - timedelta(hours=1), url="/contact")
    lead = daemon.store.leads.by_email("ada@nordwerk.example")
    assert lead is not None
    [send] = daemon.store.sends.of_lead(lead.id)
    clock.advance(timedelta(minutes=5))
    send_welcome(daemon, smtp)  # scores Ada: hot
    lead = daemon.store.leads.by_email("ada@nordwerk.example")
    assert lead is not None and lead.lifecycle_stage == "hot"
    feedback(daemon.store, lead.email, "accept", "call booked", "max", clock.now())
    record(daemon, "ada@nordwerk.example", "unsubscribe", clock.now(), send=send.id)
    log_in(daemon, site)

    page = site.get(f"/leads/{lead.id}").text
    score = chart(page, "score-chart")
    assert 'role="img"' in score and "Engagement score over time" in score
    assert any(t.startswith("hot from ") for t in tips(score)), "the hot line of the lead's grade"
    assert any(f"engagement {lead.score_engagement}, fit {lead.score_fit}" in t for t in tips(score))

    page = site.get("/scenarios/whitepaper_nurture").text
    funnel = chart(page, "funnel-chart")
    assert "welcome: sent 1 (send_email)" in tips(funnel) and "welcome: entered 2 (send_email)" in tips(funnel)
    day = clock.now().date().isoformat()[5:]
    assert f"{day}: unsubscribes 1" in tips(chart(page, "deliverability-chart"))

    page = site.get("/scoring").text
    backtest = chart(page, "backtest-chart")
    assert "Backtest: precision and recall per hot threshold" in backtest
    assert any(re.fullmatch(r"A\+B from \d+: precision 100% \(1 good of 1\)", t) for t in tips(backtest)), tips(
        backtest
    )
