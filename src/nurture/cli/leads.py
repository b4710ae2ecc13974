"""Commands on leads and events: import, show, log, sales feedback, events."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from nurture.cli.common import ActorOption, DatabaseOption, ReasonOption, _settings, _store, app, fail
from nurture.clock import SystemClock

leads_app = typer.Typer(help="Import and inspect leads.", no_args_is_help=True)
app.add_typer(leads_app, name="leads")


@leads_app.command("import")
def leads_import(path: Path, db: DatabaseOption = None) -> None:
    """Upsert leads by email from CSV, JSON (array) or JSON Lines; report bad rows by line."""
    from nurture.leads import import_leads

    report = import_leads(_store(_settings(db)), path)
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

    store = _store(_settings(db))
    lead = store.leads.by_email(email)
    if lead is None:
        fail(f"no lead with email {email}")
    data = dict(lead._mapping)
    custom = data.pop("custom") or {}
    for key, value in data.items():
        typer.echo(f"{key:>18}: {value}")
    for key, value in custom.items():
        typer.echo(f"{key:>18}: {value}  (custom)")
    typer.echo("enrolments:")
    for row in store.enrolments.of_lead(lead.id):
        typer.echo(
            f"  {row.scenario_id} v{row.scenario_version}: {row.status} at '{row.state}'"
            f"{f', due {row.due_at:%Y-%m-%d %H:%M} UTC' if row.due_at else ''}"
            f"{f' ({row.exit_reason})' if row.exit_reason else ''}"
        )
    typer.echo("emails:")
    for row in store.sends.of_lead(lead.id):
        when = row.sent_at or row.next_attempt_at
        typer.echo(
            f"  {when:%Y-%m-%d %H:%M} {row.status:<10} {row.scenario_id}/{row.step} '{row.template}'"
            f"{f' — {row.last_error}' if row.last_error else ''}"
        )


sales_app = typer.Typer(help="Sales feedback on leads.", no_args_is_help=True)


events_app = typer.Typer(help="Record behaviour by hand.", no_args_is_help=True)
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
    """Record one event for a lead (the tracking API does this for real traffic)."""
    from nurture.simulate import parse_when
    from nurture.vocabulary import EVENT_TYPES

    if event_type not in EVENT_TYPES:
        fail(f"unknown event type {event_type!r}; expected one of {', '.join(EVENT_TYPES)}")
    store = _store(_settings(db))
    lead = store.leads.by_email(email)
    if lead is None:
        fail(f"no lead with email {email}")
    now = SystemClock().now()
    when = parse_when(at, now, "--at") if at else now
    props = dict(p.split("=", 1) for p in (prop or []) if "=" in p)
    with store.transaction() as conn:
        store.events.record(conn, lead.id, event_type, when, props)
    typer.echo(f"recorded {event_type} for {email} at {when:%Y-%m-%d %H:%M} UTC")
