"""What every request handler needs: settings, the store, the clock, the project's files."""

from __future__ import annotations

import secrets
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fastapi import Request
from fastapi.responses import HTMLResponse
from fastapi.templating import Jinja2Templates

from nurture.clock import Clock
from nurture.config import Settings
from nurture.jobs.catalog import check_file
from nurture.scenario.compiler import CompiledScenario, compile_scenario
from nurture.scenario.loader import LoadedScenario, scenario_files
from nurture.scoring.engine import CompiledScoring
from nurture.store import Store
from nurture.throttle import ThrottlePolicy

PAGES = Path(__file__).resolve().parent / "templates"


@dataclass
class Web:
    settings: Settings
    store: Store
    clock: Clock
    templates: Jinja2Templates = field(init=False)
    _project: tuple[dict[str, CompiledScenario], CompiledScoring | None] | None = field(default=None, init=False)
    _seen: tuple[tuple[str, int, int], ...] = field(default=(), init=False)
    throttle: ThrottlePolicy = field(default_factory=ThrottlePolicy, init=False)  # counts: store.access

    def __post_init__(self) -> None:
        self.templates = Jinja2Templates(directory=str(PAGES))
        self.templates.env.filters["when"] = lambda d: d.strftime("%Y-%m-%d %H:%M") if d else "—"

    def project(self) -> tuple[dict[str, CompiledScenario], CompiledScoring | None]:
        """The valid scenarios (by id) and the scoring model in the scenarios folder, loaded
        again whenever a file there changed."""
        paths = scenario_files([self.settings.scenarios_dir])
        seen = tuple((str(p), p.stat().st_mtime_ns, p.stat().st_size) for p in paths)
        if self._project is None or seen != self._seen:
            self._seen = seen
            scenarios: dict[str, CompiledScenario] = {}
            scoring: CompiledScoring | None = None
            for path in paths:
                loaded, problems = check_file(path, self.settings.templates_dir)
                if problems or loaded is None:
                    continue
                if isinstance(loaded, CompiledScoring):
                    scoring = scoring or loaded
                elif isinstance(loaded, LoadedScenario):
                    compiled = compile_scenario(loaded)
                    scenarios.setdefault(compiled.id, compiled)
            self._project = (scenarios, scoring)
        return self._project

    @property
    def scoring(self) -> CompiledScoring | None:
        return self.project()[1]

    def page(self, request: Request, name: str, status_code: int = 200, **context: Any) -> HTMLResponse:
        return self.templates.TemplateResponse(
            request,
            name,
            {"user": request.session.get("user"), "csrf": csrf_token(request), **context},
            status_code=status_code,
        )


def web(request: Request) -> Web:
    found: Web = request.app.state.web
    return found


def csrf_token(request: Request) -> str:
    """The session's CSRF token (synchroniser pattern): made once per session, checked on every form."""
    token = request.session.get("csrf")
    if not isinstance(token, str):
        token = secrets.token_urlsafe(24)
        request.session["csrf"] = token
    return token
