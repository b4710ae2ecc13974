"""Commands on scoring and analytics: explain, backtest, near-miss, learn, drift, report."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

from nurture.cli.common import DatabaseOption, ScenariosOption, _console, _day, _pct, _settings, _store, app, fail
from nurture.clock import SystemClock
from nurture.errors import ValidationFailed
from nurture.jobs.catalog import check_file, find_scoring, find_scoring_file
from nurture.scenario.compiler import compile_scenario
from nurture.scenario.loader import LoadedScenario, scenario_files
from nurture.scoring.engine import CompiledScoring
from nurture.store import Store

score_app = typer.Typer(help="Lead scores.", no_args_is_help=True)
app.add_typer(score_app, name="score")


@score_app.command("explain")
def score_explain(
    email: str,
    db: DatabaseOption = None,
    scenarios: Annotated[Path, typer.Option(help="Folder with scoring.yaml")] = Path("scenarios"),
) -> None:
    """Why a lead's score is what it is: every rule, caps, decay, the account part and the colleagues
    who gave it, every open and click with its verdict (human, suspect, machine), what is missing; then
    what the stored score was made of, as of when it was made (or, if the scoring file or the events
    changed since, the score now, and whether it still is the stored one)."""
    from nurture.jobs.catalog import Catalog
    from nurture.jobs.qualify import Qualifier
    from nurture.scoring.explain import explain, render, render_stored

    settings = _settings(db)
    store = _store(settings)
    catalog = Catalog(store, scenarios, settings.templates_dir)
    catalog.scoring = find_scoring(scenarios, settings.templates_dir)
    if catalog.scoring is None:
        fail(f"no valid scoring file in {scenarios}/")
    lead = store.leads.by_email(email)
    if lead is None:
        fail(f"no lead with email {email}")
    now = SystemClock().now()
    qualifier = Qualifier(store, catalog, SystemClock())
    with store.reading() as conn:
        result = qualifier.score_lead(catalog.scoring, conn, lead, now)
        # The stored score (what the stage, the dashboard's header and alerts used) and what it
        # was made of: engagement decays, so it differs from the score now.
        stored = qualifier.explain_stored(catalog.scoring, conn, lead, result, now)
    for line in render(explain(catalog.scoring, result, f"{email} (stage {lead.lifecycle_stage})")):
        typer.echo(line)
    if stored is None:
        typer.echo("stored score: none yet (the qualify job has not scored this lead)")
        return
    for line in render_stored(stored):
        typer.echo(line)


@score_app.command("held")
def score_held(db: DatabaseOption = None) -> None:
    """Promotions held for review because a run asked for more than `promotion_limits` allow."""
    store = _store(_settings(db))
    held = store.accounts.held()
    if not held:
        typer.echo("no promotions held for review")
        return
    for h in held:
        typer.echo(f"{h.id:>6}  {h.key:<40} owner {h.owner:<32} strength {h.strength:>6.1f}  {h.reason}")
    typer.echo(f"{len(held)} held; `nurture score release --all` or `nurture score release ID ...` lets them through")


@score_app.command("release")
def score_release(
    ids: Annotated[list[int] | None, typer.Argument(help="Ids from `nurture score held`")] = None,
    all_: Annotated[bool, typer.Option("--all", help="Release every held promotion")] = False,
    by: Annotated[str, typer.Option(help="Who released them (kept with each)")] = "cli",
    db: DatabaseOption = None,
    scenarios: ScenariosOption = Path("scenarios"),
) -> None:
    """Let held promotions through: each lead (or account) becomes hot and its owner is told."""
    from nurture.jobs.catalog import Catalog
    from nurture.jobs.qualify import Qualifier

    if not ids and not all_:
        fail("name the promotions to release (ids from `nurture score held`) or pass --all")
    settings = _settings(db)
    store = _store(settings)
    catalog = Catalog(store, scenarios, settings.templates_dir)
    catalog.scoring = find_scoring(scenarios, settings.templates_dir)
    if catalog.scoring is None:
        fail(f"no valid scoring file in {scenarios}/")
    done = Qualifier(store, catalog, SystemClock()).release(None if all_ else ids, by)
    for key, what in done:
        typer.echo(f"{key}: {what}")
    typer.echo(f"{len(done)} released")


def _analysis(db: str | None, scenarios: Path) -> tuple[Store, Path, CompiledScoring]:
    settings = _settings(db)
    found = find_scoring_file(scenarios, settings.templates_dir)
    if found is None:
        fail(f"no valid scoring file in {scenarios}/ (nurture validate {scenarios}/ says why)")
        raise AssertionError  # unreachable: fail exits
    return _store(settings), found[0], found[1]


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

    from nurture.analytics.backtest import CURRENT, backtest, parse_cuts, parse_thresholds, scope, to_csv
    from nurture.analytics.chart import PALETTE, Series, line_chart
    from nurture.analytics.history import StoredHistory

    store, _, scoring = _analysis(db, scenarios)
    start, end = _day(since, "--from"), _day(until, "--to")
    thresholds, cuts = parse_thresholds(threshold), parse_cuts(grades, scoring)
    history = StoredHistory(store, scoring, scope(start, end), start, end)
    rows = backtest(scoring, history, start, end, thresholds, cuts)
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
    at: Annotated[
        str | None, typer.Option(help="As of this instant (default now), e.g. the simulated end of a demo")
    ] = None,
    db: DatabaseOption = None,
    scenarios: ScenariosOption = Path("scenarios"),
) -> None:
    """Leads just below the hot line, with what each lacks, and what a lower line would add."""
    from rich.table import Table

    from nurture.analytics.history import StoredHistory
    from nurture.analytics.nearmiss import near_misses, scope, slices, to_csv

    store, _, scoring = _analysis(db, scenarios)
    now = _day(at, "--at") if at else SystemClock().now()
    misses = near_misses(scoring, StoredHistory(store, scoring, scope(), now, now), now, engagement_gap, fit_gap)
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
    from nurture.analytics.history import StoredHistory
    from nurture.analytics.learn import learn, read_outcomes, scope

    store, path, scoring = _analysis(db, scenarios)
    try:
        rows = read_outcomes(outcomes)
    except ValidationFailed as exc:
        fail(f"{exc}\nnothing learned")
    now = SystemClock().now()
    history = StoredHistory(store, scoring, scope(rows))
    proposal = learn(scoring, path.read_text(encoding="utf-8"), str(path), history, rows, now)
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

    from nurture.analytics.drift import drift, scope
    from nurture.analytics.history import StoredHistory

    store, _, scoring = _analysis(db, scenarios)
    report = drift(scoring, StoredHistory(store, scoring, scope()))
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


def _count_outcomes(store: Store, scoring: CompiledScoring | None, everyone: bool) -> None:
    """Count the leads named for the report's counters (every lead with `everyone`), with a
    progress bar on a terminal."""
    import time

    from nurture.analytics.outcomes import catch_up

    if everyone:
        store.outcomes.name_everyone()
    with store.reading() as conn:
        waiting = store.outcomes.pending(conn)
    if not waiting:
        return
    started = time.monotonic()
    if sys.stderr.isatty():
        from rich.console import Console
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

        with Progress(
            TextColumn("counting"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
            console=Console(stderr=True), transient=True,
        ) as bar:  # fmt: skip
            task = bar.add_task("count", total=waiting)
            done = catch_up(store, scoring, progress=lambda n: bar.update(task, completed=n))
    else:
        done = catch_up(store, scoring)
    typer.echo(f"counted {done:,} change(s) of lead activity in {time.monotonic() - started:,.0f} s", err=True)


@app.command()
def report(
    scenario: Annotated[str | None, typer.Argument(help="Scenario id (default: every scenario)")] = None,
    since: Annotated[str | None, typer.Option("--from", help="Only enrolments from this date")] = None,
    until: Annotated[str | None, typer.Option("--to", help="Only enrolments before this date")] = None,
    csv_out: Annotated[Path | None, typer.Option("--csv", help="Also write the step rows as CSV here")] = None,
    recount: Annotated[
        bool, typer.Option("--recount", help="Count every lead's emails again first (after the bot rules changed)")
    ] = False,
    db: DatabaseOption = None,
    scenarios: ScenariosOption = Path("scenarios"),
) -> None:
    """Per scenario: funnel by step, email metrics (bots excluded), time to hot.

    The figures come from counters the daemon keeps; what it has not counted yet (after an
    upgrade, or with no daemon running) is counted first."""
    from rich.table import Table

    from nurture.analytics.experiments import experiment_reports, send_time_lifts
    from nurture.analytics.report import report_csv, scenario_report
    from nurture.scenario.compiler import CompiledScenario

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
    _count_outcomes(store, scoring, recount)
    console = _console()
    now = SystemClock().now()
    reports = []
    for sid in [scenario] if scenario else sorted(found):
        r = scenario_report(store, found[sid], scoring, start, end)
        reports.append(r)
        table = Table(title=f"{r.name} ({sid}): {r.enrolled} enrolled, {r.active} active, {r.hot} became hot")
        columns = (
            "step",
            "entered",
            "sent",
            "delivered",
            "opened",
            "clicked",
            "machines",
            "unsub",
            "bounced",
            "converted",
        )
        for column in columns:
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
                    f"{row.machine_opened} opened, {row.machine_clicked} clicked",
                    str(row.unsubscribed),
                    str(row.bounced),
                    str(row.converted),
                )
            else:
                table.add_row(f"{row.step} [dim]({row.kind})[/dim]", str(row.entered), *[""] * 8)
        console.print(table)
        median = r.median_time_to_hot
        finished = ", ".join(f"{n} {reason}" for reason, n in sorted(r.finished.items())) or "none yet"
        console.print(
            f"time to hot: {'—' if median is None else f'median {median.total_seconds() / 86400:.1f} days'}"
            f" ({r.hot} lead(s)); finished: {finished}\n"
        )
        for experiment in experiment_reports(store, found[sid], now):
            for line in experiment.lines():
                console.print(line, markup=False, highlight=False)
            console.print()
        for lift in send_time_lifts(store, found[sid], scoring):
            console.print(lift.line() + "\n", markup=False, highlight=False)
    if csv_out is not None:
        csv_out.write_text(report_csv(reports), encoding="utf-8")
        typer.echo(f"wrote {csv_out}")
