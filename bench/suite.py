"""`make bench`: every benchmark section in one run, then one table of every row.

    python bench/suite.py              # the whole run (see ESTIMATE: under an hour on a quiet 2-core machine)
    python bench/suite.py --quick      # the same path at small sizes: a smoke run of a few minutes
    python bench/suite.py --plan       # what would run and how long it should take, without running it
    python bench/suite.py --phases pg,pgbig   # some phases only

Three phases, each one `bench/run.py` process (see there for the sections):
  sqlite  the sections on SQLite files;
  pg      the same sections, the relay, scale-out and import ones and event retention on PostgreSQL
          (`--pg`, default $NURTURE_BENCH_PG_URL or the local `nurture_bench`; its schema is dropped
          and rebuilt);
  pgbig   the data-side sections (bench/pgdata.py: reports, ingest, rescoring, ...) on a database of
          1M leads, 10M events and 5M sends that `pgreports` builds first (`--pg-big`, default the
          local `nurture_bench_big`; about 9 minutes). With $NURTURE_BENCH_PG_BIG_URL set, or
          `--reuse-big`, that database is taken as already built and only migrated to head.

At the end: every row with its ratio, goal and whether it met it; each section's time beside
its estimate, with the load average around it; the run's load average at start and end.
Exits non-zero when a goal is missed or a section fails.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH))

import pgdata  # noqa: E402
from common import SectionRun  # noqa: E402

PG_DEFAULT = "postgresql+psycopg://postgres@127.0.0.1:5432/nurture_bench"
PG_BIG_DEFAULT = "postgresql+psycopg://postgres@127.0.0.1:5432/nurture_bench_big"

# Seconds each section takes on a quiet 2-core machine (full sizes), from measured runs; a
# section not listed here (a new one) is counted at UNKNOWN.
ESTIMATE: dict[tuple[str, str], float] = {
    ("sqlite", "send"): 90,
    ("sqlite", "advance"): 30,
    ("sqlite", "tick"): 180,
    ("sqlite", "memory"): 40,
    ("sqlite", "account"): 115,
    ("sqlite", "dkim"): 160,
    ("sqlite", "dkim-relay"): 30,
    ("sqlite", "import"): 160,
    ("pg", "send"): 90,
    ("pg", "advance"): 40,
    ("pg", "tick"): 120,
    ("pg", "memory"): 110,
    ("pg", "latency"): 110,
    ("pg", "scaleout"): 150,
    ("pg", "import"): 200,
    ("pg", "retention"): 240,
    ("pgbig", "pgreports"): 660,
    ("pgbig", "pgingest"): 60,
    ("pgbig", "pgqualify"): 150,
    ("pgbig", "pganalytics"): 480,  # drift replays the build's 50,000 promotions (125 s at 1M)
}
UNKNOWN = 300.0
HOUR = 3600.0
REUSED_BUILD = 320.0  # what `pgreports` saves when the big database is reused


@dataclass(frozen=True)
class Phase:
    name: str
    label: str
    sections: tuple[str, ...]
    args: tuple[str, ...] = ()
    env: dict[str, str] = field(default_factory=dict)

    def estimate(self, quick: bool, reuse: bool) -> float:
        total = 0.0
        for section in self.sections:
            seconds = ESTIMATE.get((self.name, section), UNKNOWN)
            if section == "pgreports" and reuse:
                seconds -= REUSED_BUILD
            total += seconds
        return total / 5 if quick else total


def phases(pg: str, pg_big: str, reuse: bool) -> list[Phase]:
    env = {"NURTURE_BENCH_PG_URL": pg_big}
    if reuse:
        env["NURTURE_BENCH_PG_BIG_URL"] = pg_big
    return [
        Phase(
            "sqlite",
            "SQLite",
            ("send", "advance", "tick", "memory", "account", "dkim", "dkim-relay", "import"),
        ),
        Phase(
            "pg",
            "PostgreSQL",
            ("send", "advance", "tick", "memory", "latency", "scaleout", "import", "retention"),
            ("--pg", pg),
        ),
        Phase("pgbig", "PostgreSQL at scale", tuple(pgdata.SECTIONS), ("--pg", pg_big), env),
    ]


def run_phase(phase: Phase, quick: bool, json_path: Path) -> int:
    """Run one phase's sections in a `bench/run.py` process; its exit code (1: a goal missed)."""
    command = [sys.executable, str(BENCH / "run.py"), *phase.sections, *phase.args, "--json", str(json_path)]
    if quick:
        command.append("--quick")
    env = {k: v for k, v in os.environ.items() if k not in ("NURTURE_BENCH_PG_URL", "NURTURE_BENCH_PG_BIG_URL")}
    print(f"\n## {phase.label}: {' '.join(command[1:])}", flush=True)
    return subprocess.run(command, env={**env, **phase.env}, check=False).returncode


def minutes(seconds: float) -> str:
    return f"{seconds / 60:,.0f} min" if seconds >= 90 else f"{seconds:,.0f} s"


