"""The preference centre and double opt-in pages.

`/u/<token>` is the link at the bottom of every email (and in its `List-Unsubscribe`
header): GET shows the person's topics, POST changes them. A mail client's RFC 8058
one-click POST (`List-Unsubscribe=One-Click`) leaves only the topic of the email it came
from; the page can leave one topic, every topic, or choose topics again. Nothing changes
on GET, so link scanners that prefetch pages change nothing. Every change is a consent
record with the address and user agent it came from.

`/consent/confirm/<token>` is the double opt-in link: GET shows a button, POST confirms.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, Response

from nurture.consent.model import (
    ALL_TOPICS,
    DEFAULT_TOPIC,
    ConsentRecord,
    ConsentSource,
    ConsentStatus,
    decide_send,
    regime_for,
)
from nurture.consent.pages import language_for, render_page, topic_label
from nurture.consent.tokens import TokenProblem, preferences_token, read_confirmation, read_preferences
from nurture.mail.tracking import verify
from nurture.web.context import Web, web

router = APIRouter(include_in_schema=False)
NO_STORE = {"Cache-Control": "no-store, private", "Pragma": "no-cache"}
PAGE_WORDING = "preference centre"


@dataclass(frozen=True)
class _Target:
    lead: Any
    send_id: int | None
    topic: str | None  # the topic of the email the link came from


def _html(w: Web, name: str, status: int = 200, lead: Any = None, **context: Any) -> HTMLResponse:
    lang = language_for(lead.country if lead is not None else None)
    body = render_page(name, sender=w.settings.sender_identity, lang=lang, **context)
    return HTMLResponse(body, status_code=status, headers=NO_STORE)


def _target(w: Web, token: str) -> _Target | None:
    """The lead a valid preference link names (None if forged or gone), and the email it came from."""
    lead_id = read_preferences(w.settings.secret_key, token)
    send_id: int | None = None
    if lead_id is None:
        payload = verify(w.settings.secret_key, token)
        if payload is None or "u" in payload or "k" in payload or not isinstance(payload.get("l"), int):
            return None
        lead_id = payload["l"]
        send_id = payload.get("s") if isinstance(payload.get("s"), int) else None
    lead = w.store.leads.by_id(lead_id)
    if lead is None:
        return None
    topic = None
    if send_id is not None:
        scenario_id = w.store.consents.scenario_of_send(send_id, lead_id)
        if scenario_id is not None:
            compiled = w.project()[0].get(scenario_id)
            topic = compiled.scenario.topic if compiled is not None else DEFAULT_TOPIC
    return _Target(lead, send_id, topic)


def _masked(email: str) -> str:
    name, _, domain = email.partition("@")
    return f"{name[:2]}{'•' * max(1, len(name) - 2)}@{domain}"


def _topics(w: Web, records: list[ConsentRecord], extra: str | None) -> list[str]:
    declared = [c.scenario.topic for c in w.project()[0].values()]
    held = [r.topic for r in records if r.topic != ALL_TOPICS]
    return sorted(dict.fromkeys([*declared, *held, *([extra] if extra else [])]))


def _preferences(w: Web, request: Request, token: str, target: _Target, message: str | None = None) -> HTMLResponse:
    lead = target.lead
    records = w.store.consents.of_lead(lead.id)
    regime = regime_for(lead.country, w.settings.consent_regime, w.settings.opt_in_countries)
    topics = [
        {
            "name": t,
            "label": topic_label(t),
            "subscribed": not lead.unsubscribed and decide_send(records, t, regime).send,
        }
        for t in _topics(w, records, target.topic)
    ]
    from_topic = {"name": target.topic, "label": topic_label(target.topic)} if target.topic else None
    return _html(
        w,
        "preferences",
        lead=lead,
        email=_masked(lead.email),
        topics=topics,
        from_topic=from_topic,
        everything_stopped=bool(lead.unsubscribed),
        message=message,
        action=str(request.url.path),
    )


def _origin(request: Request) -> tuple[str | None, str | None]:
    host = request.client.host if request.client else None
    return host, (request.headers.get("user-agent") or "")[:500] or None


@router.get("/u/{token}")
def preferences_page(token: str, request: Request) -> Response:
    w = web(request)
    target = _target(w, token)
    if target is None:
        return _html(w, "link_problem", 400, reason="forged")
    return _preferences(w, request, token, target)


@router.post("/u/{token}")
async def change_preferences(token: str, request: Request) -> Response:
    """The page's forms and RFC 8058 one-click (`List-Unsubscribe=One-Click`); idempotent."""
    w = web(request)
    target = _target(w, token)
    if target is None:
        return _html(w, "link_problem", 400, reason="forged")
    form = await request.form()
    ip, agent = _origin(request)
    now = w.clock.now()
    lead = target.lead
    detail = f"send {target.send_id}" if target.send_id is not None else None

    def record(topic: str, status: ConsentStatus, source: ConsentSource) -> ConsentRecord:
        return ConsentRecord(topic, status, source, now, PAGE_WORDING, ip, agent, detail)

    action = str(form.get("action") or "")
    one_click = form.get("List-Unsubscribe") == "One-Click"
    if one_click or action == "leave":
        topic = str(form.get("topic") or target.topic or "") if not one_click else (target.topic or "")
        source = ConsentSource.ONE_CLICK if one_click else ConsentSource.PREFERENCES
        if topic and topic != ALL_TOPICS:
            w.store.consents.leave_topic(lead.id, record(topic, ConsentStatus.WITHDRAWN, source))
            message = f"You will receive no more emails about {topic_label(topic)}."
        else:  # a link without a topic (or an old one): stop everything
            w.store.consents.leave_all(
                lead.id, lead.email, record(ALL_TOPICS, ConsentStatus.WITHDRAWN, source), target.send_id
            )
            message = "You will receive no more emails from us."
    elif action == "save":
        chosen = {str(t) for t in form.getlist("topic")}
        records = w.store.consents.of_lead(lead.id)
        regime = regime_for(lead.country, w.settings.consent_regime, w.settings.opt_in_countries)
        changes = []
        for topic in _topics(w, records, target.topic):
            subscribed = not lead.unsubscribed and decide_send(records, topic, regime).send
            if topic in chosen and not subscribed:
                changes.append(record(topic, ConsentStatus.GRANTED, ConsentSource.PREFERENCES))
            elif topic not in chosen and subscribed:
                changes.append(record(topic, ConsentStatus.WITHDRAWN, ConsentSource.PREFERENCES))
        w.store.consents.choose(lead.id, lead.email, changes, resubscribe=bool(chosen))
        message = "Your choices are saved."
    else:  # "leave everything", and any other POST to the link
        w.store.consents.leave_all(
            lead.id, lead.email, record(ALL_TOPICS, ConsentStatus.WITHDRAWN, ConsentSource.PREFERENCES), target.send_id
        )
        message = "You will receive no more emails from us."
    fresh = w.store.leads.by_id(lead.id)
    return _preferences(w, request, token, _Target(fresh, target.send_id, target.topic), message)


