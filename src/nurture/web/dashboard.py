"""The dashboard: server-rendered pages for sales and marketing, behind a login.

Sessions are signed cookies (Starlette's SessionMiddleware); every form carries the
session's CSRF token, and a POST without the matching token is refused with 403.
"""

from __future__ import annotations

import asyncio
import hmac
import itertools
from collections import Counter
from datetime import timedelta
from typing import Annotated, Any
from urllib.parse import quote, urlencode, urlsplit

import aiosmtplib
from fastapi import APIRouter, Depends, Form, HTTPException, Request
from fastapi.responses import RedirectResponse, Response
from markupsafe import Markup

from nurture.analytics.backtest import BacktestRow, backtest, parse_cuts, parse_thresholds
from nurture.analytics.backtest import scope as backtest_scope
from nurture.analytics.experiments import experiment_reports, send_time_lifts
from nurture.analytics.history import StoredHistory
from nurture.analytics.report import scenario_report
from nurture.config import Settings
from nurture.errors import NurtureError
from nurture.jobs.catalog import Catalog
from nurture.jobs.feedback import reputation_policy
from nurture.jobs.qualify import Qualifier
from nurture.lifecycle import feedback, feedback_actions, needed_for
from nurture.mail.message import BuiltMessage
from nurture.mail.sender import SmtpPool
from nurture.scenario.compiler import CompiledScenario
from nurture.scenario.graph import edges, to_mermaid, to_svg
from nurture.store.leads import SORTS, LeadPage, LeadQuery
from nurture.store.reports import SALES_STAGES
from nurture.throttle import throttle_keys
from nurture.vocabulary import Stage
from nurture.web.authoring import compose_step, email_steps, findings
from nurture.web.context import Web, csrf_token, web
from nurture.web.figures import backtest_chart, deliverability_chart, funnel_chart, score_chart

router = APIRouter(include_in_schema=False)
SCORE_BUCKETS = (0, 10, 20, 40, 60, 80, 100)


class LoginRequired(Exception):
    """Raised for a page that needs a logged-in user; answered with a redirect to /login."""

    def __init__(self, target: str) -> None:
        self.target = target


def user(request: Request) -> str:
    name = request.session.get("user")
    # A session made before the user logged out or changed their password has ended.
    if not isinstance(name, str) or request.session.get("epoch") != web(request).store.access.session_epoch(name):
        request.session.clear()
        raise LoginRequired(request.url.path + (f"?{request.url.query}" if request.url.query else ""))
    return name


def client_address(request: Request) -> str:
    return request.client.host if request.client else "unknown"


def checked_csrf(request: Request, csrf: Annotated[str, Form()] = "") -> None:
    if not csrf or not hmac.compare_digest(csrf, csrf_token(request)):
        raise HTTPException(403, "the form expired or did not come from this site; reload the page and try again")


User = Annotated[str, Depends(user)]
Csrf = Depends(checked_csrf)


def _safe_next(target: str) -> str:
    """Only paths on this site: never an absolute URL that would make login an open redirect."""
    parts = urlsplit(target)
    return target if target.startswith("/") and not target.startswith("//") and not parts.netloc else "/inbox"


# -- login ------------------------------------------------------------------------------------


@router.get("/login")
def login_page(request: Request, next: str = "/inbox") -> Response:
    return web(request).page(request, "login.html", next=_safe_next(next), error=None)


@router.post("/login", dependencies=[Csrf])
def login(
    request: Request,
    username: Annotated[str, Form()],
    password: Annotated[str, Form()],
    next: Annotated[str, Form()] = "/inbox",
) -> Response:
    w = web(request)
    keys = throttle_keys(username, client_address(request))
    wait = w.store.access.login_wait(keys, w.throttle)
    if wait > 0:
        page = w.page(
            request,
            "login.html",
            status_code=429,
            next=_safe_next(next),
            error=f"Too many wrong passwords; try again in {int(wait) + 1} seconds.",
        )
        page.headers["Retry-After"] = str(int(wait) + 1)
        return page
    display = w.store.access.authenticate(username, password)
    if display is None:
        w.store.access.login_failed(keys, w.throttle)
        return w.page(request, "login.html", status_code=401, next=_safe_next(next), error="Wrong name or password.")
    w.store.access.login_succeeded(keys[0])
    request.session.clear()  # a fresh session (and CSRF token) on login: no session fixation
    request.session["user"] = username.strip()
    request.session["display"] = display
    request.session["epoch"] = w.store.access.session_epoch(username)
    return RedirectResponse(_safe_next(next), status_code=303)


