"""Deliverability: DKIM keys and DNS records, bounce intake, suppression list, paused scenarios."""

from __future__ import annotations

import asyncio
import signal
import sys
from pathlib import Path
from typing import Annotated

import typer

from nurture.cli.common import DatabaseOption, _settings, _store, app, fail
from nurture.clock import SystemClock
from nurture.config import Settings
from nurture.errors import NurtureError
from nurture.feedback.events import FeedbackEvent
from nurture.feedback.intake import BounceHandler, ImapMailbox, fetch_reports
from nurture.feedback.reports import ReportReader
from nurture.feedback.suppressions import read_csv, write_csv
from nurture.jobs.feedback import FeedbackHandler
from nurture.mail.dkim import DkimKey, dns_records, write_key
from nurture.mail.verp import return_path_from_settings

dkim_app = typer.Typer(help="DKIM signing keys and the DNS records to publish.", no_args_is_help=True)
bounces_app = typer.Typer(help="Delivery reports and complaints that arrive after sending.", no_args_is_help=True)
suppressions_app = typer.Typer(help="The suppression list: addresses never mailed.", no_args_is_help=True)
scenario_app = typer.Typer(help="Scenarios paused by the reputation guard.", no_args_is_help=True)
app.add_typer(dkim_app, name="dkim")
app.add_typer(bounces_app, name="bounces")
app.add_typer(suppressions_app, name="suppressions")
app.add_typer(scenario_app, name="scenario")


@dkim_app.command("keygen")
def dkim_keygen(
    domain: Annotated[str, typer.Option(help="The signing domain (d=), usually the From domain")],
    selector: Annotated[str, typer.Option(help="The selector (s=), e.g. s2026")],
    key_file: Annotated[Path, typer.Option("--key-file", help="Where to write the private key (PEM)")],
    algorithm: Annotated[
        str,
        typer.Option(
            help="rsa (every receiver verifies it; about 0.3 ms of CPU per email) or ed25519 (a quarter of "
            "that, but not every receiver verifies it yet, so it goes beside an RSA key, not instead of it)"
        ),
    ] = "rsa",
    bits: Annotated[int, typer.Option(help="RSA key size")] = 2048,
    bounce_domain: Annotated[str | None, typer.Option(help="Return-path domain for the SPF record")] = None,
) -> None:
    """Write a new private key and print the DNS records to publish (DKIM, SPF, DMARC)."""
    key = write_key(key_file, algorithm, bits) if not key_file.exists() else DkimKey.load(key_file)
    typer.echo(f"; private key: {key_file} ({key.algorithm})")
    typer.echo(
        f"; settings: NURTURE_DKIM_DOMAIN={domain} NURTURE_DKIM_SELECTOR={selector} NURTURE_DKIM_KEY_FILE={key_file}"
    )
    for record in dns_records(domain, selector, key, return_path_domain=bounce_domain):
        typer.echo(record)
    if key.algorithm == "ed25519-sha256":
        typer.echo(
            "; not every receiver verifies Ed25519 (RFC 8463) yet; to them an Ed25519-only email is unsigned."
            " Sign with an RSA key beside it: nurture dkim keygen --selector <another selector> ...,"
            " then list both: NURTURE_DKIM_SELECTOR=<this>,<that> NURTURE_DKIM_KEY_FILE=<this file>,<that file>"
        )


def _handler(settings: Settings) -> tuple[ReportReader, FeedbackHandler]:
    store = _store(settings)
    return ReportReader(return_path_from_settings(settings)), FeedbackHandler(store, settings, SystemClock())


@bounces_app.command("serve")
def bounces_serve(
    host: Annotated[
        str | None, typer.Option(help="Address to listen on (default: $NURTURE_BOUNCE_LISTEN_HOST)")
    ] = None,
    port: Annotated[int | None, typer.Option(help="Port (default: $NURTURE_BOUNCE_LISTEN_PORT)")] = None,
    db: DatabaseOption = None,
) -> None:
    """Take delivery reports and complaints by SMTP for the bounce domain (point its MX here)."""
    from aiosmtpd.controller import Controller

    settings = _settings(db)
    if not settings.bounce_domain:
        fail("set NURTURE_BOUNCE_DOMAIN first: reports are accepted for its addresses only")
    reader, handler = _handler(settings)

    def sink(events: list[FeedbackEvent], report: bytes) -> None:
        stats = handler.handle(events, report)
        typer.echo(
            f"report: {stats.events} event(s), {stats.suppressed} suppressed, {stats.unverified} unverified"
            + (f", paused {', '.join(stats.paused)}" if stats.paused else "")
        )

    smtp = BounceHandler(reader, sink, [settings.bounce_domain])
    listen_host, listen_port = host or settings.bounce_listen_host, port or settings.bounce_listen_port
    controller = Controller(smtp, hostname=listen_host, port=listen_port)
    controller.start()
    typer.echo(f"listening for reports to *@{settings.bounce_domain} on {listen_host}:{listen_port}")

    async def wait() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        await stop.wait()

    try:
        asyncio.run(wait())
    finally:
        controller.stop()
    typer.echo("stopped")


