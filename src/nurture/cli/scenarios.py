"""Commands on scenario files: validate, schema, graph, simulate."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import aiosmtplib
import typer
from pydantic import BaseModel

from nurture.cli.common import DatabaseOption, TemplatesOption, _load, _settings, _store, app, fail
from nurture.clock import SystemClock
from nurture.errors import Diagnostic
from nurture.jobs.catalog import check_file, find_scoring
from nurture.mail.footer import sender_identity_problems
from nurture.scenario.compiler import compile_scenario
from nurture.scenario.graph import to_dot, to_mermaid
from nurture.scenario.loader import LoadedScenario, scenario_files
from nurture.scenario.model import Scenario
from nurture.scenario.projectcheck import check_project
from nurture.scenario.projectfile import ProjectFile, load_project
from nurture.scenario.templates import TemplateStore
from nurture.scoring.engine import CompiledScoring
from nurture.scoring.model import ScoringFile
from nurture.timeutil import parse_duration
from nurture.vocabulary import EVENT_TYPES


@app.command()
def validate(
    paths: Annotated[list[Path] | None, typer.Argument(help="Scenario files or folders")] = None,
    templates: TemplatesOption = None,
) -> None:
    """Check scenario files; print every problem as file:line and exit non-zero on any.

    Campaign templates must show the sender's name and postal address (NURTURE_SENDER_NAME,
    NURTURE_SENDER_POSTAL_ADDRESS) and an unsubscribe link. Warnings (a template without an
    unsubscribe link) are printed and do not fail; a folder is also checked as a project
    (hand-offs nobody would receive, references between scenarios)."""
    files = scenario_files(paths or [Path("scenarios")])
    if not files:
        fail("no scenario files found")
    problems = 0
    settings = _settings()
    identity, base_url = settings.sender_identity, settings.base_url
    by_folder: dict[Path, tuple[list[LoadedScenario], list[bool]]] = {}
    for path in files:
        loaded, diagnostics = check_file(path, templates)
        if isinstance(loaded, LoadedScenario):
            diagnostics = diagnostics + sender_identity_problems(loaded, identity)
        for diagnostic in diagnostics:
            typer.echo(str(diagnostic))
        problems += len(diagnostics)
        scenarios, routing = by_folder.setdefault(path.parent, ([], []))
        if isinstance(loaded, LoadedScenario):
            scenarios.append(loaded)
            for warning in loaded.warnings:
                typer.echo(str(warning))
            for deliverability in _deliverability_warnings(
                loaded, base_url, identity.as_context() if identity else None
            ):
                typer.echo(f"warning: {deliverability}")
        elif isinstance(loaded, CompiledScoring):
            routing.append(True)
    for folder, (scenarios, routing) in by_folder.items():
        has_routing = bool(routing) or find_scoring(folder, templates) is not None
        for diagnostic in check_project(scenarios, has_routing, load_project(folder)):
            typer.echo(str(diagnostic))
            problems += 1
    if problems:
        fail(f"{problems} problem(s) in {len(files)} file(s)")
    typer.echo(f"ok: {len(files)} file(s) valid")


def _deliverability_warnings(loaded: LoadedScenario, base_url: str, sender: dict[str, Any] | None) -> list[Diagnostic]:
    """What would hurt the inbox placement of the scenario's emails (warnings, not errors)."""
    from nurture.mail.deliverability import check_template
    from nurture.scenario.model import SendEmail

    names = sorted({s.template for s in loaded.scenario.steps if isinstance(s, SendEmail)})
    return [
        w
        for name in names
        if loaded.templates.exists(name)
        for w in check_template(loaded.templates, name, base_url, sender)
    ]


