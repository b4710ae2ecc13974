"""The data-rights endpoints over real HTTP: `GET /api/v1/leads/{email}/export` and
`POST /api/v1/leads/{email}/erase` need an API key, return what the privacy desk needs, and
an erasure through the API leaves no trace in any table (SQLite and PostgreSQL)."""

from __future__ import annotations

import shutil
from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path

import httpx
import pytest

from nurture.consent.erasure import keyed_hash
from nurture.daemon import Daemon
from nurture.leads import import_leads
from nurture.lifecycle import log_activity
from nurture.vocabulary import SendStatus
from nurture.web.app import create_app
from tests.http_server import serving
from tests.integration.conftest import ROOT, tick
from tests.integration.test_data_rights import LEADS, PERSON, sends_of, text_columns_holding
from tests.smtp_server import SmtpServer

JANE = "jane.roe@quillfeather.example"


@pytest.fixture
def daemon(db_url: str, make_daemon: Callable[..., Daemon], workspace: Path, tmp_path: Path) -> Daemon:
    for name in ("whitepaper_nurture.yaml", "scoring.yaml"):
        shutil.copy(ROOT / "scenarios" / name, workspace / "scenarios")
    built = make_daemon(db_url, consent_regime="auto", base_url="http://nurture.test")
    path = tmp_path / "leads.csv"
    path.write_text(LEADS, encoding="utf-8")
    assert import_leads(built.store, path).created == 4
    return built


@pytest.fixture
def site(daemon: Daemon) -> Iterator[httpx.Client]:
    with serving(create_app(daemon.settings, daemon.clock, daemon.store)) as base, httpx.Client(base_url=base) as c:
        yield c


def key(daemon: Daemon, name: str = "privacy-desk") -> dict[str, str]:
    return {"Authorization": f"Bearer {daemon.store.access.create_key(name)}"}


def test_export_and_erase_need_a_valid_unrevoked_api_key_and_erase_nothing_without_one(
    daemon: Daemon, site: httpx.Client
) -> None:
    revoked = key(daemon, "old-crm")
    daemon.store.access.revoke_key("old-crm")
    for headers in ({}, {"Authorization": "Bearer not-a-key"}, {"X-API-Key": "not-a-key"}, revoked):
        exported = site.get(f"/api/v1/leads/{JANE}/export", headers=headers)
        erased = site.post(f"/api/v1/leads/{JANE}/erase", json={"by": "someone"}, headers=headers)
        for answer in (exported, erased):
            assert answer.status_code == 401, (headers, answer.text)
            assert answer.headers["www-authenticate"] == "Bearer"
            assert "quillfeather" not in answer.text.lower()
    assert daemon.store.leads.by_email(JANE) is not None
    assert daemon.store.consents.erasures() == []


def test_the_export_endpoint_returns_everything_held_about_the_person_and_404_for_an_unknown_address(
    daemon: Daemon, site: httpx.Client, smtp: SmtpServer
) -> None:
    tick(daemon)
    log_activity(daemon.store, JANE, "call", "wants pricing for 3 plants", "max", daemon.clock.now())
    headers = key(daemon)

    answer = site.get("/api/v1/leads/Jane.Roe@Quillfeather.example/export", headers=headers)

    assert answer.status_code == 200, answer.text
    data = answer.json()
    assert data["format"] == "nurture.person-export/1"
    assert data["fields"]["email"] == JANE and data["fields"]["company"] == "Quillfeather Analytics"
    [consent] = data["consent"]
    assert (consent["topic"], consent["status"], consent["source"]) == ("marketing", "granted", "form")
    assert (consent["wording"], consent["ip"]) == ("whitepaper-form-v2", "198.51.100.7")
    assert data["consent_in_force"][0]["may_send"] is True
    [email] = data["emails"]
    assert (email["template"], email["status"]) == ("welcome", "sent") and email["message_id"]
    assert data["enrolments"][0]["scenario_id"] == "whitepaper_nurture"
    assert data["activities"][0]["note"] == "wants pricing for 3 plants"

    unknown = site.get("/api/v1/leads/nobody@nowhere.example/export", headers=headers)
    assert unknown.status_code == 404
    assert unknown.json() == {"detail": "nothing is held about nobody@nowhere.example"}


def test_an_erasure_through_the_api_leaves_no_trace_in_any_table_and_the_address_is_never_mailed_again(
    daemon: Daemon, site: httpx.Client, smtp: SmtpServer, tmp_path: Path
) -> None:
    tick(daemon)
    log_activity(daemon.store, JANE, "call", "Jane Roe of Quillfeather Analytics: budget Q3", "max", daemon.clock.now())
    assert text_columns_holding(daemon, "quillfeather")  # the search finds what is there
    headers = key(daemon)

    assert site.post(f"/api/v1/leads/{JANE}/erase", json={}, headers=headers).status_code == 422  # who asked?
    answer = site.post("/api/v1/leads/JANE.ROE@quillfeather.example/erase", json={"by": "ticket 4711"}, headers=headers)

    assert answer.status_code == 200, answer.text
    done = answer.json()
    assert done["found"] is True and done["deleted"]["lead"] == 1 and done["deleted"]["send"] == 1
    assert done["deleted"]["consent_record"] == 1
    for needle in PERSON:
        assert text_columns_holding(daemon, needle) == [], needle
    [entry] = daemon.store.consents.erasures()
    assert entry["id"] == done["erasure"] and entry["actor"] == "ticket 4711 (API key privacy-desk)"
    assert site.get(f"/api/v1/leads/{JANE}/export", headers=headers).status_code == 404
    assert site.get(f"/api/v1/leads/{JANE}", headers=headers).status_code == 404

    # An erasure request for an address nobody holds is answered and logged the same way, so
    # the answer does not tell whether the address was known; it is suppressed from then on.
    stranger = site.post("/api/v1/leads/stranger@nowhere.example/erase", json={"by": "ticket 4712"}, headers=headers)
    assert stranger.status_code == 200 and stranger.json()["found"] is False
    assert len(daemon.store.consents.erasures()) == 2
    stranger_entry = keyed_hash(daemon.settings.suppression_hash_key, "stranger@nowhere.example")
    with daemon.store.reading() as conn:
        assert daemon.store.consents.suppressed_entries(conn, [stranger_entry])

    # She signs up again through the API: she is never mailed again.
    again = site.post(
        "/api/v1/leads",
        json={"email": JANE, "first_name": "Jane", "country": "US", "timezone": "UTC", "source": "whitepaper"},
        headers=headers,
    )
    assert again.status_code == 200, again.text
    before = len(smtp.messages)
    daemon.clock.advance(timedelta(hours=1))
    tick(daemon)
    assert all(m["To"].addresses[0].addr_spec != JANE for m in smtp.messages[before:])
    [send] = sends_of(daemon, JANE)
    assert send.status == SendStatus.SUPPRESSED and send.last_error == "the address was erased on request"  # type: ignore[attr-defined]
