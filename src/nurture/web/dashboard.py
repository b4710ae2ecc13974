"""The dashboard: server-rendered pages for sales and marketing, behind a login.

Sessions are signed cookies (Starlette's SessionMiddleware); every form carries the
session's CSRF token, and a POST without the matching token is refused with 403.
"""

from __future__ import annotations

import hmac
import itertools
from collections import Counter
from typing import Annotated, Any
from urllib.parse import quote, urlsplit

from fastapi import APIRouter, Depends, Form, HTTPException, Request
from fastapi.responses import RedirectResponse, Response
from markupsafe import Markup
from sqlalchemy import func, or_, select

from nurture.access import authenticate
from nurture.analytics.report import scenario_report
from nurture.catalog import Catalog
from nurture.errors import NurtureError
from nurture.qualify import LC, SH, Qualifier, needed_for
from nurture.sales import ACT, feedback
from nurture.scenario.graph import edges, to_mermaid, to_svg
from nurture.store.repo import EV, L, S
from nurture.web.context import csrf_token, web

router = APIRouter(include_in_schema=False)
SCORE_BUCKETS = (0, 10, 20, 40, 60, 80, 100)


class LoginRequired(Exception):
    """Raised for a page that needs a logged-in user; answered with a redirect to /login."""

    def __init__(self, target: str) -> None:
        self.target = target


def user(request: Request) -> str:
    name = request.session.get("user")
    if not isinstance(name, str):
        raise LoginRequired(request.url.path + (f"?{request.url.query}" if request.url.query else ""))
    return name


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
    display = authenticate(w.store, username, password)
    if display is None:
        return w.page(request, "login.html", status_code=401, next=_safe_next(next), error="Wrong name or password.")
    request.session.clear()  # a fresh session (and CSRF token) on login: no session fixation
    request.session["user"] = username.strip()
    request.session["display"] = display
    return RedirectResponse(_safe_next(next), status_code=303)


@router.post("/logout", dependencies=[Csrf])
def logout(request: Request) -> Response:
    request.session.clear()
    return RedirectResponse("/login", status_code=303)


@router.get("/")
def home(_: User) -> Response:
    return RedirectResponse("/inbox", status_code=303)


# -- sales ------------------------------------------------------------------------------------


@router.get("/inbox")
def inbox(request: Request, _: User) -> Response:
    """Hot leads waiting for sales, newest promotion first, and what sales decided lately."""
    w = web(request)
    promoted = (
        select(LC.c.lead_id, func.max(LC.c.at).label("at")).where(LC.c.to_stage == "hot").group_by(LC.c.lead_id)
    ).subquery()
    with w.store.reading() as conn:
        hot = conn.execute(
            select(L, promoted.c.at.label("promoted_at"))
            .outerjoin(promoted, promoted.c.lead_id == L.c.id)
            .where(L.c.lifecycle_stage == "hot")
            .order_by(promoted.c.at.desc().nulls_last(), L.c.id)
            .limit(200)
        ).all()
        recent = conn.execute(
            select(LC, L.c.email)
            .join(L, L.c.id == LC.c.lead_id)
            .where(LC.c.to_stage.in_(("accepted", "rejected", "recycled", "customer")))
            .order_by(LC.c.at.desc(), LC.c.id.desc())
            .limit(20)
        ).all()
    return w.page(request, "inbox.html", hot=hot, recent=recent, flash=request.session.pop("flash", None))


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
    with w.store.reading() as conn:
        email = conn.execute(select(L.c.email).where(L.c.id == lead_id)).scalar()
    if email is None:
        raise HTTPException(404, "no such lead")
    try:
        old, new = feedback(w.store, email, action, reason, who, w.clock.now())
        request.session["flash"] = {"ok": True, "text": f"{email}: {old} → {new}"}
    except NurtureError as exc:
        request.session["flash"] = {"ok": False, "text": f"{email}: {exc}"}
    return RedirectResponse(_safe_next(back), status_code=303)


