"""One bad row never blocks the others: a lead whose data breaks its step or its message
fails alone, with its error recorded, while the rest of its batch goes on."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path

from sqlalchemy import select, update

from nurture.daemon import Daemon
from nurture.store.tables import AUDIT_LOG, ENROLMENTS, LEADS
from tests.integration.conftest import write_scenario
from tests.integration.test_daemon import TWO_STEP, import_web_leads, sends_by_status
from tests.integration.test_smtp_faults import send_row
from tests.smtp_server import SmtpServer

LEADS_ = ["ann@alpha.example", "bob@beta.example", "cho@gamma.example", "dan@delta.example"]


def corrupt(daemon: Daemon, email: str) -> None:
    """Data no import would store (custom fields that are a list, not a mapping), as a bug
    or a hand-edited database might leave it."""
    with daemon.store.transaction() as conn:
        conn.execute(update(LEADS).where(LEADS.c.email == email).values(custom=[1, 2]))


def test_a_lead_whose_message_cannot_be_built_fails_alone_and_the_batch_is_sent(
    db_url: str, make_daemon: Callable[..., Daemon], workspace: Path, smtp: SmtpServer, tmp_path: Path
) -> None:
    write_scenario(workspace, TWO_STEP)
    daemon = make_daemon(db_url)
    import_web_leads(daemon, tmp_path, LEADS_)

    async def scenario() -> None:
        await daemon.enrol()
        await daemon.advance()  # the emails are queued
        corrupt(daemon, "bob@beta.example")
        await daemon.send()
        assert daemon.pool is not None
        await daemon.pool.close()

    asyncio.run(scenario())
    assert sorted(smtp.recorder.by_recipient()) == sorted(set(LEADS_) - {"bob@beta.example"})
    bob = send_row(daemon, "bob@beta.example")
    assert bob["status"] == "failed" and bob["attempts"] == 1
    assert str(bob["last_error"]).startswith("the message could not be built: TypeError")
    assert sends_by_status(daemon) == {"sent": 3, "failed": 1}


def test_a_lead_whose_step_raises_leaves_with_its_error_and_the_batch_goes_on(
    db_url: str, make_daemon: Callable[..., Daemon], workspace: Path, smtp: SmtpServer, tmp_path: Path
) -> None:
    write_scenario(workspace, TWO_STEP)
    daemon = make_daemon(db_url)
    import_web_leads(daemon, tmp_path, LEADS_)

    async def scenario() -> None:
        await daemon.enrol()
        corrupt(daemon, "cho@gamma.example")
        await daemon.advance()
        await daemon.send()
        assert daemon.pool is not None
        await daemon.pool.close()

    asyncio.run(scenario())
    assert sorted(smtp.recorder.by_recipient()) == sorted(set(LEADS_) - {"cho@gamma.example"})
    with daemon.store.reading() as conn:
        cho = conn.execute(
            select(ENROLMENTS.c.status, ENROLMENTS.c.exit_reason)
            .join(LEADS, LEADS.c.id == ENROLMENTS.c.lead_id)
            .where(LEADS.c.email == "cho@gamma.example")
        ).one()
        audit = conn.execute(select(AUDIT_LOG.c.detail).where(AUDIT_LOG.c.kind == "step_failed")).all()
    assert cho.status == "exited" and cho.exit_reason.startswith("step failed at 'hello': TypeError")
    assert len(audit) == 1 and "TypeError" in audit[0].detail["error"]
