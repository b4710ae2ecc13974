"""The deliverability commands, run as an operator would: DKIM keys and DNS records, the
suppression list in and out, resuming a paused scenario, and the bounce intake (a real
dovecot for `bounces fetch`, real SMTP for `bounces serve`)."""

from __future__ import annotations

import os
import shutil
import signal
import smtplib
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import dkim
import pytest

from nurture.clock import SystemClock
from nurture.feedback.intake import ImapMailbox
from nurture.mail.dkim import DkimKey
from nurture.store import Store
from nurture.store.db import make_engine
from tests.e2e.test_cli_scenarios import SENDER
from tests.integration.test_bounce_intake import FIXTURES, append, crlf, dovecot  # noqa: F401
from tests.smtp_server import free_port

ROOT = Path(__file__).resolve().parents[2]


def nurture(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "nurture", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, **(env or {})},
    )


@pytest.fixture
def db(tmp_path: Path) -> str:
    url = f"sqlite:///{tmp_path / 'n.db'}"
    assert nurture("db", "upgrade", "--db", url).returncode == 0
    return url


def test_dkim_keygen_writes_a_key_and_prints_the_records_to_publish(tmp_path: Path) -> None:
    key_file = tmp_path / "dkim" / "s2026.pem"
    args = ("dkim", "keygen", "--domain", "acme.example", "--selector", "s2026", "--key-file", str(key_file))
    result = nurture(*args, "--bounce-domain", "bounce.acme.example", "--algorithm", "ed25519")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert (
        lines[1]
        == f"; settings: NURTURE_DKIM_DOMAIN=acme.example NURTURE_DKIM_SELECTOR=s2026 NURTURE_DKIM_KEY_FILE={key_file}"
    )
    record = next(line for line in lines if line.startswith("s2026._domainkey.acme.example. IN TXT"))
    published = "".join(part for i, part in enumerate(record.split('"')) if i % 2)
    assert published == DkimKey.load(key_file).public_record()
    assert dkim.parse_tag_value(published.encode())[b"k"] == b"ed25519"  # what a verifier reads from DNS
    assert lines[-1].startswith("; not every receiver verifies Ed25519")  # and how to add RSA beside it
    assert any(line.startswith('bounce.acme.example. IN TXT "v=spf1') for line in lines)
    assert any(line.startswith("_dmarc.acme.example. IN TXT") for line in lines)
    assert key_file.stat().st_mode & 0o777 == 0o600
    again = nurture(*args)
    assert again.returncode == 0 and published in again.stdout.replace('" "', "")  # the existing key is kept


def test_dkim_keygen_makes_an_rsa_key_by_default_which_every_receiver_verifies(tmp_path: Path) -> None:
    key_file = tmp_path / "s2026r.pem"
    result = nurture("dkim", "keygen", "--domain", "acme.example", "--selector", "s2026r", "--key-file", str(key_file))
    assert result.returncode == 0, result.stderr
    assert DkimKey.load(key_file).algorithm == "rsa-sha256"
    record = next(line for line in result.stdout.splitlines() if line.startswith("s2026r._domainkey.acme.example."))
    published = "".join(part for i, part in enumerate(record.split('"')) if i % 2)
    assert dkim.parse_tag_value(published.encode())[b"k"] == b"rsa"
    assert "not every receiver verifies Ed25519" not in result.stdout


def test_suppressions_import_and_export(tmp_path: Path, db: str) -> None:
    bad = tmp_path / "bad.csv"
    bad.write_text("email,reason\nok@x.example,bounce\nnope,bounce\n")
    result = nurture("suppressions", "import", str(bad), "--db", db)
    assert result.returncode == 1 and f"{bad}:3: not an email address: 'nope'" in result.stderr
    good = tmp_path / "old-tool.csv"
    good.write_text("Email,Reason,Created_At\nAnn@X.example,spamreport,2025-10-01T08:00:00Z\nbo@y.example,,\n")
    assert nurture("suppressions", "import", str(good), "--db", db).stdout.strip() == "2 added, 0 already suppressed"
    assert nurture("suppressions", "import", str(good), "--db", db).stdout.strip() == "0 added, 2 already suppressed"
    exported = nurture("suppressions", "export", "--db", db)
    assert exported.stdout.splitlines() == [
        "email,reason,created_at,source",
        "ann@x.example,complaint,2025-10-01T08:00:00+00:00,import",
        f"bo@y.example,imported,{exported.stdout.splitlines()[2].split(',')[2]},import",
    ]


