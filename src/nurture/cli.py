"""The `nurture` command line."""

from __future__ import annotations

import json
import sys
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from nurture.clock import SystemClock
from nurture.config import Settings
from nurture.errors import NurtureError, ValidationFailed
from nurture.project import check_file, find_scoring, find_scoring_file
from nurture.scenario.compiler import compile_scenario
from nurture.scenario.graph import to_dot, to_mermaid
from nurture.scenario.loader import load_scenario, scenario_files
from nurture.scenario.model import Scenario
from nurture.scoring.engine import CompiledScoring
from nurture.store.db import make_engine
from nurture.store.repo import Store
from nurture.timeutil import parse_duration

if TYPE_CHECKING:
    from rich.console import Console

    from nurture.daemon import Daemon, Totals

app = typer.Typer(help="nurture: B2B lead nurturing and qualification.", no_args_is_help=True)

TemplatesOption = Annotated[
    Path | None, typer.Option("--templates", help="email_templates folder (default: beside scenarios/)")
]


def fail(message: str, code: int = 1) -> None:
    typer.echo(message, err=True)
    raise typer.Exit(code)


@app.command()
def validate(
    paths: Annotated[list[Path] | None, typer.Argument(help="Scenario files or folders")] = None,
    templates: TemplatesOption = None,
) -> None:
    """Check scenario files; print every problem as file:line and exit non-zero on any."""
    files = scenario_files(paths or [Path("scenarios")])
    if not files:
        fail("no scenario files found")
    problems = 0
    for path in files:
        _, diagnostics = check_file(path, templates)
        for diagnostic in diagnostics:
            typer.echo(str(diagnostic))
        problems += len(diagnostics)
    if problems:
        fail(f"{problems} problem(s) in {len(files)} file(s)")
    typer.echo(f"ok: {len(files)} file(s) valid")


