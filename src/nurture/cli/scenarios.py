"""Commands on scenario files: validate, schema, graph, simulate."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from nurture.cli.common import TemplatesOption, _load, _settings, app, fail
from nurture.clock import SystemClock
from nurture.jobs.catalog import check_file, find_scoring
from nurture.mail.footer import sender_identity_problems
from nurture.scenario.compiler import compile_scenario
from nurture.scenario.graph import to_dot, to_mermaid
from nurture.scenario.loader import LoadedScenario, scenario_files
from nurture.scenario.model import Scenario
from nurture.timeutil import parse_duration


@app.command()
def validate(
    paths: Annotated[list[Path] | None, typer.Argument(help="Scenario files or folders")] = None,
    templates: TemplatesOption = None,
) -> None:
    """Check scenario files; print every problem as file:line and exit non-zero on any.

    Campaign templates must show the sender's name and postal address (NURTURE_SENDER_NAME,
    NURTURE_SENDER_POSTAL_ADDRESS) and an unsubscribe link."""
    files = scenario_files(paths or [Path("scenarios")])
    if not files:
        fail("no scenario files found")
    problems = 0
    identity = _settings().sender_identity
    for path in files:
        loaded, diagnostics = check_file(path, templates)
        if isinstance(loaded, LoadedScenario):
            diagnostics = diagnostics + sender_identity_problems(loaded, identity)
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
    if start:
        begin = parse_when(start, begin, "--start")
    horizon = parse_duration(until)
    lead_view, fixed_score = load_lead_file(lead)
    event_list = load_events_file(events, begin) if events else []
    typer.echo(
        f"{compiled.scenario.name} [{compiled.id} v{compiled.version}] · lead {lead_view.key} · "
        f"from {begin:%Y-%m-%d %H:%M} UTC for {until}"
    )
    scoring = None if fixed_score else find_scoring(path.parent)
    if scoring is not None:
        typer.echo("scores follow the events, as scoring.yaml computes them")
    timeline = run_simulation(compiled, lead_view, event_list, begin, horizon, scoring=scoring)
    typer.echo(format_timeline(timeline, compiled))
