"""The qualify job with accounts and limits, on SQLite and PostgreSQL: colleagues are rescored in
the same run, one person cannot make an account's people hot, a hot account gets one hand-off,
and promotions beyond the limits are held for review until released."""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select

from nurture.clock import FakeClock
from nurture.daemon import Daemon
from nurture.jobs.notify import render_summary
from nurture.store.tables import LEADS, NOTIFICATIONS, PROMOTIONS
from nurture.store.tables import LIFECYCLE_CHANGES as LC
from nurture.store.tables import SCORE_HISTORY as SH
from nurture.web.app import create_app
from tests.http_server import serving
from tests.integration.conftest import ROOT
from tests.integration.test_daemon import import_csv
from tests.integration.test_web import log_in

HEADER = "email,first_name,last_name,company,company_size,industry,job_title,country,timezone,source\n"


def people(company: str, count: int, domain: str) -> str:
    """`count` grade-A people at one company (routed to the general pool: US)."""
    return "".join(
        f"p{i}@{domain},P{i},Person,{company},5000,Manufacturing,Head of Operations,US,America/Chicago,list\n"
        for i in range(count)
    )


@pytest.fixture
def make(db_url: str, make_daemon: Callable[..., Daemon], workspace: Path) -> Callable[..., Daemon]:
    def build(scoring_changes: dict[str, str] | None = None) -> Daemon:
        text = (ROOT / "scenarios" / "scoring.yaml").read_text()
        for old, new in (scoring_changes or {}).items():
            assert old in text
            text = text.replace(old, new)
        (workspace / "scenarios" / "scoring.yaml").write_text(text)
        return make_daemon(db_url, base_url="http://nurture.test")  # https would make the cookie Secure

    return build


def record(daemon: Daemon, email: str, type_: str, hours_ago: float, **props: Any) -> None:
    lead = daemon.store.leads.by_email(email)
    assert lead is not None
    with daemon.store.transaction() as conn:
        daemon.store.events.record(conn, lead.id, type_, daemon.clock.now() - timedelta(hours=hours_ago), props)


def very_active(daemon: Daemon, email: str) -> None:
    for day in range(5):
        for n in range(10):
            record(daemon, email, "page_view", day * 24 + n / 60, url="https://acme.example/pricing")
    for kind in ("webinar_registered", "webinar_attended", "download", "download", "inquiry", "form_fill", "reply"):
        record(daemon, email, kind, 5)


def notifications(daemon: Daemon) -> list[Any]:
    with daemon.store.reading() as conn:
        return list(conn.execute(select(NOTIFICATIONS).order_by(NOTIFICATIONS.c.id)).all())


def test_one_very_active_person_makes_no_colleague_hot_and_colleagues_are_rescored_in_the_same_run(
    make: Callable[..., Daemon], tmp_path: Path, clock: FakeClock
) -> None:
    daemon = make()
    import_csv(daemon, tmp_path, HEADER + people("BigCo", 300, "bigco.example"))
    daemon.qualifier.run_once()  # the first run sets the watermark
    clock.advance(timedelta(minutes=5))
    very_active(daemon, "p0@bigco.example")
    clock.advance(timedelta(minutes=1))
    stats = daemon.qualifier.run_once()  # incremental: only p0's events arrived

    assert stats.scored == 300 and stats.accounts == 1 and stats.promoted == 1
    with daemon.store.reading() as conn:
        stages = dict(
            conn.execute(select(LEADS.c.lifecycle_stage, func.count()).group_by(LEADS.c.lifecycle_stage)).all()
        )
        colleague_scores = set(
            conn.execute(select(LEADS.c.score_engagement).where(LEADS.c.email != "p0@bigco.example")).scalars()
        )
        rescored = conn.execute(select(func.count()).where(LEADS.c.scored_at == clock.now())).scalar_one()
    assert stages == {"hot": 1, "cold": 299}
    assert colleague_scores == {10}  # each got the account's capped part in this very run
    assert rescored == 300
    assert [n.subject.split(":")[0] for n in notifications(daemon)] == ["Hot lead"]  # one alert, not 300