@app.command()
def schema(
    scoring: Annotated[bool, typer.Option("--scoring", help="The scoring file's schema instead")] = False,
    project: Annotated[bool, typer.Option("--project", help="The project file's schema instead")] = False,
) -> None:
    """Print the JSON Schema of scenario files (or of the scoring or project file), for editors."""
    model: type[BaseModel] = ScoringFile if scoring else ProjectFile if project else Scenario
    document = model.model_json_schema(by_alias=True)
    document["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    document["title"] = "nurture scoring file" if scoring else "nurture project file" if project else "nurture scenario"
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
        typer.echo(to_mermaid(steps, compiled.scenario.name, compiled.scenario), nl=False)
    elif fmt == "dot":
        typer.echo(to_dot(steps, compiled.scenario.name, compiled.scenario), nl=False)
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
    show_email: Annotated[bool, typer.Option("--show-email", help="Print each email's rendered text")] = False,
) -> None:
    """Print the timeline a lead would live in a scenario, sending nothing: whether it enters
    (and why not), why each branch went where it went, each email, and who gets a hand-off."""
    from nurture.simulate import format_timeline, load_events_file, load_lead_file, parse_when
    from nurture.simulate import simulate as run_simulation

    compiled = compile_scenario(_load(path, templates))
    begin = SystemClock().now().replace(second=0, microsecond=0)
    if start:
        begin = parse_when(start, begin, "--start")
    horizon = parse_duration(until)
    lead_view, fixed_score = load_lead_file(lead)
    project_events = compiled.loaded.project.event_names() if compiled.loaded.project else EVENT_TYPES
    event_list = load_events_file(events, begin, project_events) if events else []
    typer.echo(
        f"{compiled.scenario.name} [{compiled.id} v{compiled.version}] · lead {lead_view.key} · "
        f"from {begin:%Y-%m-%d %H:%M} UTC for {until}"
    )
    scoring = None if fixed_score else find_scoring(path.parent)
    if scoring is not None:
        typer.echo("scores follow the events, as scoring.yaml computes them")
    timeline = run_simulation(
        compiled,
        lead_view,
        event_list,
        begin,
        horizon,
        scoring=scoring,
        show_email=show_email,
        sender=_settings().sender_identity,
    )
    typer.echo(format_timeline(timeline, compiled))


@app.command("send-test")
def send_test(
    template: Annotated[str, typer.Argument(help="Template name in email_templates/ (without .html)")],
    lead: Annotated[str, typer.Option("--lead", help="Email of an imported lead whose data fills the template")],
    to: Annotated[str, typer.Option("--to", help="Where the test email goes (your own address)")],
    subject: Annotated[str | None, typer.Option(help="Subject (default: '[test] TEMPLATE')")] = None,
    sender: Annotated[str | None, typer.Option("--from", help="Sender (default: the notify sender)")] = None,
    project: Annotated[
        Path | None, typer.Option("--project", help="Project folder with scenarios/ and email_templates/")
    ] = None,
    db: DatabaseOption = None,
) -> None:
    """Render one email for a lead, in the lead's language, with every link tracked, and send it
    to yourself over the configured SMTP server."""
    import asyncio
    import uuid

    from nurture.cli.ops import project_settings
    from nurture.mail.compose import Composer
    from nurture.mail.sender import SmtpPool
    from nurture.scenario.compiler import language_of

    settings = project_settings(project, db)
    store = _store(settings)
    row = store.leads.by_email(lead)
    if row is None:
        fail(f"no lead with email {lead} (import it first: nurture leads import FILE)")
    settings_of_project = load_project(settings.scenarios_dir).settings
    templates = TemplateStore(settings.templates_dir)
    variants = templates.variants(template)
    fields = dict(row._mapping)
    fields.update(fields.get("custom") or {})
    wanted = language_of(fields.get(settings_of_project.language_field))
    name = (
        variants.get(wanted)
        or variants.get(wanted.split("-")[0])
        or (template if templates.exists(template) else None)
        or variants.get(settings_of_project.default_language or "")
    )
    if name is None:
        fail(
            f"no template '{template}' in {settings.templates_dir}"
            + (f" for language {wanted!r} (variants: {', '.join(variants)})" if variants else "")
        )
    composer = Composer(
        settings.templates_dir,
        settings.base_url,
        settings.secret_key,
        settings.mail_domain,
        settings.unsubscribe_mailto,
        name_order=settings_of_project.name_order,
        sender=settings.sender_identity,
        scenario_utm={"test": dict(settings_of_project.utm)},
    )
    outbox_row = {
        "id": 0,
        "template": name,
        "subject": subject or f"[test] {template}",
        "scenario_id": "test",
        "sender": sender or settings.notify_sender,
        "idempotency_key": f"test-{uuid.uuid4().hex}",
        "reply_to": None,
    }
    recipient = {**row._mapping, "email": to}
    built = composer.compose_one(outbox_row, recipient, SystemClock().now())
    if isinstance(built, Exception):
        fail(f"the email does not render: {built}")

    async def deliver() -> None:
        pool = SmtpPool(settings)
        try:
            await pool.send(built)
        finally:
            await pool.close()

    try:
        asyncio.run(deliver())
    except (OSError, aiosmtplib.SMTPException) as exc:
        fail(f"could not send through {settings.smtp_host}:{settings.smtp_port}: {exc}")
    typer.echo(f"sent '{name}' for {lead} to {to} via {settings.smtp_host}:{settings.smtp_port}")
