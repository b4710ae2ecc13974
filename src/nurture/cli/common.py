"""What every command shares: the app, options, settings, the store, and `fail`."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, NoReturn

import typer

from nurture.clock import SystemClock
from nurture.config import Settings
from nurture.scenario.loader import LoadedScenario, load_scenario
from nurture.store import Store
from nurture.store.db import make_engine

if TYPE_CHECKING:
    from rich.console import Console


app = typer.Typer(help="nurture: B2B lead nurturing and qualification.", no_args_is_help=True)


def _print_version(asked: bool) -> None:
    if asked:
        from importlib.metadata import version

        typer.echo(f"nurture {version('nurture')}")
        raise typer.Exit()


@app.callback()
def _options(
    version: Annotated[
        bool, typer.Option("--version", callback=_print_version, is_eager=True, help="Print the version and exit")
    ] = False,
) -> None:
    """nurture: B2B lead nurturing and qualification."""


TemplatesOption = Annotated[
    Path | None, typer.Option("--templates", help="email_templates folder (default: beside scenarios/)")
]


def fail(message: str, code: int = 1) -> NoReturn:
    """Print `message` to stderr and end the command with exit code `code`."""
    typer.echo(message, err=True)
    raise typer.Exit(code)


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


ReasonOption = Annotated[str, typer.Option("--reason", help="Why (kept with the lead's history)")]


ActorOption = Annotated[str, typer.Option("--by", help="Who gives the feedback")]


ScenariosOption = Annotated[Path, typer.Option("--scenarios", help="Folder with scoring.yaml and scenarios")]


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


def _load(path: Path, templates: Path | None) -> LoadedScenario:
    return load_scenario(path, templates)
