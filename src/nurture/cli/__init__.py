"""The `nurture` command line, one module per part of the README:

    scenarios  validate, schema, graph, simulate
    leads      leads import/show/log, sales feedback, events add
    scoring    score explain/backtest/near-miss/learn/drift, report
    ops        init, db upgrade, run, status, serve, demo
    access     api-key, users
    deliverability  dkim keygen, bounces serve/fetch, suppressions import/export, scenario resume

`main` is the entry point of the installed `nurture` script and of `python -m nurture`,
and the one place where errors become messages and exit codes.
"""

from __future__ import annotations

import sys

import typer

from nurture.cli import access, deliverability, leads, ops, scenarios, scoring  # noqa: F401  (they register their commands)
from nurture.cli.common import app
from nurture.errors import NurtureError

# The order of `nurture --help`: the way through the README, not the order of the modules.
HELP_ORDER = (
    *("init", "validate", "schema", "graph", "simulate", "send-test", "report", "run", "status", "serve", "demo"),
    *("db", "leads", "lists", "sales", "score", "events", "api-key", "users"),
    *("dkim", "bounces", "suppressions", "scenario"),
)
app.registered_commands.sort(key=lambda c: HELP_ORDER.index(c.name or getattr(c.callback, "__name__", "")))
app.registered_groups.sort(key=lambda g: HELP_ORDER.index(g.name or ""))


def main() -> None:
    """Run the command line; a `NurtureError` anywhere is printed as its message, exit code 1."""
    try:
        app()
    except NurtureError as exc:
        typer.echo(str(exc), err=True)
        sys.exit(1)
    except KeyboardInterrupt:
        typer.echo("interrupted", err=True)
        sys.exit(130)


__all__ = ["app", "main"]
