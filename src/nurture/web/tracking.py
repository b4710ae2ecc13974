"""The links inside emails: open pixel, click redirects and the hidden link (the unsubscribe
link is the preference centre, `web.preferences`).

Every link carries a signed token (`mail.tracking`). A token that fails verification gets
400 and counts nothing, so nobody can forge engagement, unsubscribe someone else or turn
nurture into an open redirect. Unsubscribing happens on POST only: the page's button and
RFC 8058 one-click both POST, while link scanners that prefetch the GET change nothing.

Opens and clicks record what tells a person from a machine (`scoring.bots`): the client
address (kept whole for `tracking_address_days`, then only its network), the user agent,
and the seconds since delivery. The hidden link (`/h/<token>`) is in every tracked email
where no person sees it; a request for it is recorded as a `honeypot` event, which marks
that send as scanned.
"""

from __future__ import annotations

import base64
from typing import Any
from urllib.parse import urlsplit

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from nurture.mail.tracking import verify
from nurture.scoring.bots import network_part
from nurture.store.sends import TrackedSend
from nurture.web.context import Web, web

router = APIRouter(include_in_schema=False)

PIXEL = base64.b64decode("R0lGODlhAQABAIAAAAAAAP///yH5BAEAAAAALAAAAAABAAEAAAIBRAA7")
NO_STORE = {"Cache-Control": "no-store, private", "Pragma": "no-cache"}


def _bad_link() -> HTMLResponse:
    return HTMLResponse(
        "<!doctype html><title>Broken link</title><p>This link is damaged or incomplete.", status_code=400
    )


def _send_of(w: Web, payload: dict[str, Any]) -> TrackedSend | None:
    """The send a token names, with its lead's email, or None when either is gone."""
    lead_id, send_id = payload.get("l"), payload.get("s")
    if not isinstance(lead_id, int) or not isinstance(send_id, int):
        return None
    return w.store.sends.tracked(send_id, lead_id)


def client_address(w: Web, request: Request) -> str:
    """The requesting client's address, as the server saw it.

    Behind a reverse proxy, uvicorn takes it from X-Forwarded-For when the proxy is trusted
    (`--forwarded-allow-ips`, or FORWARDED_ALLOW_IPS; 127.0.0.1 by default).
    """
    address = request.client.host if request.client is not None else ""
    return address if w.settings.tracking_address_days > 0 else network_part(address)


def _record(w: Web, send: TrackedSend, type_: str, request: Request, props: dict[str, Any]) -> None:
    now = w.clock.now()
    after = round((now - send.sent_at).total_seconds(), 1) if send.sent_at else None
    props = {
        "send": send.id,
        "scenario": send.scenario_id,
        "step": send.step,
        "sent_at": send.sent_at.isoformat() if send.sent_at else None,
        "seconds_after_delivery": after,
        "ip": client_address(w, request),
        "user_agent": request.headers.get("user-agent", "")[:300],
        **props,
    }
    with w.store.transaction() as conn:
        w.store.events.record(conn, send.lead_id, type_, now, props)


@router.get("/o/{token}.gif")
def open_pixel(token: str, request: Request) -> Response:
    w = web(request)
    payload = verify(w.settings.secret_key, token)
    if payload is None or "u" in payload:
        return _bad_link()
    send = _send_of(w, payload)
    if send is not None:
        _record(w, send, "open", request, {})
    return Response(PIXEL, media_type="image/gif", headers=NO_STORE)


@router.get("/c/{token:path}")
def click(token: str, request: Request) -> Response:
    w = web(request)
    payload = verify(w.settings.secret_key, token)
    url = payload.get("u") if payload else None
    if not isinstance(url, str) or urlsplit(url).scheme not in ("http", "https") or not urlsplit(url).netloc:
        return _bad_link()
    assert payload is not None
    send = _send_of(w, payload)
    if send is not None:
        _record(w, send, "click", request, {"link": str(payload.get("n") or ""), "url": url})
    return RedirectResponse(url, status_code=302, headers=NO_STORE)


@router.get("/h/{token}")
def hidden_link(token: str, request: Request) -> Response:
    """The link no person sees: whoever requests it is a scanner, and so is everything it did on that send."""
    w = web(request)
    payload = verify(w.settings.secret_key, token)
    if payload is None or "u" in payload:
        return _bad_link()
    send = _send_of(w, payload)
    if send is not None:
        _record(w, send, "honeypot", request, {"link": "honeypot"})
    return HTMLResponse("<!doctype html><title>Nothing here</title>", headers=NO_STORE)