@router.post("/logout", dependencies=[Csrf])
def logout(request: Request) -> Response:
    """Log out everywhere: every session of the user ends, also a copied cookie."""
    name = request.session.get("user")
    if isinstance(name, str):
        web(request).store.access.end_sessions(name)
    request.session.clear()
    return RedirectResponse("/login", status_code=303)


@router.get("/")
def home(_: User) -> Response:
    return RedirectResponse("/inbox", status_code=303)


# -- sales ------------------------------------------------------------------------------------


def _lead_query(q: str, stage: str, grade: str, owner: str, scenario: str, sort: str, page: int) -> LeadQuery:
    def clean(value: str, most: int) -> str:  # a NUL is no PostgreSQL text; no lead has one
        return value.replace("\x00", "")[:most]

    return LeadQuery(
        text=clean(q, 200),
        stage=clean(stage, 100),
        grade=clean(grade, 100),
        owner=clean(owner, 200),
        scenario=clean(scenario, 100),
        sort=sort if sort in SORTS else "updated",
        page=max(1, min(page, 100_000)),
    )


def _list_links(request: Request, found: LeadPage) -> dict[str, str | None]:
    """The addresses of the previous and next pages, with the same search and filters."""

    def to(page: int) -> str:
        params = {k: v for k, v in request.query_params.items() if k != "page" and v}
        params["page"] = str(page)
        return f"{request.url.path}?{urlencode(params)}"

    return {
        "prev": to(found.page - 1) if found.page > 1 else None,
        "next": to(found.page + 1) if found.has_next else None,
    }


@router.get("/inbox")
def inbox(
    request: Request,
    _: User,
    q: str = "",
    grade: str = "",
    owner: str = "",
    scenario: str = "",
    sort: str = "promoted",
    page: int = 1,
) -> Response:
    """Hot leads waiting for sales (newest promotion first, or as sorted; searchable, paged),
    and what sales decided lately."""
    w = web(request)
    query = _lead_query(q, Stage.HOT, grade, owner, scenario, sort, page)
    found = w.store.leads.page(query)
    return w.page(
        request,
        "inbox.html",
        hot=found.rows,
        found=found,
        query=query,
        links=_list_links(request, found),
        hot_count=w.store.leads.count_in_stage(Stage.HOT),
        recent=w.store.leads.decisions(SALES_STAGES),
        scenarios=sorted(w.project()[0]),
        accounts=w.store.accounts.hot(),
        held=w.store.accounts.held(limit=200),
        held_count=w.store.accounts.held_count(),
        flash=request.session.pop("flash", None),
    )


@router.post("/promotions/release", dependencies=[Csrf])
def release_promotions(request: Request, who: User, promotion: Annotated[int | None, Form()] = None) -> Response:
    """Let held promotions through: one (`promotion`), or all of them."""
    w = web(request)
    scoring = w.scoring
    if scoring is None:
        request.session["flash"] = {"ok": False, "text": "no valid scoring file: nothing released"}
        return RedirectResponse("/inbox", status_code=303)
    catalog = Catalog(w.store, w.settings.scenarios_dir, w.settings.templates_dir)
    catalog.scoring = scoring
    done = Qualifier(w.store, catalog, w.clock).release(None if promotion is None else [promotion], who)
    request.session["flash"] = {"ok": True, "text": f"{len(done)} promotion(s) released"}
    return RedirectResponse("/inbox", status_code=303)


@router.post("/leads/{lead_id}/feedback", dependencies=[Csrf])
def give_feedback(
    request: Request,
    lead_id: int,
    who: User,
    action: Annotated[str, Form()],
    reason: Annotated[str, Form()] = "",
    back: Annotated[str, Form()] = "/inbox",
) -> Response:
    w = web(request)
    lead = w.store.leads.by_id(lead_id)
    if lead is None:
        raise HTTPException(404, "no such lead")
    email = lead.email
    try:
        old, new = feedback(w.store, email, action, reason, who, w.clock.now())
        request.session["flash"] = {"ok": True, "text": f"{email}: {old} → {new}"}
    except NurtureError as exc:
        request.session["flash"] = {"ok": False, "text": f"{email}: {exc}"}
    return RedirectResponse(_safe_next(back), status_code=303)


