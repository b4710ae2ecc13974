"""Operations: a new project, the database schema, the daemon, status, the HTTP server, the demo."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from nurture.cli.common import DatabaseOption, _settings, _store, app, fail
from nurture.clock import SystemClock
from nurture.config import DEFAULT_SECRET, Settings
from nurture.errors import NurtureError, ValidationFailed
from nurture.store import Store
from nurture.store.db import make_engine

if TYPE_CHECKING:
    from rich.console import Console

    from nurture.daemon import Daemon, Totals

ProjectOption = Annotated[
    Path | None,
    typer.Option("--project", help="Project folder with scenarios/ and email_templates/ (default: the current folder)"),
]


def project_settings(project: Path | None, db: str | None = None) -> Settings:
    """Settings with the scenarios and templates of `project` (else of the environment)."""
    if project is None:
        return _settings(db)
    if not (project / "scenarios").is_dir():
        raise NurtureError(f"{project}: no scenarios/ folder in this project")
    return _settings(db, scenarios_dir=project / "scenarios", templates_dir=project / "email_templates")


db_app = typer.Typer(help="Database schema.", no_args_is_help=True)
app.add_typer(db_app, name="db")


@db_app.command("upgrade")
def db_upgrade(db: DatabaseOption = None) -> None:
    """Create or migrate the database schema to the latest version."""
    from nurture.store.migrate import current_revision, upgrade

    engine = make_engine(_settings(db).database_url)
    upgrade(engine)
    typer.echo(f"database at revision {current_revision(engine)}")


def refuse_default_secret(settings: Settings) -> None:
    """The default secret key signs nothing a stranger can reach: refuse it for a site whose
    base URL is not this machine; warn about it on one that is."""
    if settings.default_secret_on_a_public_site:
        fail(
            f"NURTURE_SECRET_KEY is the default, and NURTURE_BASE_URL ({settings.base_url}) is not this machine: "
            "anyone could forge unsubscribe links and dashboard sessions. Set your own secret key, e.g. "
            "NURTURE_SECRET_KEY=$(python -c 'import secrets; print(secrets.token_urlsafe(32))')"
        )
    if settings.secret_key == DEFAULT_SECRET:
        typer.echo("warning: NURTURE_SECRET_KEY is the default; set your own before going live", err=True)


@app.command()
def run(
    db: DatabaseOption = None,
    serve: Annotated[
        bool, typer.Option("--serve", help="Also serve HTTP (as `nurture serve`) in this process")
    ] = False,
    host: Annotated[str, typer.Option(help="With --serve: interface to listen on")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="With --serve: TCP port")] = 8025,
    project: ProjectOption = None,
) -> None:
    """Run the daemon: enrol, advance and send on a schedule until SIGTERM/SIGINT."""
    import asyncio
    import logging

    from nurture.daemon import Daemon

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("apscheduler").setLevel(logging.WARNING)
    settings = project_settings(project, db)
    typer.echo(
        f"reading scenarios from {settings.scenarios_dir.resolve()}, templates from {settings.templates_dir.resolve()}"
    )
    refuse_default_secret(settings)
    daemon = Daemon(settings, SystemClock())
    try:
        daemon.load()
    except ValidationFailed as exc:
        fail(f"scenarios have problems; nothing started:\n{exc}")
    totals = asyncio.run(_run_with_web(daemon, host, port) if serve else daemon.run())
    typer.echo(f"stopped: {totals.enrolled} enrolled, {totals.advanced} steps, {totals.sent} sent")


async def _run_with_web(daemon: Daemon, host: str, port: int) -> Totals:
    """The daemon and the web app in one event loop; the daemon's signal handlers stop both."""
    import asyncio
    import contextlib

    import uvicorn

    from nurture.web.app import create_app

    class Embedded(uvicorn.Server):
        @contextlib.contextmanager
        def capture_signals(self):  # type: ignore[no-untyped-def]
            yield  # the daemon owns SIGTERM/SIGINT

    server = Embedded(uvicorn.Config(create_app(daemon.settings, daemon.clock, daemon.store), host=host, port=port))
    web = asyncio.create_task(server.serve())
    try:
        return await daemon.run()
    finally:
        server.should_exit = True
        await web


@app.command()
def status(db: DatabaseOption = None) -> None:
    """Enrolments per scenario and state, outbox backlog, recent failures."""
    from rich.console import Console
    from rich.table import Table

    settings = _settings(db)
    store = _store(settings)
    info = store.reports.status()
    console = Console()
    table = Table(title=f"Enrolments ({info['leads']} leads, {info['due_now']} due now)", title_justify="left")
    for column in ("scenario", "version", "status", "state", "count"):
        table.add_column(column, justify="right" if column == "count" else "left")
    for scenario_id, version, current, state_status, state, count in info["enrolments"]:
        table.add_row(scenario_id, version + ("" if current else " (old)"), state_status, state, str(count))
    console.print(table)
    sends = info["sends"]
    oldest = info["oldest_pending"]
    console.print(
        f"outbox: {sends.get('pending', 0)} pending ({info['retrying']} retrying), "
        f"{sends.get('sending', 0)} sending, {sends.get('sent', 0)} sent, "
        f"{sends.get('bounced', 0)} bounced, {sends.get('failed', 0)} failed, "
        f"{sends.get('suppressed', 0)} suppressed"
        + (f"; oldest pending due {oldest:%Y-%m-%d %H:%M} UTC" if oldest else "")
    )
    for row in info["failures"]:
        console.print(f"  {row.status}: {row.email} {row.step}: {row.last_error}")
    for worker, reason in info.get("paused", []):
        console.print(f"sending paused by {worker}: {reason}")
    parked, latest = store.enrolments.parked()
    if parked:
        console.print(
            f"parked: {parked} enrolment(s) whose step failed; fix the cause, then "
            "`nurture leads resume EMAIL [--scenario ID]`",
            soft_wrap=True,
            highlight=False,
        )
        for row in latest:
            console.print(f"  {row.email} {row.scenario_id}: {row.exit_reason}", soft_wrap=True, highlight=False)
    _why_waiting(store, settings, console)