def test_scenario_resume(db: str) -> None:
    result = nurture("scenario", "resume", "news", "--db", db)
    assert result.returncode == 1 and "scenario news is not paused" in result.stderr
    store = Store(make_engine(db), SystemClock())
    with store.transaction() as conn:
        store.feedback.pause(
            conn, "news", "complaint rate 1.00% over the last 200 sends exceeds 0.30%", store.clock.now()
        )
    assert "news  paused" in nurture("scenario", "paused", "--db", db).stdout
    assert nurture("scenario", "resume", "news", "--by", "max", "--db", db).stdout.strip() == "resumed news"
    assert nurture("scenario", "paused", "--db", db).stdout.strip() == "no scenario is paused"


def test_bounces_fetch_reads_the_mailbox(dovecot: ImapMailbox, db: str) -> None:  # noqa: F811
    append(dovecot, "gmail_user_unknown.eml", "yahoo_arf_complaint.eml", "out_of_office.eml")
    env = {
        "NURTURE_BOUNCE_DOMAIN": "bounce.acme-analytics.example",
        "NURTURE_BOUNCE_IMAP_HOST": dovecot.host,
        "NURTURE_BOUNCE_IMAP_PORT": str(dovecot.port),
        "NURTURE_BOUNCE_IMAP_USERNAME": dovecot.username,
        "NURTURE_BOUNCE_IMAP_PASSWORD": dovecot.password,
        "NURTURE_BOUNCE_IMAP_TLS": "false",
    }
    result = nurture("bounces", "fetch", "--db", db, env=env)
    assert result.returncode == 0, result.stderr
    # The reports name sends of another installation (another secret): kept, acted on by nobody.
    assert result.stdout.strip() == "3 message(s): 2 event(s), 1 not reports, 0 suppressed, 2 unverified, 0 failed"
    assert nurture("bounces", "fetch", "--db", db, env=env).stdout.startswith("0 message(s)")


@pytest.fixture
def serve(db: str) -> Iterator[tuple[int, subprocess.Popen[str]]]:
    port = free_port()
    env = {**os.environ, "NURTURE_BOUNCE_DOMAIN": "bounce.acme-analytics.example"}
    process = subprocess.Popen(
        [sys.executable, "-m", "nurture", "bounces", "serve", "--port", str(port), "--db", db],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 60  # wait for the listener to accept connections
    while time.monotonic() < deadline and process.poll() is None:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            break
        except OSError:
            time.sleep(0.05)
    try:
        yield port, process
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


def test_bounces_serve_takes_reports_by_smtp_and_stops_on_sigterm(serve: tuple[int, subprocess.Popen[str]]) -> None:
    port, process = serve
    with smtplib.SMTP("127.0.0.1", port, timeout=30) as client:
        client.sendmail(
            "", ["bounces@bounce.acme-analytics.example"], crlf((FIXTURES / "postfix_user_unknown.eml").read_bytes())
        )
        with pytest.raises(smtplib.SMTPRecipientsRefused):
            client.sendmail("", ["someone@elsewhere.example"], b"Subject: x\r\n\r\nx\r\n")
    process.send_signal(signal.SIGTERM)
    out, err = process.communicate(timeout=60)
    assert process.returncode == 0, err
    assert "listening for reports to *@bounce.acme-analytics.example" in out
    assert "report: 1 event(s), 0 suppressed, 1 unverified" in out
    assert out.strip().endswith("stopped")


def test_validate_warns_about_deliverability_without_failing(tmp_path: Path) -> None:
    (tmp_path / "scenarios").mkdir()
    for name in ("whitepaper_nurture.yaml", "scoring.yaml"):  # the hand-off step needs the routing
        shutil.copy(ROOT / "scenarios" / name, tmp_path / "scenarios")
    shutil.copytree(ROOT / "email_templates", tmp_path / "email_templates")
    case_study = tmp_path / "email_templates" / "case_study.html"
    case_study.write_text(
        case_study.read_text().replace(">Read the Nordwerk story<", ">https://acme-analytics.example/n<")
    )
    (tmp_path / "email_templates" / "welcome.txt").unlink()
    assert nurture("validate", "scenarios/", env=SENDER).stdout.strip() == "ok: 4 file(s) valid"  # no warning
    result = nurture(
        "validate", str(tmp_path / "scenarios"), env={"NURTURE_BASE_URL": "https://go.acme.example", **SENDER}
    )
    assert result.returncode == 0
    assert result.stdout.splitlines() == [
        f"warning: {case_study}:5: link text shows 'https://acme-analytics.example/n' but the link goes to "
        "'go.acme.example': write what the link is about instead of an address",
        f"warning: {tmp_path / 'email_templates' / 'welcome.html'}:1: no text part (NAME.txt): one is derived "
        "from the HTML, but a text version written for reading looks less like bulk mail",
        "ok: 2 file(s) valid",
    ]
