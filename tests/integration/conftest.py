from __future__ import annotations

import asyncio
import os
import shutil
import textwrap
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.exc import OperationalError

from nurture.clock import FakeClock
from nurture.config import Settings
from nurture.daemon import Daemon
from nurture.store import Store
from nurture.store.db import make_engine
from nurture.store.migrate import upgrade
from tests.smtp_server import SmtpServer

ROOT = Path(__file__).resolve().parents[2]
PG_URL = os.environ.get("NURTURE_TEST_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")
# Named explicitly (as .ci/run does), the server is expected: an unreachable one fails the run.
# Left to the default (a developer's machine), the PostgreSQL tests skip and say why.
PG_EXPECTED = "NURTURE_TEST_PG_URL" in os.environ
START = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)  # Monday


def postgres_reachable() -> str | None:
    """None when the test PostgreSQL answers, else why not."""
    try:
        engine = create_engine(PG_URL)
        with engine.connect() as conn:
            conn.execute(text("select 1"))
        engine.dispose()
    except OperationalError as exc:
        return f"PostgreSQL at {PG_URL} is not reachable: {str(exc).splitlines()[0]}"
    return None


def require_postgres() -> None:
    """Skip the test when no server answers, or fail it when NURTURE_TEST_PG_URL names one."""
    reason = postgres_reachable()
    if reason is None:
        return
    if PG_EXPECTED:
        pytest.fail(f"{reason} (NURTURE_TEST_PG_URL is set, so the PostgreSQL tests must run)", pytrace=False)
    pytest.skip(f"{reason} (set NURTURE_TEST_PG_URL to make this a failure)")


def reset_postgres(url: str) -> None:
    engine = create_engine(url)
    with engine.begin() as conn:
        conn.execute(text("DROP SCHEMA public CASCADE"))
        conn.execute(text("CREATE SCHEMA public"))
    engine.dispose()


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'nurture.db'}"
    require_postgres()
    reset_postgres(PG_URL)
    return PG_URL


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'nurture.db'}"


@pytest.fixture
def pg_url() -> str:
    require_postgres()
    reset_postgres(PG_URL)
    return PG_URL


@pytest.fixture
def smtp(request: pytest.FixtureRequest) -> Iterator[SmtpServer]:
    """A real SMTP server offering PIPELINING, as relays do; in a module that sets
    `SMTP_MODES = True`, each test runs against one that offers it and one that does not."""
    with SmtpServer() as server:
        server.recorder.pipelining = getattr(request, "param", True)
        yield server


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if getattr(metafunc.module, "SMTP_MODES", False) and "smtp" in metafunc.fixturenames:
        metafunc.parametrize("smtp", [True, False], indirect=True, ids=["pipelined", "one-at-a-time"])


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(START)


@pytest.fixture
def workspace(tmp_path: Path) -> Path:
    """A project folder with the sample templates and an empty scenarios folder."""
    (tmp_path / "scenarios").mkdir()
    shutil.copytree(ROOT / "email_templates", tmp_path / "email_templates")
    return tmp_path


def copy_samples(workspace: Path) -> None:
    for path in (ROOT / "scenarios").glob("*.yaml"):
        shutil.copy(path, workspace / "scenarios" / path.name)


def write_scenario(workspace: Path, text: str, name: str = "test.yaml") -> Path:
    path = workspace / "scenarios" / name
    path.write_text(textwrap.dedent(text).lstrip(), encoding="utf-8")
    return path


async def ticks(daemon: Daemon, clock: FakeClock, *advances: timedelta) -> None:
    """A tick, then one more after each clock advance; then close the SMTP connections."""
    await daemon.tick()
    for delta in advances:
        clock.advance(delta)
        await daemon.tick()
    assert daemon.pool is not None
    await daemon.pool.close()


def tick(daemon: Daemon) -> None:
    """One tick of the daemon in its own event loop, then its SMTP connections closed, so
    every email the tick sent has arrived at the test server."""

    async def once() -> None:
        await daemon.tick()
        assert daemon.pool is not None
        await daemon.pool.close()

    asyncio.run(once())


def wait_for(what: str, condition: Callable[[], object], *, timeout: float = 120, log: Path | None = None) -> None:
    """Poll `condition()` until it holds; fail after `timeout` seconds naming `what` (and the
    end of `log`, a daemon's output, when given)."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            tail = f":\n{log.read_text(errors='replace')[-3000:]}" if log is not None else ""
            raise AssertionError(f"waited {timeout}s for {what}{tail}")
        time.sleep(0.1)


@pytest.fixture
def make_daemon(workspace: Path, smtp: SmtpServer, clock: FakeClock) -> Callable[..., Daemon]:
    def build(url: str, **overrides: object) -> Daemon:
        engine = make_engine(url)
        upgrade(engine)
        values: dict[str, object] = dict(
            database_url=url,
            scenarios_dir=workspace / "scenarios",
            templates_dir=workspace / "email_templates",
            smtp_port=smtp.port,
            smtp_pool_size=2,
            retry_base_seconds=60,
            secret_key="test-secret",
            base_url="https://t.example",
            mail_domain="mail.example",
            worker_id="w1",
            sender_name="Acme Analytics",
            sender_postal_address="100 Main Street, Boston, MA 02110",
            # These tests are about sending, not consent: their leads are mailed until they
            # object. The consent tests ask for the default regime (auto) themselves.
            consent_regime="opt_out",
            # Render in the sender: a test daemon is driven by tick() and never closed, so
            # render processes would outlive it. The tests that want them ask for them.
            render_processes=0,
        )
        values.update(overrides)
        daemon = Daemon(Settings(**values), clock, Store(engine, clock))  # type: ignore[arg-type]
        daemon.load()
        return daemon

    return build


class FakeTimer:
    """The pool's monotonic timer, moved by the test."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def pool_timer(daemon: Daemon) -> FakeTimer:
    daemon._outbox()
    assert daemon.pool is not None
    timer = FakeTimer()
    daemon.pool.pause.timer = timer
    return timer
