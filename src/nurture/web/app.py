"""The HTTP face of nurture: tracking links, the ingest API, the dashboard, metrics."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from starlette.concurrency import run_in_threadpool
from starlette.middleware.sessions import SessionMiddleware

from nurture.bodylimit import BodyLimit
from nurture.clock import Clock, SystemClock
from nurture.config import Settings
from nurture.store import Store
from nurture.store.db import make_engine
from nurture.web import api, dashboard, ops, preferences, tracking, webhooks
from nurture.web.context import Web


def create_app(settings: Settings, clock: Clock | None = None, store: Store | None = None) -> FastAPI:
    clock = clock or SystemClock()
    store = store or Store(make_engine(settings.database_url), clock)
    app = FastAPI(
        title="nurture",
        summary="Ingest API: leads, behaviour events and sales feedback",
        version="1",
        openapi_url="/api/openapi.json",
        docs_url="/api/docs",
        redoc_url=None,
    )
    app.state.web = Web(settings, store, clock)
    app.state.webhook_verifiers = webhooks.verifiers(settings, clock)
    app.add_middleware(
        SessionMiddleware,
        secret_key=settings.secret_key,
        session_cookie="nurture_session",
        max_age=12 * 3600,
        same_site="lax",
        https_only=settings.base_url.startswith("https://"),
    )
    app.include_router(tracking.router)
    app.include_router(preferences.router)
    app.include_router(api.router)
    app.include_router(webhooks.router)
    app.include_router(ops.router)
    app.include_router(dashboard.router)

    @app.exception_handler(dashboard.LoginRequired)
    async def _login(_: Request, exc: dashboard.LoginRequired) -> Response:
        return dashboard.login_redirect(exc.target)

    @app.exception_handler(RequestValidationError)
    async def _invalid(_: Request, exc: RequestValidationError) -> Response:
        return JSONResponse({"detail": small_errors(exc.errors())}, status_code=422)

    # Outermost layers first in, last added: the body limit, then the API key, both before
    # anything reads or parses the body.
    app.add_middleware(ApiKeyGate)
    app.add_middleware(BodyLimit, max_bytes=settings.max_body_bytes)
    return app


MAX_ERRORS = 10


def small_errors(errors: Any) -> list[dict[str, Any]]:
    """Validation errors without the input they were about (which may be large, or private):
    where and what, for the first few."""
    found = [
        {"loc": list(e.get("loc", ())), "msg": str(e.get("msg", ""))[:200], "type": e.get("type", "")}
        for e in list(errors)[:MAX_ERRORS]
    ]
    if len(errors) > MAX_ERRORS:
        found.append({"loc": [], "msg": f"and {len(errors) - MAX_ERRORS} more problems", "type": "more"})
    return found


class ApiKeyGate:
    """401 for an ingest API call without a valid key before its body is read: an
    unauthenticated caller costs no parsing."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http" and scope["path"].startswith(api.router.prefix + "/"):
            headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers") or []}
            key = headers.get("x-api-key") or headers.get("authorization", "").removeprefix("Bearer ").strip()
            web = scope["app"].state.web
            name = await run_in_threadpool(web.store.access.check_key, key) if key else None
            if name is None:
                response = JSONResponse(
                    {"detail": "a valid API key is required"}, status_code=401, headers={"WWW-Authenticate": "Bearer"}
                )
                await response(scope, receive, send)
                return
            scope.setdefault("state", {})["api_client"] = name  # the route's own check reuses it
        await self.app(scope, receive, send)