def summary(runs: Sequence[tuple[Phase, SectionRun]], quick: bool, reuse: bool) -> list[str]:
    """The combined table of every row, then each section's time beside its estimate."""
    lines = [
        "| database | benchmark | nurture | baseline | ratio | goal | met |",
        "|---|---|---|---|---|---|---|",
    ]
    for phase, run in runs:
        for r in run.results:
            lines.append(
                f"| {phase.label} | {r.name} | {r.nurture} | {r.baseline} | {r.ratio:.2f}× | {r.goal} "
                f"| {'met' if r.met else '**missed**'} |"
            )
        if run.error:
            lines.append(f"| {phase.label} | {run.section} | | | | | **failed**: {run.error} |")
    lines += ["", "| phase | section | seconds | estimate | load average at start → end |", "|---|---|---|---|---|"]
    for phase, run in runs:
        estimate = ESTIMATE.get((phase.name, run.section), UNKNOWN)
        if run.section == "pgreports" and reuse:
            estimate -= REUSED_BUILD
        if quick:
            estimate /= 5
        lines.append(
            f"| {phase.name} | {run.section} | {run.seconds:,.0f} | {estimate:,.0f} "
            f"| {run.load_start:.1f} → {run.load_end:.1f} |"
        )
    return lines


def main(argv: Sequence[str] | None = None, runner: Callable[[Phase, bool, Path], int] = run_phase) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="small sizes: a smoke run of the same path")
    parser.add_argument("--plan", action="store_true", help="print the phases and the estimate, run nothing")
    parser.add_argument("--phases", default="sqlite,pg,pgbig", help="comma-separated: sqlite, pg, pgbig")
    parser.add_argument("--pg", default=os.environ.get("NURTURE_BENCH_PG_URL", PG_DEFAULT))
    parser.add_argument("--pg-big", default=os.environ.get("NURTURE_BENCH_PG_BIG_URL", PG_BIG_DEFAULT))
    parser.add_argument(
        "--reuse-big",
        action="store_true",
        default=bool(os.environ.get("NURTURE_BENCH_PG_BIG_URL")),
        help="take --pg-big as already built (by an earlier run): skip the build",
    )
    parser.add_argument("--json", type=Path, help="keep every section's record in this file (default: temporary)")
    args = parser.parse_args(argv)
    wanted = [name.strip() for name in args.phases.split(",") if name.strip()]
    chosen = [p for p in phases(args.pg, args.pg_big, args.reuse_big) if p.name in wanted]
    unknown = set(wanted) - {p.name for p in chosen}
    if unknown:
        parser.error(f"unknown phase(s): {', '.join(sorted(unknown))}")
    estimate = sum(p.estimate(args.quick, args.reuse_big) for p in chosen)
    print(f"make bench{' --quick' if args.quick else ''}: estimated {minutes(estimate)} on a quiet 2-core machine")
    for phase in chosen:
        reused = " (big database reused)" if phase.name == "pgbig" and args.reuse_big else ""
        took = minutes(phase.estimate(args.quick, args.reuse_big))
        print(f"  {phase.label}: {' '.join(phase.sections)}{reused}: ~{took}")
    if estimate > HOUR and not args.quick:
        print("  (over the hour make bench should fit in: cut the slowest sections' sizes)")
    if args.plan:
        return 0
    json_path = args.json or Path(tempfile.mkstemp(prefix="nurture-bench-", suffix=".jsonl")[1])
    json_path.unlink(missing_ok=True)
    load_start, started = os.getloadavg()[0], time.perf_counter()
    print(f"started {datetime.now(UTC):%Y-%m-%d %H:%M} UTC, load average {load_start:.1f}", flush=True)
    codes: dict[str, int] = {}
    runs: list[tuple[Phase, SectionRun]] = []
    for phase in chosen:
        before = len(SectionRun.read(json_path))
        codes[phase.name] = runner(phase, args.quick, json_path)
        runs += [(phase, run) for run in SectionRun.read(json_path)[before:]]
    seconds = time.perf_counter() - started
    print("\n## Every result of this run\n")
    print("\n".join(summary(runs, args.quick, args.reuse_big)))
    print(
        f"\ntotal {minutes(seconds)} (estimate {minutes(estimate)}); load average {load_start:.1f} at start,"
        f" {os.getloadavg()[0]:.1f} at end; records in {json_path}"
    )
    problems = [f"goal missed: {run.section}: {r.name}: {r.ratio:.2f}×, goal {r.goal}"
                for _, run in runs for r in run.results if not r.met]  # fmt: skip
    problems += [f"{phase.label}: {run.error}" for phase, run in runs if run.error]
    ran = {(phase.name, run.section) for phase, run in runs}
    problems += [
        f"{phase.label}: section {section} did not report (its process exited {codes[phase.name]})"
        for phase in chosen
        for section in phase.sections
        if (phase.name, section) not in ran
    ]
    if problems:
        print("\n".join(problems), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
