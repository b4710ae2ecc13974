"""What protects the HTTP side: body limits before parsing and authentication, small error
replies, login throttling, sessions that end, protected metrics. Over real HTTP."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from nurture.daemon import Daemon
from nurture.store.tables import EVENTS
from nurture.web.app import create_app
from tests.http_server import serving
from tests.integration.test_web import count, daemon  # noqa: F401  (the fixture)


class Timer:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def timer() -> Timer:
    return Timer()


@pytest.fixture
def site(daemon: Daemon, timer: Timer) -> Iterator[httpx.Client]:  # noqa: F811
    app = create_app(daemon.settings.model_copy(update={"max_body_bytes": 100_000}), daemon.clock, daemon.store)
    app.state.web.throttle.timer = timer
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
    timer: Timer,
) -> None:
    daemon.store.access.set_user("max", "correct horse battery", "Max Keller")
    for _ in range(5):
        assert login(site, "wrong").status_code == 401
    blocked = login(site, "wrong")
    assert blocked.status_code == 401  # the sixth wrong one counts and starts the block
    refused = login(site, "correct horse battery")
    assert refused.status_code == 429 and int(refused.headers["Retry-After"]) >= 1
    assert "Too many wrong passwords" in refused.text
    timer.now += 3
    assert login(site, "correct horse battery").status_code == 303


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
