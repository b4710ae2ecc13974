"""Delivery reports arrive by SMTP at the bounce domain's listener, or are fetched from an
IMAP mailbox: here a real aiosmtpd listener and a real dovecot started by the test."""

from __future__ import annotations

import contextlib
import grp
import imaplib
import os
import pwd
import shutil
import smtplib
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from aiosmtpd.controller import Controller

from nurture.feedback.events import FeedbackEvent, FeedbackKind
from nurture.feedback.intake import BounceHandler, ImapMailbox, IntakeError, fetch_reports
from nurture.feedback.reports import ReportReader
from nurture.mail.verp import ReturnPath
from tests.smtp_server import free_port

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "feedback"
PATHS = ReturnPath("bounce.acme-analytics.example", "fixture-secret")
READER = ReportReader(PATHS)
DOVECOT = shutil.which("dovecot") or ("/usr/sbin/dovecot" if Path("/usr/sbin/dovecot").exists() else None)


class Collected:
    def __init__(self) -> None:
        self.events: list[FeedbackEvent] = []
        self.reports: list[bytes] = []
        self.fail = False

    def __call__(self, events: list[FeedbackEvent], raw: bytes) -> None:
        if self.fail:
            raise RuntimeError("database unavailable")
        self.events += events
        self.reports.append(raw)


# -- SMTP listener -------------------------------------------------------------------------------


@pytest.fixture
def listener() -> Iterator[tuple[int, Collected]]:
    sink = Collected()
    port = free_port()
    controller = Controller(
        BounceHandler(READER, sink, ["bounce.acme-analytics.example"]), hostname="127.0.0.1", port=port
    )
    controller.start()
    try:
        yield port, sink
    finally:
        controller.stop()


def crlf(data: bytes) -> bytes:
    """Fixtures are stored with LF line ends; on the wire every line ends in CRLF."""
    return data.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")


def deliver(port: int, fixture: str, rcpt: str) -> None:
    with smtplib.SMTP("127.0.0.1", port, timeout=30) as client:
        client.sendmail("", [rcpt], crlf((FIXTURES / fixture).read_bytes()))


def test_listener_reads_reports_addressed_to_a_return_path(listener: tuple[int, Collected]) -> None:
    port, sink = listener
    deliver(port, "postfix_user_unknown.eml", PATHS.address(105))
    deliver(port, "yahoo_arf_complaint.eml", "fbl@bounce.acme-analytics.example")
    assert [(e.kind, e.send_id) for e in sink.events] == [
        (FeedbackKind.HARD_BOUNCE, 105),
        (FeedbackKind.COMPLAINT, 108),
    ]
    assert b"Recipient address rejected" in sink.reports[0]  # the original report is kept


def test_listener_names_the_send_from_the_envelope(listener: tuple[int, Collected]) -> None:
    port, sink = listener
    data = (FIXTURES / "yahoo_failure_notice.eml").read_bytes().replace(b"bounces+104-a6d1c52dd2b6", b"postmaster")
    with smtplib.SMTP("127.0.0.1", port, timeout=30) as client:
        client.sendmail("", [PATHS.address(104)], crlf(data))
    [event] = sink.events
    assert event.send_id == 104 and event.recipient == "dan.old@yahoo.com"


def test_listener_refuses_other_domains_and_asks_for_a_retry_when_it_cannot_record(
    listener: tuple[int, Collected],
) -> None:
    port, sink = listener
    with pytest.raises(smtplib.SMTPRecipientsRefused) as refused:
        deliver(port, "postfix_user_unknown.eml", "someone@acme-analytics.example")
    assert refused.value.recipients["someone@acme-analytics.example"][0] == 550
    sink.fail = True
    with pytest.raises(smtplib.SMTPDataError) as later:
        deliver(port, "postfix_user_unknown.eml", PATHS.address(105))
    assert later.value.smtp_code == 451
    sink.fail = False
    deliver(port, "postfix_user_unknown.eml", PATHS.address(105))  # the reporting server's retry
    assert [e.send_id for e in sink.events] == [105]


# -- IMAP mailbox (dovecot) ----------------------------------------------------------------------


def _wait_for_port(port: int, process: subprocess.Popen[bytes], root: Path) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if process.poll() is not None:
            logs = [p.read_text(errors="replace") for p in (root / "stdout.txt", root / "dovecot.log") if p.exists()]
            raise RuntimeError(f"dovecot exited with {process.returncode}: {' '.join(logs)}")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=1):
            return
        time.sleep(0.05)
    raise RuntimeError("dovecot did not listen within 60 s")


@pytest.fixture
def dovecot() -> Iterator[ImapMailbox]:
    """A dovecot of its own: config, mail and sockets in a fresh folder, plain login on a
    free loopback port, run as an unprivileged user (nobody when the tests run as root; the
    folder is outside pytest's, which only root may enter)."""
    if DOVECOT is None:
        pytest.skip("dovecot is not installed (apt-get install dovecot-imapd; .ci/run does)")
    root = Path(tempfile.mkdtemp(prefix="nurture-dovecot-"))
    try:
        yield from _run_dovecot(root)
    finally:
        shutil.rmtree(root, ignore_errors=True)


