"""What protects the HTTP side: body limits before parsing and authentication, small error
replies, login throttling, sessions that end, protected metrics. Over real HTTP."""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from nurture.daemon import Daemon
from nurture.store import Store
from nurture.store.db import make_engine
from nurture.store.tables import EVENTS
from nurture.throttle import ThrottlePolicy
from nurture.web.app import create_app
from tests.http_server import serving
from tests.integration.conftest import wait_for
from tests.integration.test_web import count, daemon  # noqa: F401  (the fixture)


@pytest.fixture
def site(daemon: Daemon) -> Iterator[httpx.Client]:  # noqa: F811
    app = create_app(daemon.settings.model_copy(update={"max_body_bytes": 100_000}), daemon.clock, daemon.store)
    app.state.web.throttle = ThrottlePolicy(base=timedelta(seconds=1))  # blocks a test can wait out
    with serving(app) as base, httpx.Client(base_url=base) as client:
        yield client


def test_an_oversized_body_is_refused_413_before_authentication_and_parsing(
    daemon: Daemon,  # noqa: F811
    site: httpx.Client,
) -> None:
    huge = b'{"email": "' + b"x" * 2_000_000 + b'"}'
    declared = site.post("/api/v1/events", content=huge, headers={"Content-Type": "application/json"})
    assert declared.status_code == 413  # by its Content-Length, before the API key is looked at
    assert "over the limit of 100000 bytes" in declared.text
    # Without a Content-Length (chunked), counted as it arrives: an authenticated caller is
    # stopped at the limit; an unauthenticated one was answered 401 before any of it was read.
    chunks = [huge[i : i + 65536] for i in range(0, len(huge), 65536)]
    assert site.post("/api/v1/events", content=iter(chunks)).status_code == 401
    key = daemon.store.access.create_key("crm")
    chunked = site.post("/api/v1/events", content=iter(chunks), headers={"Authorization": f"Bearer {key}"})
    assert chunked.status_code == 413


def test_an_unauthenticated_call_is_401_without_its_body_being_parsed(site: httpx.Client) -> None:
    answer = site.post(
        "/api/v1/events", content=b"{not json at all" * 1000, headers={"Content-Type": "application/json"}
    )
    assert answer.status_code == 401


def test_a_422_reply_names_the_problem_without_echoing_the_input(
    daemon: Daemon,  # noqa: F811
    site: httpx.Client,
) -> None:
    site.headers["Authorization"] = f"Bearer {daemon.store.access.create_key('crm')}"
    secret = "s3cr3t-" + "y" * 2_000
    bad = [{"email": "ada@nordwerk.example", "type": "nonsense", "props": {"note": secret}}] * 30
    answer = site.post("/api/v1/events/batch", json={"events": bad})
    assert answer.status_code == 422
    assert len(answer.content) < 4_000 and "s3cr3t" not in answer.text
    detail = answer.json()["detail"]
    assert len(detail) == 11 and detail[-1]["msg"] == "and 50 more problems"  # two per event
    assert detail[0]["loc"][:3] == ["body", "events", 0]
    assert count(daemon, EVENTS) == 0


def csrf(site: httpx.Client) -> str:
    token = re.search(r'name="csrf" value="([^"]+)"', site.get("/login").text)
    assert token is not None
    return token.group(1)


def login(site: httpx.Client, password: str, user: str = "max") -> httpx.Response:
    return site.post("/login", data={"username": user, "password": password, "csrf": csrf(site)})


def test_wrong_passwords_are_throttled_per_user_and_the_right_one_waits_too(
    daemon: Daemon,  # noqa: F811
    site: httpx.Client,
) -> None:
    daemon.store.access.set_user("max", "correct horse battery", "Max Keller")
    for _ in range(5):
        assert login(site, "wrong").status_code == 401
    blocked = login(site, "wrong")
    assert blocked.status_code == 401  # the sixth wrong one counts and starts the block
    refused = login(site, "correct horse battery")
    assert refused.status_code == 429 and int(refused.headers["Retry-After"]) >= 1
    assert "Too many wrong passwords" in refused.text
    # Refused attempts do not count: once the block (1 s here) runs out, the right password works.
    wait_for("the block to run out", lambda: login(site, "correct horse battery").status_code == 303)