def test_a_rescore_that_finds_the_same_scores_leaves_the_rows_alone(
    make: Callable[..., Daemon], tmp_path: Path, clock: FakeClock
) -> None:
    daemon = make()
    nobody = "kim@tinyshop.example,Kim,Poor,Tiny Shop,5,Retail,Student,BR,America/Sao_Paulo,list\n"
    import_csv(daemon, tmp_path, HEADER + people("BigCo", 20, "bigco.example") + nobody)
    first = clock.now()
    daemon.qualifier.run_once(everyone=True)
    with daemon.store.reading() as conn:
        kim = conn.execute(select(LEADS).where(LEADS.c.email == "kim@tinyshop.example")).one()
        scored = dict(conn.execute(select(LEADS.c.email, LEADS.c.scored_at)).all())
    # Kim's score is the table's default (fit 0, grade D, engagement 0), and she is scored all the same.
    assert (kim.score_fit, kim.score_engagement, kim.grade) == (0, 0, "D")
    assert set(scored.values()) == {first}

    clock.advance(timedelta(minutes=5))
    stats = daemon.qualifier.run_once(everyone=True)  # nothing happened: every score comes out the same
    with daemon.store.reading() as conn:
        assert dict(conn.execute(select(LEADS.c.email, LEADS.c.scored_at)).all()) == scored
        assert conn.execute(select(func.count()).select_from(SH).where(SH.c.at > first)).scalar_one() == 0
    assert stats.scored == 21

    clock.advance(timedelta(minutes=5))
    for email in ("p3@bigco.example", "p5@bigco.example"):
        record(daemon, email, "form_fill", 0.5, form="contact")  # 15 points: warm
    stats = daemon.qualifier.run_once()
    with daemon.store.reading() as conn:
        moved = conn.execute(
            select(LEADS.c.email, LEADS.c.lifecycle_stage, LEADS.c.scored_at, LC.c.from_stage, LC.c.reason, LC.c.actor)
            .add_columns(LEADS.c.score_engagement)
            .join(LC, LC.c.lead_id == LEADS.c.id)
            .order_by(LEADS.c.email)
        ).all()
    with daemon.store.reading() as conn:
        history = conn.execute(
            select(LEADS.c.email, SH.c.fit, SH.c.engagement, SH.c.grade)
            .join(SH, SH.c.lead_id == LEADS.c.id)
            .where(SH.c.at == clock.now())
        ).all()
        now_scores = conn.execute(
            select(LEADS.c.email, LEADS.c.score_fit, LEADS.c.score_engagement, LEADS.c.grade).where(
                LEADS.c.scored_at == clock.now()
            )
        ).all()
    # The history holds this run's changed scores, as the leads now have them, and nothing else.
    assert sorted(map(tuple, history)) == sorted(map(tuple, now_scores)) and len(history) >= 2
    assert stats.warmed == 2
    assert [tuple(m)[:-1] for m in moved] == [
        (email, "warm", clock.now(), "cold", f"engagement {m.score_engagement} ≥ 15", "scoring")
        for email, m in zip(("p3@bigco.example", "p5@bigco.example"), moved, strict=True)
    ]


def test_an_account_with_several_engaged_people_gets_one_account_hand_off(
    make: Callable[..., Daemon], tmp_path: Path, clock: FakeClock
) -> None:
    daemon = make()
    import_csv(daemon, tmp_path, HEADER + people("Acme Foods", 12, "acmefoods.example"))
    for i, kinds in enumerate(
        (["webinar_attended"], ["download", "webinar_registered"], ["download", "form_fill"], ["webinar_attended"])
    ):
        for kind in kinds:
            record(daemon, f"p{i}@acmefoods.example", kind, 2, link="x", send=i)
    stats = daemon.qualifier.run_once()
    assert (stats.promoted, stats.accounts_hot) == (0, 1)
    [alert] = notifications(daemon)
    assert alert.subject.startswith("Hot account: acme foods (4 engaged people, engagement ")
    assert {p["email"] for p in alert.payload["people"]} == {f"p{i}@acmefoods.example" for i in range(4)}
    assert daemon.store.accounts.by_key("acme foods").stage == "hot"  # type: ignore[union-attr]
    text, _ = render_summary(alert.payload)
    assert text.startswith("The account acme foods is hot: engagement ") and "p2@acmefoods.example" in text

    clock.advance(timedelta(hours=1))
    record(daemon, "p5@acmefoods.example", "download", 0.5)
    assert daemon.qualifier.run_once().accounts_hot == 0  # still hot: no second hand-off
    assert len(notifications(daemon)) == 1