@app.command()
def schema() -> None:
    """Print the JSON Schema of scenario files (for editor autocompletion)."""
    document = Scenario.model_json_schema(by_alias=True)
    document["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    document["title"] = "nurture scenario"
    typer.echo(json.dumps(document, indent=2, ensure_ascii=False))


@app.command()
def graph(
    path: Path,
    fmt: Annotated[str, typer.Option("--format", "-f", help="mermaid or dot")] = "mermaid",
    templates: TemplatesOption = None,
) -> None:
    """Print the journey of a scenario as a Mermaid (default) or DOT diagram."""
    compiled = compile_scenario(_load(path, templates))
    steps = compiled.scenario.steps
    if fmt == "mermaid":
        typer.echo(to_mermaid(steps, compiled.scenario.name), nl=False)
    elif fmt == "dot":
        typer.echo(to_dot(steps, compiled.id), nl=False)
    else:
        fail(f"unknown format {fmt!r}: use mermaid or dot", 2)


@app.command()
def simulate(
    path: Annotated[Path, typer.Argument(help="Scenario file")],
    lead: Annotated[Path, typer.Option(help="Lead YAML file (email, fields, optional score)")],
    events: Annotated[Path | None, typer.Option(help="Events YAML file (list of type/at/...)")] = None,
    until: Annotated[str, typer.Option(help="How long to simulate, e.g. 30d")] = "30d",
    start: Annotated[str | None, typer.Option(help="Start instant (ISO 8601); default now")] = None,
    templates: TemplatesOption = None,
) -> None:
    """Print the timeline a lead would live in a scenario, sending nothing."""
    from nurture.simulate import format_timeline, load_events_file, load_lead_file, parse_when
    from nurture.simulate import simulate as run_simulation

    compiled = compile_scenario(_load(path, templates))
    begin = SystemClock().now().replace(second=0, microsecond=0)
    try:
        if start:
            begin = parse_when(start, begin, "--start")
        horizon = parse_duration(until)
        lead_view, fixed_score = load_lead_file(lead)
        event_list = load_events_file(events, begin) if events else []
    except NurtureError as exc:
        fail(str(exc))
    typer.echo(
        f"{compiled.scenario.name} [{compiled.id} v{compiled.version}] · lead {lead_view.key} · "
        f"from {begin:%Y-%m-%d %H:%M} UTC for {until}"
    )
    scoring = None if fixed_score else find_scoring(path.parent)
    if scoring is not None:
        typer.echo("scores follow the events, as scoring.yaml computes them")
    timeline = run_simulation(compiled, lead_view, event_list, begin, horizon, scoring=scoring)
    typer.echo(format_timeline(timeline, compiled))


db_app = typer.Typer(help="Database schema.", no_args_is_help=True)
leads_app = typer.Typer(help="Import and inspect leads.", no_args_is_help=True)
app.add_typer(db_app, name="db")
app.add_typer(leads_app, name="leads")

DatabaseOption = Annotated[
    str | None,
    typer.Option("--db", help="Database URL (default: $NURTURE_DATABASE_URL or sqlite:///nurture.db)"),
]


def _settings(db: str | None = None, **overrides: object) -> Settings:
    values = {k: v for k, v in overrides.items() if v is not None}
    if db:
        values["database_url"] = db
    return Settings(**values)  # type: ignore[arg-type]


def _store(settings: Settings) -> Store:
    return Store(make_engine(settings.database_url), SystemClock())


@db_app.command("upgrade")
def db_upgrade(db: DatabaseOption = None) -> None:
    """Create or migrate the database schema to the latest version."""
    from nurture.store.migrate import current_revision, upgrade

    engine = make_engine(_settings(db).database_url)
    upgrade(engine)
    typer.echo(f"database at revision {current_revision(engine)}")


@leads_app.command("import")
def leads_import(path: Path, db: DatabaseOption = None) -> None:
    """Upsert leads by email from CSV, JSON (array) or JSON Lines; report bad rows by line."""
    from nurture.leads import import_leads

    try:
        report = import_leads(_store(_settings(db)), path)
    except NurtureError as exc:
        fail(str(exc))
    for warning in report.warnings:
        typer.echo(f"warning: {warning}", err=True)
    for problem in report.problems:
        typer.echo(str(problem), err=True)
    typer.echo(f"{report.created} created, {report.updated} updated, {len(report.problems)} rejected")
    if report.problems:
        raise typer.Exit(1)


@leads_app.command("show")
def leads_show(email: str, db: DatabaseOption = None) -> None:
    """Show one lead: fields, score, enrolments and recent emails."""
    from nurture.store.repo import E, S

    store = _store(_settings(db))
    lead = store.lead_by_email(email)
    if lead is None:
        fail(f"no lead with email {email}")
        return
    data = dict(lead._mapping)
    custom = data.pop("custom") or {}
    for key, value in data.items():
        typer.echo(f"{key:>18}: {value}")
    for key, value in custom.items():
        typer.echo(f"{key:>18}: {value}  (custom)")
    from sqlalchemy import select

    with store.reading() as conn:
        typer.echo("enrolments:")
        for row in conn.execute(select(E).where(E.c.lead_id == lead.id).order_by(E.c.id)):
            typer.echo(
                f"  {row.scenario_id} v{row.scenario_version}: {row.status} at '{row.state}'"
                f"{f', due {row.due_at:%Y-%m-%d %H:%M} UTC' if row.due_at else ''}"
                f"{f' ({row.exit_reason})' if row.exit_reason else ''}"
            )
        typer.echo("emails:")
        for row in conn.execute(select(S).where(S.c.lead_id == lead.id).order_by(S.c.id)):
            when = row.sent_at or row.next_attempt_at
            typer.echo(
                f"  {when:%Y-%m-%d %H:%M} {row.status:<10} {row.scenario_id}/{row.step} '{row.template}'"
                f"{f' — {row.last_error}' if row.last_error else ''}"
            )


sales_app = typer.Typer(help="Sales feedback on leads.", no_args_is_help=True)
score_app = typer.Typer(help="Lead scores.", no_args_is_help=True)
events_app = typer.Typer(help="Record behaviour by hand.", no_args_is_help=True)
app.add_typer(sales_app, name="sales")
app.add_typer(score_app, name="score")
app.add_typer(events_app, name="events")

ReasonOption = Annotated[str, typer.Option("--reason", help="Why (kept with the lead's history)")]
ActorOption = Annotated[str, typer.Option("--by", help="Who gives the feedback")]


def _feedback(action: str, email: str, reason: str, actor: str, db: str | None) -> None:
    from nurture.sales import feedback

    try:
        old, new = feedback(_store(_settings(db)), email, action, reason, actor, SystemClock().now())
    except NurtureError as exc:
        fail(str(exc))
        return
    typer.echo(f"{email}: {old} → {new}")


@sales_app.command("accept")
def sales_accept(email: str, reason: ReasonOption, by: ActorOption = "sales", db: DatabaseOption = None) -> None:
    """Sales takes the lead on."""
    _feedback("accept", email, reason, by, db)


@sales_app.command("reject")
def sales_reject(email: str, reason: ReasonOption, by: ActorOption = "sales", db: DatabaseOption = None) -> None:
    """Sales says the lead is not qualified."""
    _feedback("reject", email, reason, by, db)


@sales_app.command("recycle")
def sales_recycle(email: str, reason: ReasonOption, by: ActorOption = "sales", db: DatabaseOption = None) -> None:
    """Not ready yet: back to nurture (the re-engagement scenario), engagement starts afresh."""
    _feedback("recycle", email, reason, by, db)


@sales_app.command("won")
def sales_won(email: str, reason: ReasonOption, by: ActorOption = "sales", db: DatabaseOption = None) -> None:
    """The lead became a customer."""
    _feedback("won", email, reason, by, db)


@leads_app.command("log")
def leads_log(
    email: str,
    kind: Annotated[str, typer.Option(help="call, meeting, survey, ...")],
    note: Annotated[str, typer.Option(help="What happened")] = "",
    by: ActorOption = "sales",
    db: DatabaseOption = None,
) -> None:
    """Log an activity (a call, a survey answer, ...) on a lead."""
    from nurture.sales import log_activity

    try:
        log_activity(_store(_settings(db)), email, kind, note, by, SystemClock().now())
    except NurtureError as exc:
        fail(str(exc))
    typer.echo(f"logged {kind} on {email}")


@events_app.command("add")
def events_add(
    email: str,
    event_type: Annotated[str, typer.Argument(metavar="TYPE")],
    prop: Annotated[list[str] | None, typer.Option("--prop", help="key=value, repeatable")] = None,
    at: Annotated[str | None, typer.Option(help="ISO 8601 instant; default now")] = None,
    db: DatabaseOption = None,
) -> None:
    """Record one event for a lead (the tracking API does this for real traffic)."""
    from nurture.scenario.expr import EVENT_TYPES
    from nurture.simulate import parse_when

    if event_type not in EVENT_TYPES:
        fail(f"unknown event type {event_type!r}; expected one of {', '.join(EVENT_TYPES)}")
    store = _store(_settings(db))
    lead = store.lead_by_email(email)
    if lead is None:
        fail(f"no lead with email {email}")
        return
    now = SystemClock().now()
    when = parse_when(at, now, "--at") if at else now
    props = dict(p.split("=", 1) for p in (prop or []) if "=" in p)
    with store.engine.begin() as conn:
        store.record_event(conn, lead.id, event_type, when, props)
    typer.echo(f"recorded {event_type} for {email} at {when:%Y-%m-%d %H:%M} UTC")


@score_app.command("explain")
def score_explain(
    email: str,
    db: DatabaseOption = None,
    scenarios: Annotated[Path, typer.Option(help="Folder with scoring.yaml")] = Path("scenarios"),
) -> None:
    """Why a lead's score is what it is: every rule, caps, decay, discounted bots, what is missing."""
    from nurture.catalog import Catalog
    from nurture.qualify import Qualifier

    settings = _settings(db)
    store = _store(settings)
    catalog = Catalog(store, scenarios, settings.templates_dir)
    catalog.scoring = find_scoring(scenarios, settings.templates_dir)
    if catalog.scoring is None:
        fail(f"no valid scoring file in {scenarios}/")
        return
    lead = store.lead_by_email(email)
    if lead is None:
        fail(f"no lead with email {email}")
        return
    now = SystemClock().now()
    with store.reading() as conn:
        result = Qualifier(store, catalog, SystemClock()).score_lead(catalog.scoring, conn, lead, now)
    hot = catalog.scoring.model.hot.engagement
    typer.echo(
        f"{email}: fit {result.fit} (grade {result.grade}), engagement {result.engagement}, "
        f"stage {lead.lifecycle_stage}; hot needs " + ", ".join(f"{g} ≥ {n}" for g, n in hot.items())
    )
    for kind in ("fit", "engagement", "account"):
        parts = [c for c in result.contributions if c.kind == kind]
        if parts:
            typer.echo(f"{kind}:")
        for c in sorted(parts, key=lambda c: -c.points):
            detail = f" from {c.events} event(s), {c.raw} before decay" if kind != "fit" else ""
            typer.echo(f"  {c.rule:<24} {c.points:>7.2f}{detail}{'; ' + c.note if c.note else ''}")
    if result.discounted:
        typer.echo("discounted as machine activity:")
        for d in result.discounted:
            typer.echo(f"  {d.at:%Y-%m-%d %H:%M} {d.type}: {d.reason}")
    typer.echo("hot: yes" if result.hot else "missing: " + "; ".join(result.missing or ["-"]))


ScenariosOption = Annotated[Path, typer.Option("--scenarios", help="Folder with scoring.yaml and scenarios")]


def _analysis(db: str | None, scenarios: Path) -> tuple[Store, Path, CompiledScoring]:
    settings = _settings(db)
    found = find_scoring_file(scenarios, settings.templates_dir)
    if found is None:
        fail(f"no valid scoring file in {scenarios}/ (nurture validate {scenarios}/ says why)")
        raise AssertionError  # unreachable: fail exits
    return _store(settings), found[0], found[1]


def _day(value: str, option: str) -> datetime:
    from nurture.simulate import parse_when

    return parse_when(value, SystemClock().now(), option)


def _console() -> Console:
    """Rich's console; when output is not a terminal, wide enough for the analysis tables."""
    import shutil

    from rich.console import Console

    return Console(width=max(shutil.get_terminal_size((120, 24)).columns, 120))


def _pct(value: float | None) -> str:
    return "—" if value is None else f"{value:.0%}"


@score_app.command("backtest")
def score_backtest(
    since: Annotated[str, typer.Option("--from", help="Start of the window (ISO date or instant)")],
    until: Annotated[str, typer.Option("--to", help="End of the window (ISO date or instant)")],
    threshold: Annotated[str, typer.Option(help="Engagement thresholds: START:STOP:STEP or a list")] = "40:90:10",
    grades: Annotated[str | None, typer.Option(help="Grade cuts, e.g. A,AB,ABC (default: A, A+B, A+B+C)")] = None,
    csv_out: Annotated[Path | None, typer.Option("--csv", help="Also write the table as CSV here")] = None,
    chart: Annotated[Path | None, typer.Option(help="Also draw precision and recall per threshold (SVG) here")] = None,
    db: DatabaseOption = None,
    scenarios: ScenariosOption = Path("scenarios"),
) -> None:
    """Replay stored events with the scoring model: promotions, precision, recall, time to promotion."""
    from rich.table import Table

    from nurture.analytics.backtest import CURRENT, backtest, parse_cuts, parse_thresholds, to_csv
    from nurture.analytics.chart import PALETTE, Series, line_chart
    from nurture.analytics.history import load_history

    store, _, scoring = _analysis(db, scenarios)
    start, end = _day(since, "--from"), _day(until, "--to")
    thresholds, cuts = parse_thresholds(threshold), parse_cuts(grades, scoring)
    rows = backtest(scoring, load_history(store, scoring, start, end), start, end, thresholds, cuts)
    table = Table(title=f"Backtest {start:%Y-%m-%d} – {end:%Y-%m-%d}: {rows[0].converting} converting lead(s)")
    for column in ("grades", "hot from", "promoted", "good", "missed", "precision", "recall", "days to hot"):
        table.add_column(column, justify="left" if column == "grades" else "right", no_wrap=True)
    for r in rows:
        table.add_row(
            r.cut,
            "as in file" if r.threshold is None else str(r.threshold),
            str(r.promoted),
            str(r.good),
            str(r.missed),
            _pct(r.precision),
            _pct(r.recall),
            "—" if r.median_days is None else f"{r.median_days:.1f}",
        )
    _console().print(table)
    if csv_out is not None:
        csv_out.write_text(to_csv(rows), encoding="utf-8")
        typer.echo(f"wrote {csv_out}")
    if chart is not None:
        series = []
        for index, cut in enumerate(cuts):
            mine = [r for r in rows if r.cut == cut.label and r.cut != CURRENT]
            colour = PALETTE[index % len(PALETTE)]
            series.append(
                Series(f"{cut.label} precision", [(r.threshold or 0, r.precision or 0) for r in mine], colour=colour)
            )
            series.append(
                Series(
                    f"{cut.label} recall", [(r.threshold or 0, r.recall or 0) for r in mine], dashed=True, colour=colour
                )
            )
        chart.write_text(line_chart("Precision (solid) and recall (dashed)", "engagement threshold", "share", series))
        typer.echo(f"wrote {chart}")


@score_app.command("near-miss")
def score_near_miss(
    engagement_gap: Annotated[int, typer.Option(help="At most this many engagement points short")] = 10,
    fit_gap: Annotated[int, typer.Option(help="At most this many fit points short of a grade that can be hot")] = 10,
    csv_out: Annotated[Path | None, typer.Option("--csv", help="Also write the list as CSV here")] = None,
    db: DatabaseOption = None,
    scenarios: ScenariosOption = Path("scenarios"),
) -> None:
    """Leads just below the hot line, with what each lacks, and what a lower line would add."""
    from rich.table import Table

    from nurture.analytics.history import load_history
    from nurture.analytics.nearmiss import near_misses, slices, to_csv

    store, _, scoring = _analysis(db, scenarios)
    now = SystemClock().now()
    misses = near_misses(scoring, load_history(store, scoring, now, now), now, engagement_gap, fit_gap)
    table = Table(title=f"{len(misses)} near miss(es)")
    for column in ("lead", "stage", "grade", "fit", "engagement", "lacks"):
        table.add_column(column, justify="right" if column in ("fit", "engagement") else "left")
    for m in misses:
        table.add_row(m.email, m.stage, m.grade, str(m.fit), str(m.engagement), "; ".join(m.lacks))
    console = _console()
    console.print(table)
    for grade, lowered, added in slices(misses):
        console.print(f"grade {grade} hot from {lowered}: +{added} lead(s)")
    if csv_out is not None:
        csv_out.write_text(to_csv(misses), encoding="utf-8")
        typer.echo(f"wrote {csv_out}")


@score_app.command("learn")
def score_learn(
    outcomes: Annotated[Path, typer.Option(help="CSV with email, converted (yes/no) and optionally at")],
    out: Annotated[Path | None, typer.Option(help="Where to write the proposed file (default: beside it)")] = None,
    db: DatabaseOption = None,
    scenarios: ScenariosOption = Path("scenarios"),
) -> None:
    """Fit rule weights to past conversions and propose a revised scoring file (never applied)."""
    from nurture.analytics.history import load_history
    from nurture.analytics.learn import learn, read_outcomes

    store, path, scoring = _analysis(db, scenarios)
    try:
        rows = read_outcomes(outcomes)
    except ValidationFailed as exc:
        fail(f"{exc}\nnothing learned")
        return
    now = SystemClock().now()
    proposal = learn(scoring, path.read_text(encoding="utf-8"), str(path), load_history(store, scoring), rows, now)
    for email in proposal.unknown:
        typer.echo(f"warning: {outcomes}: no lead with email {email}; left out", err=True)
    typer.echo(f"{proposal.examples} example(s), {proposal.positives} converted")
    typer.echo(f"{'rule':<24} {'weight':>8} {'points now':>10} {'proposed':>9}")
    for name, (now_points, new_points) in proposal.points.items():
        typer.echo(f"{name:<24} {proposal.weights[name]:>8.3f} {now_points:>10} {new_points:>9}")
    where = "on a held-out quarter" if proposal.held_out else "in-sample (too few examples to hold some out)"
    b, a = proposal.before, proposal.after
    typer.echo(
        f"expected, {where}: hot {b.hot} → {a.hot}, precision {_pct(b.precision)} → {_pct(a.precision)}, "
        f"recall {_pct(b.recall)} → {_pct(a.recall)}"
    )
    target = out or path.with_name(f"{path.stem}.proposed{path.suffix}.txt")
    target.write_text(proposal.text, encoding="utf-8")
    typer.echo(proposal.diff, nl=False)
    typer.echo(f"wrote {target}; review it, then copy it over {path} to adopt it")


@score_app.command("drift")
def score_drift(
    db: DatabaseOption = None,
    scenarios: ScenariosOption = Path("scenarios"),
) -> None:
    """Promoted leads sales rejected, grouped by the rules that made them hot."""
    from rich.table import Table

    from nurture.analytics.drift import drift
    from nurture.analytics.history import load_history

    store, _, scoring = _analysis(db, scenarios)
    report = drift(scoring, load_history(store, scoring))
    table = Table(title=f"{report.promotions} promotion(s), {report.rejected} rejected by sales")
    for column in ("rule", "kind", "promoted", "rejected", "accepted", "rejection rate", "top reasons"):
        table.add_column(
            column, justify="right" if column in ("promoted", "rejected", "accepted", "rejection rate") else "left"
        )
    for r in report.rules:
        reasons = ", ".join(f"{reason} ({n})" for reason, n in r.reasons.most_common(3))
        table.add_row(
            r.rule, r.kind, str(r.promoted), str(r.rejected), str(r.accepted), f"{r.rejection_rate:.0%}", reasons
        )
    _console().print(table)


@app.command()
def report(
    scenario: Annotated[str | None, typer.Argument(help="Scenario id (default: every scenario)")] = None,
    since: Annotated[str | None, typer.Option("--from", help="Only enrolments from this date")] = None,
    until: Annotated[str | None, typer.Option("--to", help="Only enrolments before this date")] = None,
    csv_out: Annotated[Path | None, typer.Option("--csv", help="Also write the step rows as CSV here")] = None,
    db: DatabaseOption = None,
    scenarios: ScenariosOption = Path("scenarios"),
) -> None:
    """Per scenario: funnel by step, email metrics (bots excluded), time to hot."""
    from rich.table import Table

    from nurture.analytics.report import report_csv, scenario_report
    from nurture.scenario.compiler import CompiledScenario
    from nurture.scenario.loader import LoadedScenario

    settings = _settings(db)
    store = _store(settings)
    found: dict[str, CompiledScenario] = {}
    scoring: CompiledScoring | None = None
    for path in scenario_files([scenarios]):
        loaded, problems = check_file(path, settings.templates_dir)
        if problems:
            continue
        if isinstance(loaded, LoadedScenario):
            compiled = compile_scenario(loaded)
            found[compiled.id] = compiled
        elif isinstance(loaded, CompiledScoring):
            scoring = loaded
    if scenario is not None and scenario not in found:
        fail(f"no scenario {scenario!r} in {scenarios}/; there are: {', '.join(sorted(found)) or 'none'}")
    start = _day(since, "--from") if since else None
    end = _day(until, "--to") if until else None
    console = _console()
    reports = []
    for sid in [scenario] if scenario else sorted(found):
        r = scenario_report(store, found[sid], scoring, start, end)
        reports.append(r)
        table = Table(title=f"{r.name} ({sid}): {r.enrolled} enrolled, {r.active} active, {r.hot} became hot")
        for column in ("step", "entered", "sent", "delivered", "opened", "clicked", "unsub", "bounced", "converted"):
            table.add_column(column, justify="left" if column == "step" else "right")
        for row in [*r.steps, r.totals()]:
            if row.is_email:
                table.add_row(
                    row.step,
                    str(row.entered) if row.step != "all emails" else "",
                    str(row.sent),
                    str(row.delivered),
                    f"{row.opened} ({_pct(row.rate('opened'))})",
                    f"{row.clicked} ({_pct(row.rate('clicked'))})",
                    str(row.unsubscribed),
                    str(row.bounced),
                    str(row.converted),
                )
            else:
                table.add_row(f"{row.step} [dim]({row.kind})[/dim]", str(row.entered), *[""] * 7)
        console.print(table)
        median = r.median_time_to_hot
        finished = ", ".join(f"{n} {reason}" for reason, n in sorted(r.finished.items())) or "none yet"
        console.print(
            f"time to hot: {'—' if median is None else f'median {median.total_seconds() / 86400:.1f} days'}"
            f" ({len(r.time_to_hot)} lead(s)); finished: {finished}\n"
        )
    if csv_out is not None:
        csv_out.write_text(report_csv(reports), encoding="utf-8")
        typer.echo(f"wrote {csv_out}")


@app.command()
def run(
    db: DatabaseOption = None,
    serve: Annotated[
        bool, typer.Option("--serve", help="Also serve HTTP (as `nurture serve`) in this process")
    ] = False,
    host: Annotated[str, typer.Option(help="With --serve: interface to listen on")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="With --serve: TCP port")] = 8025,
) -> None:
    """Run the daemon: enrol, advance and send on a schedule until SIGTERM/SIGINT."""
    import asyncio
    import logging

    from nurture.daemon import Daemon

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("apscheduler").setLevel(logging.WARNING)
    settings = _settings(db)
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

    info = _store(_settings(db)).status()
    console = Console()
    table = Table(title=f"Enrolments ({info['leads']} leads, {info['due_now']} due now)", title_justify="left")
    for column in ("scenario", "status", "state", "count"):
        table.add_column(column, justify="right" if column == "count" else "left")
    for scenario_id, state_status, state, count in info["enrolments"]:
        table.add_row(scenario_id, state_status, state, str(count))
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
    if settings.secret_key == "change-me":
        typer.echo("warning: NURTURE_SECRET_KEY is the default; set your own before going live", err=True)
    uvicorn.run(create_app(settings), host=host, port=port, log_level="info", proxy_headers=True)