def test_the_login_throttle_holds_across_processes_and_restarts_per_user_and_per_address(
    daemon: Daemon,  # noqa: F811
) -> None:
    """Two app instances, each with its own connection pool (as two `serve`/`run` processes
    would have), on one database; then a third, started afterwards (a restart)."""
    daemon.store.access.set_user("max", "correct horse battery", "Max Keller")
    daemon.store.access.set_user("ann", "ann's own passphrase", "Ann")
    url = daemon.settings.database_url
    stores = [Store(make_engine(url), daemon.clock) for _ in range(3)]
    policy = ThrottlePolicy(free_allowed=3, base=timedelta(seconds=30))

    def app(store: Store) -> Any:
        built = create_app(daemon.settings, daemon.clock, store)
        built.state.web.throttle = policy
        return built

    proxy = "203.0.113.5"  # behind a trusted proxy, the address is the forwarded one
    with (
        serving(app(stores[0])) as first_base,
        serving(app(stores[1])) as second_base,
        httpx.Client(base_url=first_base, headers={"X-Forwarded-For": proxy}) as first,
        httpx.Client(base_url=second_base, headers={"X-Forwarded-For": proxy}) as second,
    ):
        # Wrong passwords for max, spread over both processes and two addresses.
        assert login(first, "wrong").status_code == 401
        assert login(second, "wrong").status_code == 401
        second.headers["X-Forwarded-For"] = "198.51.100.9"
        assert login(second, "wrong").status_code == 401
        assert login(first, "wrong").status_code == 401  # the fourth, for the user: blocked now
        # The user is blocked in the other process too, from any address, with the right password.
        refused = login(second, "correct horse battery")
        assert refused.status_code == 429 and int(refused.headers["Retry-After"]) > 1
        second.headers["X-Forwarded-For"] = "192.0.2.44"
        assert login(second, "correct horse battery").status_code == 429
        # The address that made three of the failures guesses another user: blocked too.
        assert login(first, "wrong", user="ann").status_code == 401  # the address's fourth: blocked now
        assert login(first, "ann's own passphrase", user="ann").status_code == 429
        assert login(second, "ann's own passphrase", user="ann").status_code == 303  # ann, elsewhere
        second.cookies.clear()
        second.headers["X-Forwarded-For"] = proxy
        assert login(second, "ann's own passphrase", user="ann").status_code == 429

    # A restarted process sees the same counts.
    with serving(app(stores[2])) as third_base, httpx.Client(base_url=third_base) as third:
        third.headers["X-Forwarded-For"] = "192.0.2.45"
        assert login(third, "correct horse battery").status_code == 429
        third.headers["X-Forwarded-For"] = proxy
        assert login(third, "ann's own passphrase", user="ann").status_code == 429
    for store in stores:
        store.engine.dispose()


def test_logout_ends_the_session_also_for_a_copied_cookie(daemon: Daemon, site: httpx.Client) -> None:  # noqa: F811
    daemon.store.access.set_user("max", "correct horse battery", "Max Keller")
    assert login(site, "correct horse battery").status_code == 303
    copied = dict(site.cookies)
    assert site.get("/inbox").status_code == 200
    assert site.post("/logout", data={"csrf": csrf(site)}).status_code == 303
    site.cookies.clear()
    site.cookies.update(copied)
    again = site.get("/inbox")
    assert again.status_code == 303 and again.headers["location"].startswith("/login")


def test_a_password_change_ends_the_sessions_made_with_the_old_one(
    daemon: Daemon,  # noqa: F811
    site: httpx.Client,
) -> None:
    daemon.store.access.set_user("max", "correct horse battery", "Max Keller")
    assert login(site, "correct horse battery").status_code == 303
    assert site.get("/inbox").status_code == 200
    daemon.store.access.set_user("max", "a new and better one")
    assert site.get("/inbox").status_code == 303


def test_metrics_need_the_token_or_a_login(daemon: Daemon, site: httpx.Client) -> None:  # noqa: F811
    assert site.get("/metrics").status_code == 401
    assert site.get("/metrics", headers={"Authorization": "Bearer wrong"}).status_code == 401
    assert site.get("/metrics", headers={"Authorization": "Bearer metrics-secret"}).status_code == 200
    daemon.store.access.set_user("max", "correct horse battery", "Max Keller")
    assert login(site, "correct horse battery").status_code == 303
    assert site.get("/metrics").status_code == 200


def test_serve_and_run_refuse_the_default_secret_for_a_site_others_reach(tmp_path: Path) -> None:
    import os
    import subprocess
    import sys

    env = {k: v for k, v in os.environ.items() if k != "NURTURE_SECRET_KEY"}
    env |= {"NURTURE_BASE_URL": "https://mail.acme.example", "NURTURE_DATABASE_URL": f"sqlite:///{tmp_path / 'n.db'}"}
    script = Path(sys.executable).parent / "nurture"
    for command in (["serve"], ["run"]):
        result = subprocess.run([str(script), *command], env=env, capture_output=True, text=True, timeout=120)
        assert result.returncode == 1
        assert "NURTURE_SECRET_KEY is the default, and NURTURE_BASE_URL (https://mail.acme.example)" in result.stderr
