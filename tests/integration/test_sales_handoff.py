"""The hand-off to sales, as the README describes it: the `notify_sales` step's signed webhook once per
step visit, owners by territory or round-robin, account roll-up in the live job, the daily rescore."""

from __future__ import annotations

import asyncio
import json
from collections import Counter
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select, update

from nurture.clock import FakeClock
from nurture.daemon import Daemon
from nurture.jobs.notify import verify_signature
from nurture.store.tables import ENROLMENTS as E
from tests.integration.conftest import ROOT, tick, write_scenario
from tests.integration.test_daemon import import_csv
from tests.integration.test_qualification import Hooks, lead_id, record, webhook  # noqa: F401 (fixture)
from tests.smtp_server import SmtpServer

HANDOVER_LOOP = """
id: handover_loop
name: Hand-over loop
entry:
  when: 'lead.source == "whitepaper"'
exit_when: [unsubscribed, bounced]
steps:
  - id: hand_over
    type: notify_sales
    message: "Read the whitepaper; asks for a call"
  - id: pause
    type: wait
    duration: 7d
    next: hand_over
"""

ADA = (
    "email,first_name,last_name,company,company_size,industry,job_title,country,timezone,source\n"
    "ada@nordwerk.example,Ada,Lang,Nordwerk,1500,Manufacturing,Head of Operations,DE,Europe/Berlin,whitepaper\n"
)


def with_webhook(workspace: Path, url: str, replace: dict[str, str] | None = None) -> None:
    text = (ROOT / "scenarios" / "scoring.yaml").read_text().replace("webhook_url: null", f"webhook_url: {url}")
    for old, new in (replace or {}).items():
        assert old in text, old
        text = text.replace(old, new)
    (workspace / "scenarios" / "scoring.yaml").write_text(text)


def handed_over() -> list[dict[str, Any]]:
    found = []
    for headers, raw in Hooks.received:
        assert verify_signature("test-secret", headers["X-Nurture-Signature"], raw)
        payload = json.loads(raw)
        if payload["event"] == "lead.handed_over":
            found.append({"delivery": headers["X-Nurture-Delivery"], **payload})
    return found


def test_notify_sales_sends_one_signed_webhook_per_step_visit_and_a_replayed_batch_sends_none(
    db_url: str,
    make_daemon: Callable[..., Daemon],
    workspace: Path,
    smtp: SmtpServer,
    clock: FakeClock,
    tmp_path: Path,
    webhook: str,  # noqa: F811
) -> None:
    write_scenario(workspace, HANDOVER_LOOP)
    with_webhook(workspace, webhook)
    daemon = make_daemon(db_url)
    import_csv(daemon, tmp_path, ADA)
    ada = lead_id(daemon, "ada@nordwerk.example")

    async def scenario() -> None:
        daemon.enroller.run_once()
        with daemon.store.engine.connect() as conn:
            before = conn.execute(
                select(E.c.state, E.c.seq, E.c.entered_at, E.c.due_at).where(E.c.lead_id == ada)
            ).one()
        await daemon.tick()  # the first visit of hand_over
        assert len(handed_over()) == 1
        # The same batch again, as a worker whose commit was lost would replay it: the enrolment
        # back where it stood before the visit, stepped once more.
        with daemon.store.transaction() as conn:
            conn.execute(update(E).where(E.c.lead_id == ada).values(**before._mapping))
        await daemon.tick()
        await daemon.tick()
        assert len(handed_over()) == 1
        clock.advance(timedelta(days=3))
        await daemon.tick()
        assert len(handed_over()) == 1
        clock.advance(timedelta(days=4))  # the wait is over: the loop visits hand_over again
        await daemon.tick()
        await daemon.tick()
        assert daemon.pool is not None
        await daemon.pool.close()

    asyncio.run(scenario())
    hooks = handed_over()
    assert len(hooks) == 2
    assert len({h["delivery"] for h in hooks}) == 2  # each visit has its own delivery key
    assert all(h["lead"]["email"] == "ada@nordwerk.example" for h in hooks)
    to_owner = [m for m in smtp.messages if m["To"].addresses[0].addr_spec == "max.keller@acme-analytics.example"]
    assert len(to_owner) == 2 and all("Nordwerk" in str(m["Subject"]) for m in to_owner)


def rescore(daemon: Daemon) -> None:
    tick(daemon)


def owner_of(daemon: Daemon, email: str) -> str | None:
    row = daemon.store.leads.by_email(email)
    assert row is not None
    return row.owner  # type: ignore[no-any-return]