@router.get("/leads")
def leads(
    request: Request,
    _: User,
    q: str = "",
    stage: str = "",
    grade: str = "",
    owner: str = "",
    scenario: str = "",
    sort: str = "updated",
    page: int = 1,
) -> Response:
    """Every lead: search by email, name or company; filter by stage, grade, owner, scenario;
    sorted and paged."""
    w = web(request)
    query = _lead_query(q, stage, grade, owner, scenario, sort, page)
    found = w.store.leads.page(query)
    return w.page(
        request,
        "leads.html",
        leads=found.rows,
        found=found,
        query=query,
        links=_list_links(request, found),
        scenarios=sorted(w.project()[0]),
        q=q,
        stage=stage,
    )


@router.get("/leads/{lead_id}")
def lead_page(request: Request, lead_id: int, _: User) -> Response:
    w = web(request)
    with w.store.reading() as conn:
        record = w.store.reports.lead_record(conn, lead_id)
        if record is None:
            raise HTTPException(404, "no such lead")
        lead, sends, events, changes = record.lead, record.sends, record.events, record.changes
        history, activities = record.history, record.activities
        scoring = w.scoring
        result = stored = None
        if scoring is not None:
            catalog = Catalog(w.store, w.settings.scenarios_dir, w.settings.templates_dir)
            catalog.scoring = scoring
            qualifier = Qualifier(w.store, catalog, w.clock)
            now = w.clock.now()
            result = qualifier.score_lead(scoring, conn, lead, now)
            # What the stored score (the header, the stage) was made of, or why no breakdown is.
            stored = qualifier.explain_stored(scoring, conn, lead, result, now)
    timeline: list[dict[str, Any]] = []
    for s in sends:
        timeline.append(
            {
                "at": s.sent_at or s.next_attempt_at,
                "kind": f"email {s.status}",
                "text": f"template {s.template}",
                "detail": f"{s.scenario_id} / {s.step}" + (f" — {s.last_error}" if s.last_error else ""),
            }
        )
    verdicts = {(a.type, a.at): a.verdict for a in result.activity} if result is not None else {}
    for e in events:
        detail = ", ".join(f"{k}={v}" for k, v in (e.props or {}).items() if k not in ("sent_at", "user_agent"))
        verdict = verdicts.get((e.type, e.at))
        said = f"{verdict.kind}{' (counts once)' if verdict.repeat else ''}: {verdict.reason}" if verdict else ""
        timeline.append({"at": e.at, "kind": e.type, "text": detail, "detail": said.rstrip(": ")})
    for c in changes:
        timeline.append(
            {
                "at": c.at,
                "kind": "lifecycle",
                "text": f"{c.from_stage} → {c.to_stage}",
                "detail": f"{c.reason} ({c.actor})",
            }
        )
    for a in activities:
        timeline.append({"at": a.at, "kind": a.kind, "text": a.note, "detail": a.actor})
    timeline.sort(key=lambda item: item["at"], reverse=True)
    return w.page(
        request,
        "lead.html",
        lead=lead,
        timeline=timeline,
        changes=changes,
        history=history,
        result=result,
        stored=stored,
        now=w.clock.now(),
        needed=needed_for(scoring, lead.grade) if scoring else None,
        account=_account_of(w, lead.company, lead.email),
        actions=feedback_actions(lead.lifecycle_stage),
        score_chart=Markup(
            score_chart(history, lead.grade, needed_for(scoring, lead.grade) if scoring else None, w.clock.now())
        ),
        flash=request.session.pop("flash", None),
    )


def _account_of(w: Web, company: str | None, email: str) -> Any:
    """The lead's account as an account (its key, stage, engagement), when accounts count."""
    key = w.scoring.account_of(company, email) if w.scoring is not None else None
    return w.store.accounts.by_key(key) if key else None


# -- marketing --------------------------------------------------------------------------------


@router.get("/scenarios")
def scenarios(request: Request, _: User) -> Response:
    w = web(request)
    found, _scoring = w.project()
    return w.page(request, "scenarios.html", scenarios=sorted(found.values(), key=lambda c: c.id))


