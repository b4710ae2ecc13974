"""The lead page and `nurture score explain` show what the stored score was made of and when,
next to the score now; and say so when no breakdown adds up to the stored score any more."""

from __future__ import annotations

import asyncio
import html
import re
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from typer.testing import CliRunner

from nurture.cli import app
from nurture.cli import scoring as cli_scoring
from nurture.clock import FakeClock
from nurture.daemon import Daemon
from nurture.retention import prune_events
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


# The qualify job writes a lead only when its score changes, so `scored_at` may be long past,
# and the scoring file and the events may have changed since. A breakdown rebuilt from them
# then no longer adds up to the stored score; the lead page and `score explain` say so.

ADA = "ada@nordwerk.example"


def _scored(running: Daemon, clock: FakeClock) -> Any:
    """Ada scored now from a webinar three hours ago and an inquiry an hour ago."""
    record(running, ADA, "webinar_attended", clock.now() - timedelta(hours=3))
    record(running, ADA, "inquiry", clock.now() - timedelta(hours=1), url="/contact")
    asyncio.run(running.qualify())
    lead = running.store.leads.by_email(ADA)
    assert lead is not None and lead.scored_at == clock.now()
    return lead


def _explain(running: Daemon, clock: FakeClock, workspace: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """`nurture score explain` as of the test's clock."""
    monkeypatch.setattr(cli_scoring, "SystemClock", lambda: clock)
    ran = CliRunner().invoke(
        app,
        ["score", "explain", ADA, "--db", running.settings.database_url, "--scenarios", str(workspace / "scenarios")],
    )
    assert ran.exit_code == 0, ran.output
    return ran.output


def _stale_note(text: str, lead: Any, now: re.Match[str] | None) -> None:
    assert now is not None
    assert f"score recomputed now: fit {now.group(1)}, engagement {now.group(2)}" in text
    assert (
        f"stored fit {lead.score_fit}, engagement {lead.score_engagement} (grade {lead.grade}) "
        f"at {lead.scored_at:%Y-%m-%d %H:%M} UTC" in text
    )
    assert "No breakdown adds up to the stored score" in text


def _says_stored_is_stale(running: Daemon, browser: httpx.Client, cli: str) -> None:
    """The page and the command show the stored score with no breakdown of it, and the score now."""
    lead = running.store.leads.by_email(ADA)
    assert lead is not None
    page = html.unescape(browser.get(f"/leads/{lead.id}").text)
    assert 'id="explain-stored"' not in page
    assert "What the stored score was made of" not in page
    note = page[page.index('id="stored-note"') : page.index("</p>", page.index('id="stored-note"'))]
    _stale_note(
        note, lead, re.search(r"Why this score now <span class=\"muted\">\([^)]*UTC: fit (\d+), engagement (\d+)", page)
    )
    _stale_note(cli, lead, re.search(r"^\S+ \(stage \w+\): fit (\d+) \(grade \w\), engagement (\d+)", cli))
    assert "made of:" not in cli


def _says_made_of(running: Daemon, browser: httpx.Client, cli: str) -> None:
    """The page and the command break the stored score down as of when it was made, into parts
    that add up to it."""
    lead = running.store.leads.by_email(ADA)
    assert lead is not None
    page = html.unescape(browser.get(f"/leads/{lead.id}").text)
    assert 'id="stored-note"' not in page
    assert f'What the stored score was made of <span class="muted">(as of {lead.scored_at:%Y-%m-%d %H:%M} UTC)' in page
    table = page[page.index('id="explain-stored"') : page.index("</table>", page.index('id="explain-stored"'))]
    points = [float(p) for p in re.findall(r'<tr><td>\w+</td><td>[^<]+</td><td class="n">([\d.]+)', table)]
    assert points and abs(sum(points) - (lead.score_fit + lead.score_engagement)) < 1
    head = f"stored score, as of {lead.scored_at:%Y-%m-%d %H:%M} UTC: fit {lead.score_fit} (grade {lead.grade}), "
    assert f"{head}engagement {lead.score_engagement}; made of:" in cli


def test_a_scoring_file_edit_after_the_score_was_stored_is_told_not_hidden(
    daemon: Daemon,  # noqa: F811
    site: httpx.Client,  # noqa: F811
    clock: FakeClock,
    workspace: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    _scored(daemon, clock)
    log_in(daemon, site)
    _says_made_of(daemon, site, _explain(daemon, clock, workspace, monkeypatch))
    scoring = workspace / "scenarios" / "scoring.yaml"
    scoring.write_text(scoring.read_text().replace("event: inquiry, points: 40", "event: inquiry, points: 4"))
    clock.advance(timedelta(minutes=10))
    _says_stored_is_stale(daemon, site, _explain(daemon, clock, workspace, monkeypatch))
    daemon.load()
    daemon.qualifier.run_once(everyone=True)  # the daily rescore stores the new score
    _says_made_of(daemon, site, _explain(daemon, clock, workspace, monkeypatch))


def test_an_event_dated_before_the_stored_score_that_arrived_later_is_told_not_hidden(
    daemon: Daemon,  # noqa: F811
    site: httpx.Client,  # noqa: F811
    clock: FakeClock,
    workspace: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    scored = _scored(daemon, clock).scored_at
    log_in(daemon, site)
    record(daemon, ADA, "form_fill", scored - timedelta(hours=2))  # a late import, dated before the score
    clock.advance(timedelta(minutes=10))
    _says_stored_is_stale(daemon, site, _explain(daemon, clock, workspace, monkeypatch))
    asyncio.run(daemon.qualify())  # the next run sees the event and stores the new score
    lead = daemon.store.leads.by_email(ADA)
    assert lead is not None and lead.scored_at == clock.now()
    _says_made_of(daemon, site, _explain(daemon, clock, workspace, monkeypatch))


def test_events_pruned_after_the_stored_score_was_made_are_told_not_hidden(
    daemon: Daemon,  # noqa: F811
    site: httpx.Client,  # noqa: F811
    clock: FakeClock,
    workspace: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    record(daemon, ADA, "webinar_attended", clock.now() - timedelta(days=20))  # in the month before
    record(daemon, ADA, "inquiry", clock.now() - timedelta(hours=1), url="/contact")
    asyncio.run(daemon.qualify())
    log_in(daemon, site)
    _says_made_of(daemon, site, _explain(daemon, clock, workspace, monkeypatch))
    # Nothing happens for six months: the prune drops the month of the webinar, which the
    # stored score counted (the lead is not rescored here, as when its score comes out the same).
    clock.advance(timedelta(days=181))
    scoring = daemon.catalog.scoring
    assert scoring is not None
    pruned = prune_events(daemon.store, daemon.settings, scoring, clock.now() - scoring.lookback, overlap=timedelta(0))
    assert pruned.events >= 1
    _says_stored_is_stale(daemon, site, _explain(daemon, clock, workspace, monkeypatch))


def test_a_stored_score_that_only_the_score_now_still_adds_up_to_is_broken_down_as_of_now(
    daemon: Daemon,  # noqa: F811
    site: httpx.Client,  # noqa: F811
    clock: FakeClock,
    workspace: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    scoring = workspace / "scenarios" / "scoring.yaml"
    scoring.write_text(scoring.read_text().replace("half_life: 30d", "half_life: 100000d"))  # no decay to speak of
    daemon.load()
    # Two webinars: the first takes the rule's whole cap of 20, so the score stays 20 once it
    # leaves the lookback and the daily rescores write nothing.
    record(daemon, ADA, "webinar_attended", clock.now() - timedelta(days=20))
    record(daemon, ADA, "webinar_attended", clock.now() - timedelta(hours=1))
    asyncio.run(daemon.qualify())
    clock.advance(timedelta(days=179))
    daemon.qualifier.run_once(everyone=True)
    lead = daemon.store.leads.by_email(ADA)
    assert lead is not None and lead.score_engagement == 20 and lead.scored_at == clock.now() - timedelta(days=179)
    text = scoring.read_text()
    scoring.write_text(
        text.replace(
            "event: webinar_attended, points: 20, cap_total: 20}", "event: webinar_attended, points: 20, cap_total: 40}"
        )
    )
    clock.advance(timedelta(minutes=10))
    log_in(daemon, site)
    page = html.unescape(site.get(f"/leads/{lead.id}").text)
    assert f'What the stored score is made of <span class="muted">(as of {clock.now():%Y-%m-%d %H:%M} UTC)' in page
    note = page[page.index('id="stored-note"') : page.index("</p>", page.index('id="stored-note"'))]
    assert "it comes to fit 80, engagement 40 (grade A)" in note and "the score now is the stored one" in note
    table = page[page.index('id="explain-stored"') : page.index("</table>", page.index('id="explain-stored"'))]
    assert re.search(r'<td>engagement</td><td>webinar_attended</td><td class="n">20\.0</td>', table)
    cli = _explain(daemon, clock, workspace, monkeypatch)
    assert f"stored score, as of {lead.scored_at:%Y-%m-%d %H:%M} UTC: fit 80 (grade A), engagement 20\n" in cli
    assert f"made of (as of {clock.now():%Y-%m-%d %H:%M} UTC):" in cli
    assert re.search(r"engagement webinar_attended +(19\.9\d|20\.00)\n", cli)  # all but no decay