def test_hot_leads_no_territory_covers_are_dealt_round_robin_and_a_territory_lead_goes_to_its_owner(
    db_url: str,
    make_daemon: Callable[..., Daemon],
    workspace: Path,
    smtp: SmtpServer,
    clock: FakeClock,
    tmp_path: Path,
) -> None:
    with_webhook(workspace, "null")
    daemon = make_daemon(db_url)
    # Grade A everywhere (1500 staff, Manufacturing, a head of); only Ada is in a territory (DE).
    rows = [
        ("us1@one.example", "One", "US"),
        ("us2@two.example", "Two", "US"),
        ("ada@nordwerk.example", "Nordwerk", "DE"),
        ("br3@three.example", "Three", "BR"),
        ("us4@four.example", "Four", "US"),
    ]
    import_csv(
        daemon,
        tmp_path,
        "email,first_name,company,company_size,industry,job_title,country,timezone\n"
        + "".join(f"{e},X,{c},1500,Manufacturing,Head of Operations,{k},UTC\n" for e, c, k in rows),
    )
    for email, _, _ in rows:  # an inquiry (40 points) makes a grade-A lead hot
        record(daemon, email, "inquiry", clock.now())
    clock.advance(timedelta(minutes=1))
    rescore(daemon)
    owners = {email: owner_of(daemon, email) for email, _, _ in rows}
    dana, luis = "dana.brooks@acme-analytics.example", "luis.ortega@acme-analytics.example"
    # Ada's country is Max's territory; the four others, in no territory, are dealt in turn to
    # the owners without one (Dana and Luis): two each, whatever order they were promoted in.
    assert owners.pop("ada@nordwerk.example") == "max.keller@acme-analytics.example"
    assert sorted(owners.values()) == [dana, dana, luis, luis]
    alerts = Counter(m["To"].addresses[0].addr_spec for m in smtp.messages)
    assert alerts == {dana: 2, luis: 2, "max.keller@acme-analytics.example": 1}


@pytest.mark.parametrize("by", ["company", "email_domain"])
def test_account_roll_up_counts_colleagues_by_company_or_by_email_domain_in_the_live_job(
    by: str,
    db_url: str,
    make_daemon: Callable[..., Daemon],
    workspace: Path,
    clock: FakeClock,
    tmp_path: Path,
) -> None:
    with_webhook(workspace, "null", {"by: company": f"by: {by}"})
    daemon = make_daemon(db_url)
    # Ada and Ben share a company (spelt differently) but not a domain; Ada and Cy share a domain
    # but not a company. Ben and Cy each send an inquiry (40 points) in turn.
    import_csv(
        daemon,
        tmp_path,
        "email,first_name,company,company_size,industry,country,timezone\n"
        "ada@nordwerk.example,Ada,Nordwerk,1500,Manufacturing,DE,UTC\n"
        "ben@nordwerk-gmbh.example,Ben,NORDWERK ,1500,Manufacturing,DE,UTC\n"
        "cy@nordwerk.example,Cy,Nordwerk Labs,1500,Manufacturing,DE,UTC\n",
    )
    colleague = "ben@nordwerk-gmbh.example" if by == "company" else "cy@nordwerk.example"
    outsider = "cy@nordwerk.example" if by == "company" else "ben@nordwerk-gmbh.example"

    def engagement() -> dict[str, int]:
        found = {e: daemon.store.leads.by_email(e) for e in ("ada@nordwerk.example", colleague, outsider)}
        return {e: int(row.score_engagement) for e, row in found.items() if row is not None}

    record(daemon, colleague, "inquiry", clock.now())
    clock.advance(timedelta(minutes=1))
    rescore(daemon)  # the live qualify job, for the leads whose events arrived
    # Ada gets half (account.weight 0.5) of her colleague's 40 points, capped at account.cap (10);
    # the outsider gets nothing.
    assert engagement() == {"ada@nordwerk.example": 10, colleague: 40, outsider: 0}
    record(daemon, outsider, "inquiry", clock.now())
    clock.advance(timedelta(minutes=1))
    rescore(daemon)
    assert engagement() == {"ada@nordwerk.example": 10, colleague: 40, outsider: 40}


def test_the_daily_full_rescore_lowers_a_lead_as_engagement_decays(
    sqlite_url: str,
    make_daemon: Callable[..., Daemon],
    workspace: Path,
    clock: FakeClock,
    tmp_path: Path,
) -> None:
    with_webhook(workspace, "null")
    daemon = make_daemon(sqlite_url)
    import_csv(daemon, tmp_path, ADA)
    record(daemon, "ada@nordwerk.example", "form_fill", clock.now(), form="contact")  # 15 points: warm
    clock.advance(timedelta(minutes=1))

    async def scenario() -> None:
        await daemon.tick()
        assert daemon.store.leads.by_email("ada@nordwerk.example").score_engagement == 15  # type: ignore[union-attr]
        clock.advance(timedelta(days=60) - timedelta(minutes=1))  # two half-lives since the event; none new
        await daemon.housekeeping()  # the once-a-day job alone: everyone is rescored
        assert daemon.pool is not None
        await daemon.pool.close()

    asyncio.run(scenario())
    ada = daemon.store.leads.by_email("ada@nordwerk.example")
    assert ada is not None and ada.score_engagement == 4  # 15 halved twice (3.75), rounded
