"""ESP event webhooks: `/webhooks/ses`, `/webhooks/sendgrid`, `/webhooks/mailgun`,
`/webhooks/postmark`. Each verifies the provider's signature before anything is read, and
answers 404 until its secret is configured; accepted events go to the same handling as
delivery reports."""

from __future__ import annotations

import asyncio
import urllib.request
from typing import Any

from fastapi import APIRouter, HTTPException, Request
from fastapi.responses import JSONResponse

from nurture.clock import Clock
from nurture.config import Settings
from nurture.feedback.events import FeedbackEvent
from nurture.feedback.webhooks import (
    MailgunVerifier,
    PostmarkVerifier,
    SendGridVerifier,
    SnsVerifier,
    WebhookRejected,
    mailgun_events,
    postmark_events,
    sendgrid_events,
    ses_events,
    sns_subscribe_url,
)
from nurture.jobs.feedback import FeedbackHandler
from nurture.web.context import Web, web

router = APIRouter(prefix="/webhooks", tags=["webhooks"], include_in_schema=False)
MAX_BODY = 5 * 1024 * 1024


def verifiers(settings: Settings, clock: Clock) -> dict[str, Any]:
    """One verifier per configured provider, kept on the app for its lifetime (Mailgun's
    remembers the tokens it has seen)."""
    found: dict[str, Any] = {}
    if settings.ses_topic_arns:
        found["ses"] = SnsVerifier(frozenset(settings.ses_topic_arns), clock=clock.now)
    if settings.sendgrid_public_key:
        found["sendgrid"] = SendGridVerifier(settings.sendgrid_public_key, clock=clock.now)
    if settings.mailgun_signing_key:
        found["mailgun"] = MailgunVerifier(settings.mailgun_signing_key, clock=clock.now)
    if settings.postmark_username and settings.postmark_password:
        found["postmark"] = PostmarkVerifier(settings.postmark_username, settings.postmark_password)
    return found


async def _body(request: Request) -> bytes:
    body = await request.body()
    if len(body) > MAX_BODY:
        raise HTTPException(413, "request too large")
    return body


def _verifier(request: Request, w: Web, provider: str) -> Any:
    verifier = request.app.state.webhook_verifiers.get(provider)
    if verifier is None:
        raise HTTPException(404, f"{provider} webhooks are not configured")
    return verifier


async def _handle(w: Web, events: list[FeedbackEvent]) -> JSONResponse:
    stats = await asyncio.to_thread(FeedbackHandler(w.store, w.settings, w.clock).handle, events)
    return JSONResponse({"events": stats.events, "duplicates": stats.duplicates, "suppressed": stats.suppressed})


def _confirm(url: str) -> None:
    """GET an SNS subscription's confirmation URL (already checked to be on SNS)."""
    with urllib.request.urlopen(url, timeout=10):
        pass


def _rejected(exc: WebhookRejected) -> HTTPException:
    return HTTPException(exc.status, str(exc))


@router.post("/ses")
async def ses(request: Request) -> Any:
    w = web(request)
    verifier = _verifier(request, w, "ses")
    body = await _body(request)
    try:
        message = await asyncio.to_thread(verifier.verify, body)
    except WebhookRejected as exc:
        raise _rejected(exc) from exc
    confirm = sns_subscribe_url(message)
    if confirm is not None:  # the subscription of one of our topics: confirm it, as SNS asks
        await asyncio.to_thread(lambda: urllib.request.urlopen(confirm, timeout=10).close())
        return JSONResponse({"confirmed": message.get("TopicArn")})
    return await _handle(w, ses_events(message))


@router.post("/sendgrid")
async def sendgrid(request: Request) -> Any:
    w = web(request)
    verifier = _verifier(request, w, "sendgrid")
    body = await _body(request)
    try:
        events = verifier.verify(body, dict(request.headers))
    except WebhookRejected as exc:
        raise _rejected(exc) from exc
    return await _handle(w, sendgrid_events(events))


@router.post("/mailgun")
async def mailgun(request: Request) -> Any:
    w = web(request)
    verifier = _verifier(request, w, "mailgun")
    body = await _body(request)
    try:
        data = verifier.verify(body)
    except WebhookRejected as exc:
        raise _rejected(exc) from exc
    return await _handle(w, mailgun_events(data))


@router.post("/postmark")
async def postmark(request: Request) -> Any:
    w = web(request)
    verifier = _verifier(request, w, "postmark")
    body = await _body(request)
    try:
        payload = verifier.verify(body, dict(request.headers))
    except WebhookRejected as exc:
        raise _rejected(exc) from exc
    return await _handle(w, postmark_events(payload))