@router.get("/scenarios/{scenario_id}")
def scenario_page(request: Request, scenario_id: str, _: User) -> Response:
    w = web(request)
    found, scoring = w.project()
    compiled = found.get(scenario_id)
    if compiled is None:
        raise HTTPException(404, f"no scenario {scenario_id!r} in {w.settings.scenarios_dir}")
    report = scenario_report(w.store, compiled, scoring)
    outgoing: dict[str, list[tuple[str, str]]] = {}
    for source, label, target in edges(compiled.scenario.steps):
        outgoing.setdefault(source, []).append((label, target))
    policy = reputation_policy(w.settings)
    with w.store.reading() as conn:
        outcomes = w.store.feedback.outcomes(conn, scenario_id, policy.window)
    since = w.clock.now() - timedelta(days=30)
    history = w.store.feedback.daily(scenario_id, since)
    return w.page(
        request,
        "scenario.html",
        compiled=compiled,
        report=report,
        pause=w.store.feedback.paused().get(scenario_id),
        outcomes=outcomes,
        policy=policy,
        history=history,
        deliverability_chart=Markup(deliverability_chart(history, report.unsubscribes_by_day, since.date())),
        funnel_chart=Markup(funnel_chart(report)),
        outgoing=outgoing,
        mermaid=to_mermaid(compiled.scenario.steps, compiled.scenario.name),
        journey=Markup(to_svg(compiled.scenario.steps, {r.step: f"{r.entered} entered" for r in report.steps})),
        experiments=experiment_reports(w.store, compiled, w.clock.now()),
        email_steps=[s.id for s in email_steps(compiled)],
        findings=findings(w.settings, compiled, list(found.values())),
        test_address=w.store.access.email_of(request.session.get("user", "")),
        send_times=send_time_lifts(w.store, compiled, scoring),
        parked=w.store.enrolments.parked(limit=50, scenario_id=scenario_id),
        flash=request.session.pop("flash", None),
        Markup=Markup,
    )


def _scenario(w: Web, scenario_id: str) -> CompiledScenario:
    compiled = w.project()[0].get(scenario_id)
    if compiled is None:
        raise HTTPException(404, f"no scenario {scenario_id!r} in {w.settings.scenarios_dir}")
    return compiled


def _lead_named(w: Web, lead: str) -> Any:
    """The lead a form names by email or id, or None (also for text no lead could have: a NUL
    character, digits that are no database id)."""
    key = lead.strip()
    if not key or "\x00" in key:
        return None
    row = w.store.leads.by_email(key)
    if row is None and key.isascii() and key.isdigit() and len(key) <= 18:
        row = w.store.leads.by_id(int(key))
    return row


@router.get("/scenarios/{scenario_id}/preview")
def preview_email(request: Request, scenario_id: str, who: User, step: str = "", lead: str = "") -> Response:
    """An email step rendered for a chosen lead as the sender would build it, shown in a
    sandboxed frame (no scripts, no same-origin access, links do not navigate the dashboard)."""
    w = web(request)
    compiled = _scenario(w, scenario_id)
    steps = [s.id for s in email_steps(compiled)]
    step = step or (steps[0] if steps else "")
    row = _lead_named(w, lead)
    preview = error = None
    if not lead.strip():
        error = "Choose a lead (their email) to render the email for."
    elif row is None:
        error = f"No lead {lead!r}."
    else:
        try:
            preview = compose_step(w.settings, compiled, step, row, w.clock.now())
        except NurtureError as exc:
            error = str(exc)
    return w.page(
        request,
        "preview.html",
        status_code=200 if error is None or not lead.strip() else 404 if row is None else 422,
        compiled=compiled,
        steps=steps,
        step=step,
        lead=lead,
        row=row,
        preview=preview,
        error=error,
        test_address=w.store.access.email_of(who),
        flash=request.session.pop("flash", None),
    )


@router.post("/scenarios/{scenario_id}/test", dependencies=[Csrf])
def send_test_email(
    request: Request, scenario_id: str, who: User, step: Annotated[str, Form()], lead: Annotated[str, Form()]
) -> Response:
    """Send the step's email, rendered for the lead, to the logged-in user's own address over
    the configured SMTP server (marked [test]; its links count nothing)."""
    w = web(request)
    compiled = _scenario(w, scenario_id)
    back = f"/scenarios/{scenario_id}/preview?{urlencode({'step': step, 'lead': lead})}"
    to = w.store.access.email_of(who)
    row = _lead_named(w, lead)
    if to is None:
        request.session["flash"] = {
            "ok": False,
            "text": f"your user {who} has no email address: nurture users set {who} --email YOU@EXAMPLE",
        }
    elif row is None:
        request.session["flash"] = {"ok": False, "text": f"no lead {lead!r}"}
    else:
        try:
            built = compose_step(w.settings, compiled, step, row, w.clock.now(), to=to, test=True)
            asyncio.run(_deliver(w.settings, built.message))
            request.session["flash"] = {"ok": True, "text": f"test of {step} for {row.email} sent to {to}"}
        except NurtureError as exc:
            request.session["flash"] = {"ok": False, "text": str(exc)}
        except (OSError, aiosmtplib.SMTPException) as exc:
            where = f"{w.settings.smtp_host}:{w.settings.smtp_port}"
            request.session["flash"] = {"ok": False, "text": f"could not send through {where}: {exc}"}
    return RedirectResponse(back, status_code=303)


