"""Commands on leads and events: import, show, log, sales feedback, events."""

from __future__ import annotations

import re
import sys
from datetime import datetime, timedelta
from pathlib import Path
from typing import Annotated, Any

import typer

from nurture.cli.common import ActorOption, DatabaseOption, ReasonOption, _settings, _store, app, fail
from nurture.clock import SystemClock
from nurture.config import Settings
from nurture.errors import NurtureError
from nurture.runtime.engine import LeadView
from nurture.store import Store
from nurture.store.leads import lead_view
from nurture.vocabulary import EnrolmentStatus

_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")

leads_app = typer.Typer(help="Import and inspect leads.", no_args_is_help=True)
app.add_typer(leads_app, name="leads")


@leads_app.command("import")
def leads_import(
    path: Path,
    db: DatabaseOption = None,
    encoding: Annotated[
        str | None, typer.Option(help="The file's encoding when not UTF-8, e.g. cp932 for Japanese Excel")
    ] = None,
) -> None:
    """Upsert leads by email from CSV, JSON (array) or JSON Lines; report bad rows by line."""
    from nurture.leads import import_leads

    store = _store(_settings(db))
    if sys.stderr.isatty():  # a progress bar for a person watching; nothing in a pipe or a log
        from rich.console import Console
        from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TimeRemainingColumn

        with Progress(
            TextColumn("importing"), BarColumn(), DownloadColumn(), TimeRemainingColumn(),
            console=Console(stderr=True), transient=True,
        ) as bar:  # fmt: skip
            task = bar.add_task("import", total=None)
            report = import_leads(
                store, path, encoding=encoding, progress=lambda done, size: bar.update(task, completed=done, total=size)
            )
    else:
        report = import_leads(store, path, encoding=encoding)
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

    settings = _settings(db)
    store = _store(settings)
    lead = store.leads.by_email(email)
    if lead is None:
        fail(f"no lead with email {email}")
    data = dict(lead._mapping)
    custom = data.pop("custom") or {}
    for key, value in data.items():
        typer.echo(f"{key:>18}: {value}")
    if not isinstance(custom, dict):  # data no import would store; shown as it is, to be fixed
        custom = {"custom": f"{custom!r} (not a mapping of field names to values)"}
    for key, value in custom.items():
        typer.echo(f"{key:>18}: {value}  (custom)")
    typer.echo("enrolments:")
    try:
        view: LeadView | None = lead_view(lead._mapping)
    except Exception:  # data no import would store (what parks a step): show the rest
        view = None
    now = SystemClock().now()
    for row in store.enrolments.of_lead(lead.id):
        explained = _waiting(store, settings, row, view, now) if view is not None else None
        due = ""
        if row.due_at and row.status == EnrolmentStatus.ACTIVE:
            due = f", due {row.due_at:%Y-%m-%d %H:%M} UTC" + (f" ({explained[0]})" if explained else "")
        typer.echo(
            f"  {row.scenario_id} v{row.scenario_version}: {row.status} at '{row.state}'{due}"
            f"{f' ({row.exit_reason})' if row.exit_reason else ''}"
        )
        if explained and row.status == EnrolmentStatus.ACTIVE:
            typer.echo(f"      {explained[1]}")
        if row.status == EnrolmentStatus.PARKED:
            typer.echo(f"      fix the cause, then: nurture leads resume {lead.email} --scenario {row.scenario_id}")
    typer.echo("emails:")
    for row in store.sends.of_lead(lead.id):
        when = row.sent_at or row.next_attempt_at
        typer.echo(
            f"  {when:%Y-%m-%d %H:%M} {row.status:<10} {row.scenario_id}/{row.step} '{row.template}'"
            f"{f' — {row.last_error}' if row.last_error else ''}"
        )