keys_app = typer.Typer(help="Keys for the ingest API (only a hash is stored).", no_args_is_help=True)
users_app = typer.Typer(help="Dashboard users.", no_args_is_help=True)
app.add_typer(keys_app, name="api-key")
app.add_typer(users_app, name="users")


@keys_app.command("create")
def api_key_create(name: str, db: DatabaseOption = None) -> None:
    """Create a key for the system `name`; the key is printed once and cannot be shown again."""
    from nurture.access import create_api_key

    try:
        key = create_api_key(_store(_settings(db)), name)
    except NurtureError as exc:
        fail(str(exc))
        return
    typer.echo(key)


@keys_app.command("list")
def api_key_list(db: DatabaseOption = None) -> None:
    """Every key: name, first characters, created, last used, revoked."""
    from nurture.access import list_api_keys

    for k in list_api_keys(_store(_settings(db))):
        used = f"{k.last_used_at:%Y-%m-%d %H:%M}" if k.last_used_at else "never"
        state = f"revoked {k.revoked_at:%Y-%m-%d %H:%M}" if k.revoked_at else "active"
        typer.echo(f"{k.name:<24} {k.prefix}…  created {k.created_at:%Y-%m-%d %H:%M}  last used {used}  {state}")


@keys_app.command("revoke")
def api_key_revoke(name: str, db: DatabaseOption = None) -> None:
    """Revoke a key at once: calls with it get 401 from then on."""
    from nurture.access import revoke_api_key

    try:
        revoke_api_key(_store(_settings(db)), name)
    except NurtureError as exc:
        fail(str(exc))
    typer.echo(f"revoked {name}")


