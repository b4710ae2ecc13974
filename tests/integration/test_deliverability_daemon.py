"""The daemon's emails as a receiver sees them: DKIM-signed (verified with dkimpy against the
published key), with a per-send return path, a List-Id and no open pixel in short HTML; with
render processes as well as in the sender."""

from __future__ import annotations

import asyncio
import email
from collections.abc import Callable
from email import policy
from pathlib import Path

import dkim
import pytest

from nurture.clock import FakeClock
from nurture.daemon import Daemon
from nurture.leads import import_leads
from nurture.mail.dkim import DkimKey, write_key
from nurture.mail.verp import ReturnPath
from tests.integration.conftest import tick, write_scenario
from tests.smtp_server import SmtpServer

SCENARIO = """
id: welcome_series
name: Welcome series
entry:
  when: 'lead.source == "web"'
send_window:
  days: [mon, tue, wed, thu, fri, sat, sun]
  start: "00:00"
  end: "23:59"
from: "Acme Analytics <hello@acme-analytics.example>"
lead_fields: [whitepaper_title]
steps:
  - id: hello
    type: send_email
    template: welcome
    subject: "Hello {{ lead.first_name }}"
"""


@pytest.mark.parametrize("processes", [0, 1])
@pytest.mark.parametrize("algorithm", ["rsa", "ed25519"])
def test_sent_email_is_signed_and_carries_its_own_return_path(
    make_daemon: Callable[..., Daemon],
    workspace: Path,
    smtp: SmtpServer,
    clock: FakeClock,
    tmp_path: Path,
    algorithm: str,
    processes: int,
) -> None:
    key_file = tmp_path / "dkim.pem"
    key = write_key(key_file, algorithm)
    write_scenario(workspace, SCENARIO)
    daemon = make_daemon(
        f"sqlite:///{tmp_path / 'n.db'}",
        render_processes=processes,
        dkim_domain="acme-analytics.example",
        dkim_selector="s2026",
        dkim_key_file=key_file,
        bounce_domain="bounce.acme-analytics.example",
        list_domain="lists.acme-analytics.example",
    )
    leads = tmp_path / "leads.csv"
    leads.write_text("email,first_name,source\nann@alpha.example,Ann,web\n", encoding="utf-8")
    assert import_leads(daemon.store, leads).problems == []

    async def once() -> None:
        await daemon.tick()
        assert daemon.pool is not None and daemon.outbox is not None
        await daemon.pool.close()
        await daemon.outbox.close()

    asyncio.run(once())
    [raw] = smtp.recorder.raw
    [mail_from] = smtp.recorder.mail_from

    def dns(name: bytes, timeout: int = 5) -> bytes:
        assert name == b"s2026._domainkey.acme-analytics.example."
        return DkimKey.load(key_file).public_record().encode()

    assert dkim.verify(raw, dnsfunc=dns), "the signature verifies against the published key"
    assert key.public_record() == DkimKey.load(key_file).public_record()
    lead = daemon.store.leads.by_email("ann@alpha.example")
    assert lead is not None
    [send] = daemon.store.sends.of_lead(lead.id)
    assert ReturnPath("bounce.acme-analytics.example", "test-secret").send_id(mail_from) == send.id
    message = email.message_from_bytes(raw, policy=policy.default)
    assert message["List-Id"] == "Welcome series <welcome-series.lists.acme-analytics.example>"
    assert "/o/" not in message.get_body(("html",)).get_content()  # type: ignore[union-attr]


def test_a_render_process_signs_with_ed25519_and_rsa_and_both_signatures_verify(
    make_daemon: Callable[..., Daemon], workspace: Path, smtp: SmtpServer, tmp_path: Path
) -> None:
    keys = {
        selector: write_key(tmp_path / f"{selector}.pem", algorithm)
        for selector, algorithm in (("ed", "ed25519"), ("rs", "rsa"))
    }
    write_scenario(workspace, SCENARIO)
    daemon = make_daemon(
        f"sqlite:///{tmp_path / 'n.db'}",
        render_processes=1,
        dkim_domain="acme-analytics.example",
        dkim_selector="ed,rs",
        dkim_key_file=f"{tmp_path / 'ed.pem'},{tmp_path / 'rs.pem'}",
    )
    leads = tmp_path / "leads.csv"
    leads.write_text("email,first_name,source\nann@alpha.example,Ann,web\n", encoding="utf-8")
    assert import_leads(daemon.store, leads).problems == []

    async def once() -> None:
        await daemon.tick()
        assert daemon.pool is not None and daemon.outbox is not None
        await daemon.pool.close()
        await daemon.outbox.close()

    asyncio.run(once())
    [raw] = smtp.recorder.raw

    def dns(name: bytes, timeout: int = 5) -> bytes:
        selector = name.decode().split(".")[0]
        return keys[selector].public_record().encode()

    checker = dkim.DKIM(raw)
    assert checker.verify(idx=0, dnsfunc=dns) and checker.verify(idx=1, dnsfunc=dns)
    signatures = email.message_from_bytes(raw, policy=policy.compat32).get_all("DKIM-Signature")
    assert ["a=ed25519-sha256" in "".join(v.split()) for v in signatures] == [True, False]


def test_a_scenario_can_turn_open_tracking_off(
    make_daemon: Callable[..., Daemon], workspace: Path, smtp: SmtpServer, tmp_path: Path
) -> None:
    (workspace / "email_templates" / "long.html").write_text(
        "<html><body><p>" + "A long and useful article about shop-floor analytics. " * 80 + "</p>"
        '<p><a href="{{ unsubscribe_url }}">Unsubscribe</a></p></body></html>',
        encoding="utf-8",
    )
    for name, tracked in (("tracked", "true"), ("untracked", "false")):
        write_scenario(
            workspace,
            SCENARIO.replace("welcome_series", name).replace("template: welcome", "template: long")
            + f"track_opens: {tracked}\n",
            f"{name}.yaml",
        )
    daemon = make_daemon(f"sqlite:///{tmp_path / 'n.db'}")
    leads = tmp_path / "leads.csv"
    leads.write_text("email,first_name,source\nann@alpha.example,Ann,web\n", encoding="utf-8")
    import_leads(daemon.store, leads)

    tick(daemon)
    pixels = {
        str(m["List-Id"]).split("<")[1].split(".")[0]: "/o/" in m.get_body(("html",)).get_content()  # type: ignore[union-attr]
        for m in smtp.messages
    }
    assert pixels == {"tracked": True, "untracked": False}