def _waiting(store: Store, settings: Settings, row: Any, view: LeadView, now: datetime) -> tuple[str, str] | None:
    """(due time in the lead's zone, why it waits) for an enrolment, when its scenario loads."""
    from nurture.jobs.catalog import Catalog
    from nurture.runtime.engine import FrequencyCap, Position
    from nurture.runtime.waiting import lead_zone, waiting_reason
    from nurture.timeutil import local_text, zone

    try:
        compiled = Catalog(store, settings.scenarios_dir, settings.templates_dir).get(
            row.scenario_id, row.scenario_version
        )
    except NurtureError:
        return None
    position = Position(row.state, row.entered_at, row.due_at, row.seq, row.status)
    cap = FrequencyCap(settings.frequency_cap, settings.frequency_period)
    with store.reading() as conn:
        sends = store.sends.recent(conn, [row.lead_id], now - settings.frequency_period).get(row.lead_id, [])
    local = local_text(row.due_at, zone(lead_zone(compiled, view))) if row.due_at else ""
    return local, waiting_reason(compiled, position, view, now, recent_sends=sends, cap=cap)


@leads_app.command("resume")
def leads_resume(
    email: str,
    scenario: Annotated[str | None, typer.Option("--scenario", help="Only this scenario's enrolment")] = None,
    by: Annotated[str, typer.Option("--by", help="Who resumes it (kept in the audit log)")] = "cli",
    db: DatabaseOption = None,
) -> None:
    """Step a lead's parked enrolments again (parked when a step raised), from where each stopped."""
    store = _store(_settings(db))
    lead = store.leads.by_email(email)
    if lead is None:
        fail(f"no lead with email {email}")
    resumed = store.enrolments.resume(lead.id, scenario, by, SystemClock().now())
    if not resumed:
        fail(f"{email} has no parked enrolment" + (f" in scenario '{scenario}'" if scenario else ""))
    for row in resumed:
        typer.echo(
            f"resumed {lead.email} in {row.scenario_id} v{row.scenario_version} at '{row.state}'"
            f" (parked by: {row.exit_reason})"
        )


sales_app = typer.Typer(help="Sales feedback on leads.", no_args_is_help=True)


events_app = typer.Typer(help="Record behaviour by hand; prune old events.", no_args_is_help=True)
app.add_typer(sales_app, name="sales")


app.add_typer(events_app, name="events")


def _feedback(action: str, email: str, reason: str, actor: str, db: str | None) -> None:
    from nurture.lifecycle import feedback

    old, new = feedback(_store(_settings(db)), email, action, reason, actor, SystemClock().now())
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
    from nurture.lifecycle import log_activity

    log_activity(_store(_settings(db)), email, kind, note, by, SystemClock().now())
    typer.echo(f"logged {kind} on {email}")


@events_app.command("add")
def events_add(
    email: str,
    event_type: Annotated[str, typer.Argument(metavar="TYPE")],
    prop: Annotated[list[str] | None, typer.Option("--prop", help="key=value, repeatable")] = None,
    at: Annotated[str | None, typer.Option(help="ISO 8601 instant; default now")] = None,
    db: DatabaseOption = None,
) -> None:
    """Record one event for a lead (the tracking API does this for real traffic). A custom
    event declared in the project file is stored as `custom` with its `name`, as the API takes it."""
    from nurture.hints import did_you_mean
    from nurture.scenario.projectfile import load_project
    from nurture.simulate import parse_when
    from nurture.vocabulary import EVENT_TYPES

    settings = _settings(db)
    declared = load_project(settings.scenarios_dir).settings.events
    props = dict(p.split("=", 1) for p in (prop or []) if "=" in p)
    stored_type = event_type
    if event_type in declared:
        stored_type, props = "custom", {**props, "name": event_type}
    elif event_type not in EVENT_TYPES:
        fail(f"unknown event type {event_type!r} — {did_you_mean(event_type, [*EVENT_TYPES, *declared])}")
    store = _store(settings)
    lead = store.leads.by_email(email)
    if lead is None:
        fail(f"no lead with email {email}")
    now = SystemClock().now()
    when = parse_when(at, now, "--at") if at else now
    with store.transaction() as conn:
        stored = store.events.record(conn, lead.id, stored_type, when, props)
        horizon = store.events.horizon(conn)
    if not stored:
        fail(
            f"not recorded: events dated before {horizon:%Y-%m-%d} are kept only as daily counts "
            "(event retention), which are final"
        )
    typer.echo(f"recorded {event_type} for {email} at {when:%Y-%m-%d %H:%M} UTC")