def test_promotions_over_the_run_limit_are_held_for_review_and_released_later(
    make: Callable[..., Daemon], tmp_path: Path, clock: FakeClock
) -> None:
    daemon = make({"per_run: 50": "per_run: 2"})
    rows = "".join(
        f"l{i}@firm{i}.example,L{i},Lead,Firm {i},5000,Manufacturing,Head of Operations,US,America/Chicago,list\n"
        for i in range(5)
    )
    import_csv(daemon, tmp_path, HEADER + rows)
    for i in range(5):
        record(daemon, f"l{i}@firm{i}.example", "inquiry", 1 + i)  # l0 is the freshest: the strongest
    stats = daemon.qualifier.run_once()
    assert (stats.promoted, stats.held) == (2, 3)
    hot = {r.email for r in daemon.store.leads.search(stage="hot")}
    assert hot == {"l0@firm0.example", "l1@firm1.example"}
    held = daemon.store.accounts.held()
    ids = {r.email: r.id for r in daemon.store.leads.search()}
    assert [h.key for h in held] == [f"lead:{ids[f'l{i}@firm{i}.example']}" for i in (2, 3, 4)]
    assert {h.reason for h in held} == {"over the limit of 2 promotions per run"}

    clock.advance(timedelta(minutes=5))
    assert daemon.qualifier.run_once(everyone=True).held == 0  # still held, not held twice
    assert daemon.store.accounts.held_count() == 3

    done = daemon.qualifier.release([held[0].id], by="max")
    assert len(done) == 1 and done[0][0] == held[0].key and done[0][1].startswith("handed to ")
    assert daemon.store.accounts.held_count() == 2
    rest = daemon.qualifier.release(None, by="max")
    assert len(rest) == 2 and daemon.store.accounts.held_count() == 0
    assert {r.email for r in daemon.store.leads.search(stage="hot")} == {f"l{i}@firm{i}.example" for i in range(5)}
    with daemon.store.reading() as conn:
        released_by = list(conn.execute(select(PROMOTIONS.c.released_by).order_by(PROMOTIONS.c.id)).scalars())
    assert released_by == ["scoring", "scoring", "max", "max", "max"]
    assert len([n for n in notifications(daemon) if n.subject.startswith("Hot lead")]) == 5


def test_the_inbox_shows_hot_accounts_and_held_promotions_and_releases_them(
    make: Callable[..., Daemon], tmp_path: Path, clock: FakeClock
) -> None:
    daemon = make({"per_run: 50": "per_run: 1"})
    rows = people("Acme Foods", 4, "acmefoods.example") + (
        "solo@firm.example,Solo,Lead,Firm,5000,Manufacturing,Head of Operations,US,America/Chicago,list\n"
    )
    import_csv(daemon, tmp_path, HEADER + rows)
    record(daemon, "solo@firm.example", "inquiry", 1)
    for i in range(3):
        record(daemon, f"p{i}@acmefoods.example", "form_fill", 2)
        record(daemon, f"p{i}@acmefoods.example", "download", 2)
    stats = daemon.qualifier.run_once()
    assert (stats.accounts_hot, stats.promoted, stats.held) == (1, 0, 1)  # the account is the stronger

    with serving(create_app(daemon.settings, daemon.clock, daemon.store)) as base, httpx.Client(base_url=base) as site:
        log_in(daemon, site)
        page = site.get("/inbox").text
        assert "Held for review" in page and "over the limit of 1 promotions per run" in page
        token = re.search(r'name="csrf" value="([^"]+)"', page)
        assert token is not None
        promotion = re.search(r'name="promotion" value="(\d+)"', page)
        assert promotion is not None
        answer = site.post("/promotions/release", data={"csrf": token.group(1), "promotion": promotion.group(1)})
        assert answer.status_code == 303
        page = site.get("/inbox").text
        assert "Held for review" not in page and "1 promotion(s) released" in page
        accounts = re.search(r'<table id="accounts">.*?</table>', page, re.S)
        assert (
            accounts is not None and "acme foods" in accounts.group(0) and "p0@acmefoods.example" in accounts.group(0)
        )
        assert "solo@firm.example" in re.search(r'<table id="hot">.*?</table>', page, re.S).group(0)  # type: ignore[union-attr]
        colleague = daemon.store.leads.by_email("p3@acmefoods.example")
        assert colleague is not None
        lead_page = site.get(f"/leads/{colleague.id}").text  # account-hot next to the lead's own stage
        assert '<span class="stage stage-cold" id="stage">cold</span>' in lead_page
        assert '<span class="stage stage-hot" id="account-stage">account hot</span>' in lead_page