def _run_dovecot(root: Path) -> Iterator[ImapMailbox]:
    for sub in ("run", "state", "mail", "home"):
        (root / sub).mkdir(parents=True)
    if os.geteuid() == 0:
        user, group = "nobody", grp.getgrgid(pwd.getpwnam("nobody").pw_gid).gr_name
    else:
        user, group = pwd.getpwuid(os.getuid()).pw_name, grp.getgrgid(os.getgid()).gr_name
    port = free_port()
    (root / "passwd").write_text("bounces:{PLAIN}imap-secret::::::\n")
    (root / "dovecot.conf").write_text(
        f"""
base_dir = {root}/run
state_dir = {root}/state
log_path = {root}/dovecot.log
protocols = imap
listen = 127.0.0.1
ssl = no
disable_plaintext_auth = no
auth_mechanisms = plain login
mail_location = maildir:{root}/mail/%u
default_login_user = {user}
default_internal_user = {user}
default_internal_group = {group}
passdb {{
  driver = passwd-file
  args = scheme=PLAIN username_format=%u {root}/passwd
}}
userdb {{
  driver = static
  args = uid={user} gid={group} home={root}/home/%u
}}
service imap-login {{
  chroot =
  inet_listener imap {{
    address = 127.0.0.1
    port = {port}
  }}
  inet_listener imaps {{
    port = 0
  }}
}}
service anvil {{
  chroot =
}}
service stats {{
  unix_listener stats-reader {{
    user = {user}
  }}
  unix_listener stats-writer {{
    user = {user}
  }}
}}
"""
    )
    for path in [root, *root.rglob("*")]:
        shutil.chown(path, user, group)
    kwargs = {"user": user, "group": group, "extra_groups": []} if os.geteuid() == 0 else {}
    with (root / "stdout.txt").open("wb") as output:
        process = subprocess.Popen(
            [DOVECOT, "-F", "-c", str(root / "dovecot.conf")],
            stdout=output,
            stderr=subprocess.STDOUT,
            **kwargs,  # type: ignore[arg-type]
        )
    try:
        _wait_for_port(port, process, root)
        yield ImapMailbox("127.0.0.1", port, "bounces", "imap-secret", tls=False, timeout=30)
    finally:
        process.terminate()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def append(mailbox: ImapMailbox, *fixtures: str) -> None:
    client = imaplib.IMAP4(mailbox.host, mailbox.port, timeout=30)
    client.login(mailbox.username, mailbox.password)
    for name in fixtures:
        client.append("INBOX", None, None, (FIXTURES / name).read_bytes().replace(b"\n", b"\r\n"))
    client.logout()


def unseen(mailbox: ImapMailbox, folder: str = "INBOX") -> int:
    client = imaplib.IMAP4(mailbox.host, mailbox.port, timeout=30)
    client.login(mailbox.username, mailbox.password)
    client.select(f'"{folder}"')
    _, found = client.search(None, "UNSEEN")
    client.logout()
    return len(found[0].split())


def test_fetch_reads_unread_reports_once(dovecot: ImapMailbox) -> None:
    append(dovecot, "gmail_user_unknown.eml", "outlook_jmrp_complaint.eml", "out_of_office.eml")
    sink = Collected()
    stats = fetch_reports(dovecot, READER, sink)
    assert (stats.messages, stats.events, stats.not_reports, stats.failed) == (3, 2, 1, 0)
    assert [(e.kind, e.send_id) for e in sink.events] == [
        (FeedbackKind.HARD_BOUNCE, 101),
        (FeedbackKind.COMPLAINT, 109),
    ]
    assert unseen(dovecot) == 0
    assert fetch_reports(dovecot, READER, sink).messages == 0  # handled messages are not read again


def test_fetch_leaves_a_report_unread_when_it_cannot_be_recorded(dovecot: ImapMailbox) -> None:
    append(dovecot, "postfix_user_unknown.eml", "exim_mailbox_full.eml")
    sink = Collected()
    sink.fail = True
    stats = fetch_reports(dovecot, READER, sink)
    assert (stats.messages, stats.failed) == (1, 1)
    assert unseen(dovecot) == 2
    sink.fail = False
    assert fetch_reports(dovecot, READER, sink).events == 2
    assert {e.send_id for e in sink.events} == {105, 107}


def test_fetch_can_move_handled_messages_to_a_folder(dovecot: ImapMailbox) -> None:
    append(dovecot, "gmail_dmarc_policy.eml")
    moving = ImapMailbox(**{**dovecot.__dict__, "processed_folder": "Processed"})
    assert fetch_reports(moving, READER, Collected()).events == 1
    client = imaplib.IMAP4(dovecot.host, dovecot.port, timeout=30)
    client.login(dovecot.username, dovecot.password)
    assert client.select("INBOX")[1] == [b"0"]
    assert client.select('"Processed"')[1] == [b"1"]
    client.logout()


def test_wrong_password_is_a_clear_error(dovecot: ImapMailbox) -> None:
    wrong = ImapMailbox(dovecot.host, dovecot.port, "bounces", "nope", tls=False)
    with pytest.raises((IntakeError, imaplib.IMAP4.error)):
        fetch_reports(wrong, READER, Collected())