@users_app.command("set")
def users_set(
    username: str,
    password: Annotated[
        str, typer.Option(prompt=True, hide_input=True, confirmation_prompt=True, envvar="NURTURE_USER_PASSWORD")
    ],
    name: Annotated[str, typer.Option(help="Display name")] = "",
    db: DatabaseOption = None,
) -> None:
    """Create a dashboard user or set their password (prompted; or $NURTURE_USER_PASSWORD)."""
    from nurture.access import set_user

    try:
        created = set_user(_store(_settings(db)), username, password, name)
    except NurtureError as exc:
        fail(str(exc))
        return
    typer.echo(f"{'created' if created else 'updated'} {username}")


@app.command()
def demo(
    days: Annotated[int, typer.Option(help="Simulated days")] = 21,
    seconds_per_day: Annotated[float, typer.Option(help="Real seconds per simulated day")] = 1.0,
    workdir: Annotated[Path, typer.Option(help="Where the database and maildir go")] = Path("nurture-demo"),
) -> None:
    """Run nurture end to end on SQLite with a local SMTP capture and an accelerated clock."""
    from nurture.demo import run_demo

    run_demo(Path.cwd(), workdir, days=days, seconds_per_day=seconds_per_day)


def _load(path: Path, templates: Path | None):  # type: ignore[no-untyped-def]
    try:
        return load_scenario(path, templates)
    except ValidationFailed as exc:
        fail(str(exc))


def main() -> None:  # pragma: no cover - entry point
    try:
        app()
    except NurtureError as exc:
        typer.echo(f"error: {exc}", err=True)
        sys.exit(1)