lists_app = typer.Typer(help="Static and suppression lists (declared in scenarios/project.yaml).", no_args_is_help=True)
app.add_typer(lists_app, name="lists")


@lists_app.command("import")
def lists_import(
    name: Annotated[str, typer.Argument(help="List name, as declared under 'lists:' in the project file")],
    path: Annotated[Path, typer.Argument(help="CSV with an 'email' column, or one address per line")],
    replace: Annotated[bool, typer.Option("--replace", help="Replace the list's members instead of adding")] = False,
    project: Annotated[
        Path | None, typer.Option("--project", help="Project folder with scenarios/ (default: ./scenarios)")
    ] = None,
    db: DatabaseOption = None,
) -> None:
    """Add the addresses of a file to a list; bad rows are reported by line and nothing is stored."""
    import csv
    import io

    from nurture.hints import did_you_mean
    from nurture.scenario.projectfile import load_project

    settings = _settings(db)
    folder = project / "scenarios" if project else settings.scenarios_dir
    declared = load_project(folder).settings.lists
    if name not in declared:
        fail(
            f"list '{name}' is not declared in {folder / 'project.yaml'} — "
            + (did_you_mean(name, declared) if declared else "add it under 'lists:' first")
        )
    try:
        text = path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        fail(f"{path}: cannot read ({exc})")
    lines = text.splitlines()
    header = [c.strip().lower() for c in next(csv.reader([lines[0]]))] if lines else []
    emails: list[str] = []
    problems = []
    if "email" in header:
        column = header.index("email")
        for number, row in enumerate(csv.reader(io.StringIO(text)), start=1):
            if number == 1 or not any(c.strip() for c in row):
                continue
            value = row[column].strip() if column < len(row) else ""
            if _EMAIL.match(value):
                emails.append(value)
            else:
                problems.append(f"{path}:{number}: not an email address: {value!r}")
    else:
        for number, line in enumerate(lines, start=1):
            value = line.strip()
            if not value or value.startswith("#"):
                continue
            if _EMAIL.match(value):
                emails.append(value)
            else:
                problems.append(f"{path}:{number}: not an email address: {value!r}")
    if problems:
        fail("\n".join(problems) + f"\nnothing imported ({len(problems)} bad row(s))")
    store = _store(settings)
    with store.transaction() as conn:
        removed = store.lists.clear(conn, name) if replace else 0
        added = store.lists.add(conn, name, emails, SystemClock().now())
    kind = "suppression list" if declared[name].suppress else "list"
    typer.echo(f"{kind} '{name}': {added} added" + (f" (replaced {removed})" if replace else ""))


@lists_app.command("show")
def lists_show(db: DatabaseOption = None) -> None:
    """Each list and how many addresses it holds."""
    sizes = _store(_settings(db)).lists.sizes()
    for list_name, size in sorted(sizes.items()):
        typer.echo(f"{list_name}: {size}")
    if not sizes:
        typer.echo("no lists imported yet")


def _topics(scenarios: Path) -> list[str]:
    """The topics the valid scenarios in `scenarios` mail under."""
    from nurture.jobs.catalog import check_file
    from nurture.scenario.loader import LoadedScenario, scenario_files

    found = set()
    for path in scenario_files([scenarios]) if scenarios.is_dir() else []:
        loaded, _ = check_file(path)
        if isinstance(loaded, LoadedScenario):
            found.add(loaded.scenario.topic)
    return sorted(found)


@leads_app.command("consent")
def leads_consent(email: str, db: DatabaseOption = None) -> None:
    """Every consent statement of a lead (when, how, what it said, from where) and, per topic,
    whether nurture may mail it now and why."""
    from nurture.leads import export_person

    settings = _settings(db)
    document = export_person(_store(settings), settings, email, _topics(settings.scenarios_dir))
    if document is None:
        fail(f"no lead with email {email}")
    for record in document.consent:
        origin = ", ".join(x for x in (record.ip, record.user_agent) if x)
        typer.echo(
            f"{record.at:%Y-%m-%d %H:%M:%S} UTC  {record.topic:<14} {record.status:<9} via {record.source}"
            f"{f' · {record.wording!r}' if record.wording else ''}{f' · from {origin}' if origin else ''}"
            f"{f' · {record.detail}' if record.detail else ''}"
        )
    if not document.consent:
        typer.echo("no consent statements")
    for state in document.consent_in_force:
        typer.echo(f"{state.topic}: {'may send' if state.may_send else 'no email'} — {state.reason}")


