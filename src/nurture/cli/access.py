"""Access: API keys for the ingest API and dashboard users."""

from __future__ import annotations

from typing import Annotated

import typer

from nurture.cli.common import DatabaseOption, _settings, _store, app

keys_app = typer.Typer(help="Keys for the ingest API (only a hash is stored).", no_args_is_help=True)


users_app = typer.Typer(help="Dashboard users.", no_args_is_help=True)
app.add_typer(keys_app, name="api-key")


app.add_typer(users_app, name="users")


@keys_app.command("create")
def api_key_create(name: str, db: DatabaseOption = None) -> None:
    """Create a key for the system `name`; the key is printed once and cannot be shown again."""

    key = _store(_settings(db)).access.create_key(name)
    typer.echo(key)


@keys_app.command("list")
def api_key_list(db: DatabaseOption = None) -> None:
    """Every key: name, first characters, created, last used, revoked."""

    for k in _store(_settings(db)).access.api_keys():
        used = f"{k.last_used_at:%Y-%m-%d %H:%M}" if k.last_used_at else "never"
        state = f"revoked {k.revoked_at:%Y-%m-%d %H:%M}" if k.revoked_at else "active"
        typer.echo(f"{k.name:<24} {k.prefix}…  created {k.created_at:%Y-%m-%d %H:%M}  last used {used}  {state}")


@keys_app.command("revoke")
def api_key_revoke(name: str, db: DatabaseOption = None) -> None:
    """Revoke a key at once: calls with it get 401 from then on."""

    _store(_settings(db)).access.revoke_key(name)
    typer.echo(f"revoked {name}")


@users_app.command("set")
def users_set(
    username: str,
    password: Annotated[
        str, typer.Option(prompt=True, hide_input=True, confirmation_prompt=True, envvar="NURTURE_USER_PASSWORD")
    ],
    name: Annotated[str, typer.Option(help="Display name")] = "",
    email: Annotated[str, typer.Option(help="Their email address (the dashboard's test emails go there)")] = "",
    db: DatabaseOption = None,
) -> None:
    """Create a dashboard user or set their password (prompted; or $NURTURE_USER_PASSWORD)."""

    created = _store(_settings(db)).access.set_user(username, password, name, email)
    typer.echo(f"{'created' if created else 'updated'} {username}")
