"""The HTTP face of nurture: tracking links, the ingest API, the dashboard, metrics."""

from __future__ import annotations

from fastapi import FastAPI, Request
from fastapi.responses import Response
from starlette.middleware.sessions import SessionMiddleware

from nurture.clock import Clock, SystemClock
from nurture.config import Settings
from nurture.store import Store
from nurture.store.db import make_engine
from nurture.web import api, dashboard, ops, tracking
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
    app.add_middleware(
        SessionMiddleware,
        secret_key=settings.secret_key,
        session_cookie="nurture_session",
        max_age=12 * 3600,
        same_site="lax",
        https_only=settings.base_url.startswith("https://"),
    )
    app.include_router(tracking.router)
    app.include_router(api.router)
    app.include_router(ops.router)
    app.include_router(dashboard.router)

    @app.exception_handler(dashboard.LoginRequired)
    async def _login(_: Request, exc: dashboard.LoginRequired) -> Response:
        return dashboard.login_redirect(exc.target)

    return app