@leads_app.command("export")
def leads_export(
    email: Annotated[str | None, typer.Argument(help="The address whose data to export")] = None,
    schema: Annotated[bool, typer.Option("--schema", help="Print the JSON Schema of the export instead")] = False,
    db: DatabaseOption = None,
) -> None:
    """Everything held about one person as JSON (an access request under GDPR art. 15 / APPI art. 33)."""
    import json

    from nurture.consent.export import export_schema
    from nurture.leads import export_person

    if schema:
        typer.echo(json.dumps(export_schema(), indent=2, ensure_ascii=False))
        return
    if email is None:
        fail("give the address to export, or --schema")
    settings = _settings(db)
    document = export_person(_store(settings), settings, email, _topics(settings.scenarios_dir))
    if document is None:
        fail(f"nothing is held about {email}")
    typer.echo(document.model_dump_json(indent=2))


@leads_app.command("erase")
def leads_erase(
    email: str,
    by: Annotated[str, typer.Option("--by", help="Who asked for the erasure (kept in the erasure log)")],
    db: DatabaseOption = None,
) -> None:
    """Remove a person from every table (GDPR art. 17, APPI art. 35); only a keyed hash of the
    address stays on the suppression list, so it is never mailed again."""
    from nurture.leads import erase_person

    settings = _settings(db)
    done = erase_person(_store(settings), settings, email, by)
    deleted = ", ".join(f"{table} {count}" for table, count in sorted(done.deleted.items())) or "nothing"
    redacted = ", ".join(f"{table} {count}" for table, count in sorted(done.redacted.items())) or "none"
    typer.echo(f"erasure {done.log_id}: {'erased' if done.found else 'no lead had this address;'} rows deleted: "
               f"{deleted}; mentions removed: {redacted}; the address stays suppressed as a keyed hash")  # fmt: skip


@leads_app.command("erasures")
def leads_erasures(db: DatabaseOption = None) -> None:
    """The erasure log: when, on whose request, how many rows; nothing about the people erased."""
    for row in _store(_settings(db)).consents.erasures():
        typer.echo(f"{row['id']:>5}  {row['at']:%Y-%m-%d %H:%M:%S} UTC  by {row['actor']}  {row['rows']}")


@events_app.command("prune")
def events_prune(
    before: Annotated[
        str | None,
        typer.Option(
            "--before", help="Prune the whole months before this date (default: NURTURE_EVENT_RETENTION_DAYS ago)"
        ),
    ] = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Say what would be pruned; change nothing")] = False,
    db: DatabaseOption = None,
) -> None:
    """Roll old raw events into per-lead daily counts and drop them (whole months, one
    transaction each; on PostgreSQL by dropping their partitions). Scores, hand-offs and
    reports stay the same; a prune stopped between months resumes where it stopped."""
    from nurture.jobs.catalog import find_scoring
    from nurture.retention import prune_events
    from nurture.simulate import parse_when
    from nurture.store.retention import PruneResult

    settings = _settings(db)
    store = _store(settings)
    scoring = find_scoring(settings.scenarios_dir, settings.templates_dir)
    when = parse_when(before, SystemClock().now(), "--before") if before else None

    def month_done(month: PruneResult) -> None:
        typer.echo(f"pruned {month.events} events of {month.cutoff - timedelta(days=1):%Y-%m}")

    result = prune_events(store, settings, scoring, when, dry_run=dry_run, on_month=month_done)
    verb = "would prune" if result.dry_run else "pruned"
    typer.echo(f"{verb} {result.events} events before {result.cutoff:%Y-%m-%d}")
    if result.partitions:
        typer.echo(f"partitions {'to drop' if result.dry_run else 'dropped'}: {', '.join(result.partitions)}")
    if not result.dry_run:
        typer.echo(f"{result.rollups} daily rollup rows written")