@router.get("/leads")
def leads(request: Request, _: User, q: str = "", stage: str = "") -> Response:
    w = web(request)
    query = select(L).order_by(L.c.updated_at.desc()).limit(100)
    if q.strip():
        pattern = f"%{q.strip().lower()}%"
        query = query.where(or_(L.c.email.like(pattern), func.lower(L.c.company).like(pattern)))
    if stage:
        query = query.where(L.c.lifecycle_stage == stage)
    with w.store.reading() as conn:
        rows = conn.execute(query).all()
    return w.page(request, "leads.html", leads=rows, q=q, stage=stage)


@router.get("/leads/{lead_id}")
def lead_page(request: Request, lead_id: int, _: User) -> Response:
    w = web(request)
    with w.store.reading() as conn:
        lead = conn.execute(select(L).where(L.c.id == lead_id)).first()
        if lead is None:
            raise HTTPException(404, "no such lead")
        sends = conn.execute(select(S).where(S.c.lead_id == lead_id).order_by(S.c.id)).all()
        events = conn.execute(select(EV).where(EV.c.lead_id == lead_id).order_by(EV.c.at.desc()).limit(300)).all()
        changes = conn.execute(select(LC).where(LC.c.lead_id == lead_id).order_by(LC.c.at)).all()
        history = conn.execute(select(SH).where(SH.c.lead_id == lead_id).order_by(SH.c.at)).all()
        activities = conn.execute(select(ACT).where(ACT.c.lead_id == lead_id).order_by(ACT.c.at)).all()
        scoring = w.scoring
        result = None
        if scoring is not None:
            catalog = Catalog(w.store, w.settings.scenarios_dir, w.settings.templates_dir)
            catalog.scoring = scoring
            result = Qualifier(w.store, catalog, w.clock).score_lead(scoring, conn, lead, w.clock.now())
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
    for e in events:
        detail = ", ".join(f"{k}={v}" for k, v in (e.props or {}).items() if k not in ("sent_at", "user_agent"))
        timeline.append({"at": e.at, "kind": e.type, "text": detail, "detail": ""})
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
        needed=needed_for(scoring, lead.grade) if scoring else None,
        actions=_actions(lead.lifecycle_stage),
        flash=request.session.pop("flash", None),
    )


def _actions(stage: str) -> list[str]:
    from nurture.sales import ALLOWED_FROM

    return [a for a in ("accept", "reject", "recycle", "won") if stage in ALLOWED_FROM[a]]


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
    return w.page(
        request,
        "scenario.html",
        compiled=compiled,
        report=report,
        outgoing=outgoing,
        mermaid=to_mermaid(compiled.scenario.steps, compiled.scenario.name),
        journey=Markup(to_svg(compiled.scenario.steps, {r.step: f"{r.entered} entered" for r in report.steps})),
    )


@router.get("/scoring")
def scoring_page(request: Request, _: User) -> Response:
    """How leads spread over grade × engagement, with the hot line drawn in."""
    w = web(request)
    scoring = w.scoring
    with w.store.reading() as conn:
        rows = conn.execute(
            select(L.c.grade, L.c.score_engagement, L.c.lifecycle_stage).where(
                L.c.unsubscribed.is_(False), L.c.bounced.is_(False)
            )
        ).all()
    grades = sorted({r.grade for r in rows} | (set(scoring.model.grades) if scoring else set()) | {"D"})
    buckets = [f"{lo}–{hi - 1}" for lo, hi in itertools.pairwise(SCORE_BUCKETS)]
    buckets.append(f"{SCORE_BUCKETS[-1]}+")
    cells: Counter[tuple[str, int]] = Counter()
    stages: Counter[str] = Counter()
    for r in rows:
        index = sum(1 for lo in SCORE_BUCKETS[1:] if r.score_engagement >= lo)
        cells[(r.grade, index)] += 1
        stages[r.lifecycle_stage] += 1
    hot_line = {g: needed_for(scoring, g) for g in grades} if scoring else {}
    peak = max(cells.values(), default=1)
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
        total=len(rows),
    )


def login_redirect(target: str) -> Response:
    return RedirectResponse(f"/login?next={quote(target)}", status_code=303)
