"""STARTTLS and authentication against a server that requires both."""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import trustme
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword

from nurture.daemon import Daemon
from tests.integration.conftest import ticks, write_scenario
from tests.integration.test_daemon import TWO_STEP, import_csv
from tests.smtp_server import Recorder, free_port

USERS = {"nurture": "s3cret"}


def authenticate(server: Any, session: Any, envelope: Any, mechanism: str, auth_data: Any) -> AuthResult:
    ok = isinstance(auth_data, LoginPassword) and USERS.get(auth_data.login.decode()) == auth_data.password.decode()
    return AuthResult(success=ok)


@pytest.fixture
def secure_smtp(tmp_path: Path) -> Iterator[tuple[Recorder, int, Path]]:
    authority = trustme.CA()
    certificate = authority.issue_cert("localhost", "127.0.0.1")
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    certificate.configure_cert(context)
    ca_file = tmp_path / "ca.pem"
    authority.cert_pem.write_to_path(str(ca_file))
    recorder = Recorder()
    port = free_port()
    controller = Controller(
        recorder,
        hostname="127.0.0.1",
        port=port,
        tls_context=context,
        require_starttls=True,
        authenticator=authenticate,
        auth_require_tls=True,
        auth_required=True,
    )
    controller.start()
    yield recorder, port, ca_file
    controller.stop()


def send_one(
    make_daemon: Callable[..., Daemon],
    workspace: Path,
    tmp_path: Path,
    url: str,
    port: int,
    ca_file: Path,
    password: str,
) -> Daemon:
    """One lead, one due email, one tick through a server that requires STARTTLS and login."""
    write_scenario(workspace, TWO_STEP)
    daemon = make_daemon(
        url,
        smtp_port=port,
        smtp_starttls=True,
        smtp_ca_file=str(ca_file),
        smtp_username="nurture",
        smtp_password=password,
        smtp_timeout=2,
    )
    import_csv(daemon, tmp_path, "email,first_name,company,timezone,source\nann@alpha.example,Ann,A,UTC,web\n")
    asyncio.run(ticks(daemon, daemon.clock))  # type: ignore[arg-type]
    return daemon


def test_sends_over_starttls_with_login(
    sqlite_url: str,
    make_daemon: Callable[..., Daemon],
    workspace: Path,
    tmp_path: Path,
    secure_smtp: tuple[Recorder, int, Path],
) -> None:
    recorder, port, ca_file = secure_smtp
    send_one(make_daemon, workspace, tmp_path, sqlite_url, port, ca_file, "s3cret")
    assert [m["Subject"] for m in recorder.messages] == ["Hello Ann"]


def test_wrong_password_is_retried_not_lost(
    sqlite_url: str,
    make_daemon: Callable[..., Daemon],
    workspace: Path,
    tmp_path: Path,
    secure_smtp: tuple[Recorder, int, Path],
) -> None:
    recorder, port, ca_file = secure_smtp
    daemon = send_one(make_daemon, workspace, tmp_path, sqlite_url, port, ca_file, "wrong")
    assert recorder.messages == []
    status = daemon.store.reports.status()
    assert status["sends"] == {"pending": 1} and status["retrying"] == 1