def _why_waiting(store: Store, settings: Settings, console: Console) -> None:
    """The next leads in line and what each waits for, in its own time (a closed send window,
    a holiday, the frequency cap, a wait): why nothing is being sent right now."""
    from nurture.jobs.catalog import Catalog
    from nurture.runtime.engine import FrequencyCap, Position
    from nurture.runtime.waiting import waiting_reason
    from nurture.store.leads import lead_view

    waiting = store.reports.waiting(10)
    if not waiting:
        return
    catalog = Catalog(store, settings.scenarios_dir, settings.templates_dir)
    cap = FrequencyCap(settings.frequency_cap, settings.frequency_period)
    now = store.clock.now()
    console.print("next up (why nothing is sent for them yet):")
    for row, lead in waiting:
        try:
            compiled = catalog.get(row.scenario_id, row.scenario_version)
        except NurtureError as exc:
            console.print(f"  {lead.email} {row.scenario_id}: {exc}")
            continue
        with store.reading() as conn:
            sends = store.sends.recent(conn, [lead.id], now - cap.period).get(lead.id, [])
        position = Position(row.state, row.entered_at, row.due_at, row.seq, row.status)
        reason = waiting_reason(compiled, position, lead_view(lead._mapping), now, recent_sends=sends, cap=cap)
        console.print(f"  {lead.email} {row.scenario_id}: {reason}", soft_wrap=True, highlight=False)


@app.command()
def serve(
    host: Annotated[str, typer.Option(help="Interface to listen on")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="TCP port")] = 8025,
    db: DatabaseOption = None,
) -> None:
    """Serve tracking links, the ingest API (/api/docs), the dashboard, /metrics and /healthz."""
    import uvicorn

    from nurture.web.app import create_app

    settings = _settings(db)
    refuse_default_secret(settings)
    uvicorn.run(create_app(settings), host=host, port=port, log_level="info", proxy_headers=True)


@app.command()
def demo(
    days: Annotated[int, typer.Option(help="Simulated days")] = 21,
    seconds_per_day: Annotated[float, typer.Option(help="Real seconds per simulated day (pacing for the eye)")] = 1.0,
    workdir: Annotated[Path, typer.Option(help="Where the database and maildir go")] = Path("nurture-demo"),
    project: ProjectOption = None,
    leads: Annotated[
        Path | None, typer.Option(help="Leads to import (default: the project's leads.csv, else the sample leads)")
    ] = None,
    seed: Annotated[int, typer.Option(help="The audience model's seed: one seed, one story")] = 7,
    serve: Annotated[
        bool, typer.Option("--serve/--no-serve", help="At the end, serve the dashboard on the demo's database")
    ] = True,
    port: Annotated[int, typer.Option(help="The dashboard's port on 127.0.0.1 (the emails' links point there)")] = 8025,
) -> None:
    """Run nurture end to end on SQLite with a local SMTP capture, simulated time and a seeded
    audience, sales team and marketer (the sample scenarios, or your own with --project);
    then serve the dashboard on the result until Ctrl-C (--no-serve: stop after the summary)."""
    from rich.console import Console

    from nurture.demo import free_port, port_free, run_demo, serve_dashboard
    from nurture.scaffold import samples_root

    root = project or samples_root()
    if project is not None and not (project / "scenarios").is_dir():
        fail(f"{project}: no scenarios/ folder in this project")
    if leads is None and project is not None and (project / "leads.csv").is_file():
        leads = project / "leads.csv"
    console = Console()
    if serve and not port_free(port):
        taken, port = port, free_port()
        console.print(f"port {taken} is taken; the dashboard will serve on {port}")
    result = run_demo(root, workdir, days=days, seconds_per_day=seconds_per_day, leads=leads, seed=seed, port=port,
                      console=console)  # fmt: skip
    if serve:
        serve_dashboard(result, console)


@app.command()
def init(folder: Annotated[Path, typer.Argument(help="A new or empty folder for the project")]) -> None:
    """Start a project: sample scenarios, email templates and scoring file, example leads, commented settings."""
    from nurture.scaffold import init_project

    for path in init_project(folder):
        typer.echo(f"wrote {path}{'/' if path.is_dir() else ''}")
    typer.echo(
        f"next: cd {folder} && nurture validate scenarios/ && nurture db upgrade && nurture leads import leads.csv"
    )