@bounces_app.command("fetch")
def bounces_fetch(
    limit: Annotated[int, typer.Option(help="Read at most this many messages")] = 500,
    db: DatabaseOption = None,
) -> None:
    """Read the unread messages of the bounce mailbox (IMAP) once and act on their reports."""
    settings = _settings(db)
    if not settings.bounce_imap_host or not settings.bounce_imap_username:
        fail("set NURTURE_BOUNCE_IMAP_HOST, NURTURE_BOUNCE_IMAP_USERNAME and NURTURE_BOUNCE_IMAP_PASSWORD first")
    mailbox = ImapMailbox(
        settings.bounce_imap_host,
        settings.bounce_imap_port,
        settings.bounce_imap_username,
        settings.bounce_imap_password or "",
        settings.bounce_imap_folder,
        tls=settings.bounce_imap_tls,
        starttls=settings.bounce_imap_starttls,
        processed_folder=settings.bounce_imap_processed_folder,
    )
    reader, handler = _handler(settings)
    totals = {"suppressed": 0, "unverified": 0}

    def sink(events: list[FeedbackEvent], report: bytes) -> None:
        stats = handler.handle(events, report)
        totals["suppressed"] += stats.suppressed
        totals["unverified"] += stats.unverified

    stats = fetch_reports(mailbox, reader, sink, limit)
    typer.echo(
        f"{stats.messages} message(s): {stats.events} event(s), {stats.not_reports} not reports, "
        f"{totals['suppressed']} suppressed, {totals['unverified']} unverified, {stats.failed} failed"
    )
    if stats.failed:
        sys.exit(1)


@suppressions_app.command("import")
def suppressions_import(
    path: Annotated[Path, typer.Argument(help="CSV with an email column; reason and created_at optional")],
    db: DatabaseOption = None,
) -> None:
    """Add the addresses of a CSV file (e.g. another tool's export) to the suppression list."""
    try:
        text = path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        raise NurtureError(f"{path}: cannot read it as UTF-8 text: {exc}") from exc
    rows = read_csv(text, str(path))
    store = _store(_settings(db))
    added = store.feedback.import_suppressions(rows, store.clock.now())
    typer.echo(f"{added} added, {len(rows) - added} already suppressed")


@suppressions_app.command("export")
def suppressions_export(
    out: Annotated[Path | None, typer.Option("--out", help="Write here instead of standard output")] = None,
    db: DatabaseOption = None,
) -> None:
    """The whole suppression list as CSV (email, reason, created_at, source)."""
    text = write_csv(_store(_settings(db)).feedback.suppressions())
    if out is None:
        typer.echo(text, nl=False)
    else:
        out.write_text(text, encoding="utf-8")


@scenario_app.command("resume")
def scenario_resume(
    scenario_id: Annotated[str, typer.Argument(help="The paused scenario's id")],
    by: Annotated[str, typer.Option("--by", help="Who resumes it")] = "cli",
    db: DatabaseOption = None,
) -> None:
    """Resume a paused scenario: the emails it held back go out."""
    store = _store(_settings(db))
    if not store.feedback.resume(scenario_id, by, store.clock.now()):
        fail(f"scenario {scenario_id} is not paused")
    typer.echo(f"resumed {scenario_id}")


@scenario_app.command("paused")
def scenario_paused(db: DatabaseOption = None) -> None:
    """Scenarios paused now, since when and why."""
    paused = _store(_settings(db)).feedback.paused()
    if not paused:
        typer.echo("no scenario is paused")
    for pause in paused.values():
        typer.echo(f"{pause.scenario_id}  paused {pause.paused_at:%Y-%m-%d %H:%M} UTC: {pause.reason}")