async def _deliver(settings: Settings, message: BuiltMessage) -> None:
    pool = SmtpPool(settings)
    try:
        await pool.send(message)
    finally:
        await pool.close()


@router.post("/scenarios/{scenario_id}/resume", dependencies=[Csrf])
def resume_scenario(request: Request, scenario_id: str, who: User) -> Response:
    """Resume a scenario the reputation guard paused: the emails it held back go out."""
    w = web(request)
    w.store.feedback.resume(scenario_id, who, w.clock.now())
    return RedirectResponse(f"/scenarios/{scenario_id}", status_code=303)


@router.post("/scenarios/{scenario_id}/parked/{lead_id}/resume", dependencies=[Csrf])
def resume_parked(request: Request, scenario_id: str, lead_id: int, who: User) -> Response:
    """Step a lead's parked enrolment in this scenario again (after the cause was fixed),
    as `nurture leads resume` does."""
    w = web(request)
    resumed = w.store.enrolments.resume(lead_id, scenario_id, who, w.clock.now())
    request.session["flash"] = (
        {"ok": True, "text": f"resumed at '{resumed[0].state}' (parked by: {resumed[0].exit_reason})"}
        if resumed
        else {"ok": False, "text": "that lead has no parked enrolment here (already resumed?)"}
    )
    return RedirectResponse(f"/scenarios/{scenario_id}#parked", status_code=303)


# Up to this many leads the scoring page replays the backtest by itself; above, on request.
BACKTEST_AUTO_LEADS = 20_000


@router.get("/scoring")
def scoring_page(
    request: Request,
    _: User,
    days: int = 90,
    threshold: str = "40:90:10",
    run: bool = False,
) -> Response:
    """How leads spread over grade × engagement, with the hot line drawn in; the backtest's
    precision and recall per threshold over the last `days`."""
    w = web(request)
    scoring = w.scoring
    rows = w.store.reports.score_spread()
    grades = sorted({r.grade for r in rows} | (set(scoring.model.grades) if scoring else set()) | {"D"})
    buckets = [f"{lo}–{hi - 1}" for lo, hi in itertools.pairwise(SCORE_BUCKETS)]
    buckets.append(f"{SCORE_BUCKETS[-1]}+")
    cells: Counter[tuple[str, int]] = Counter()
    stages: Counter[str] = Counter()
    for r in rows:
        index = sum(1 for lo in SCORE_BUCKETS[1:] if r.score_engagement >= lo)
        cells[(r.grade, index)] += r.leads
        stages[r.lifecycle_stage] += r.leads
    hot_line = {g: needed_for(scoring, g) for g in grades} if scoring else {}
    peak = max(cells.values(), default=1)
    backtest_rows: list[BacktestRow] = []
    backtest_error = None
    total = sum(r.leads for r in rows)
    ran = scoring is not None and (run or total <= BACKTEST_AUTO_LEADS)
    if scoring is not None and ran:
        until = w.clock.now()
        since = until - timedelta(days=max(1, min(days, 3650)))
        try:
            thresholds = parse_thresholds(threshold)
            replayed = StoredHistory(w.store, scoring, backtest_scope(since, until), since, until)
            backtest_rows = backtest(scoring, replayed, since, until, thresholds, parse_cuts(None, scoring))
        except NurtureError as exc:
            backtest_error = str(exc)
    return w.page(
        request,
        "scoring.html",
        grades=grades,
        buckets=buckets,
        lows=SCORE_BUCKETS,
        cells=cells,
        peak=peak,
        hot_line=hot_line,
        stages=sorted(stages.items()),
        total=total,
        days=days,
        threshold=threshold,
        ran=ran,
        backtest=backtest_rows,
        backtest_error=backtest_error,
        backtest_chart=Markup(backtest_chart(backtest_rows)),
    )


def login_redirect(target: str) -> Response:
    return RedirectResponse(f"/login?next={quote(target)}", status_code=303)