@router.get("/consent/confirm/{token}")
def confirm_page(token: str, request: Request) -> Response:
    w = web(request)
    try:
        wanted = read_confirmation(w.settings.secret_key, token, w.clock.now())
    except TokenProblem as problem:
        return _html(w, "link_problem", 410 if problem.reason == "expired" else 400, reason=problem.reason)
    lead = w.store.leads.by_id(wanted.lead_id)
    if lead is None:
        return _html(w, "link_problem", 400, reason="forged")
    return _html(
        w, "confirm", lead=lead, email=_masked(lead.email), topic_label=topic_label(wanted.topic),
        action=str(request.url.path),
    )  # fmt: skip


@router.post("/consent/confirm/{token}")
def confirm(token: str, request: Request) -> Response:
    """Record the confirmed grant with where it came from; confirming twice records it once."""
    w = web(request)
    now = w.clock.now()
    try:
        wanted = read_confirmation(w.settings.secret_key, token, now)
    except TokenProblem as problem:
        return _html(w, "link_problem", 410 if problem.reason == "expired" else 400, reason=problem.reason)
    lead = w.store.leads.by_id(wanted.lead_id)
    if lead is None:
        return _html(w, "link_problem", 400, reason="forged")
    ip, agent = _origin(request)
    record = ConsentRecord(
        wanted.topic, ConsentStatus.GRANTED, ConsentSource.DOUBLE_OPT_IN, now, "double opt-in link", ip, agent
    )
    w.store.consents.confirm(lead.id, record)
    prefs = f"{w.settings.base_url.rstrip('/')}/u/{preferences_token(w.settings.secret_key, lead.id)}"
    return _html(
        w, "confirmed", lead=lead, email=_masked(lead.email), topic_label=topic_label(wanted.topic),
        preferences_url=prefs,
    )  # fmt: skip
