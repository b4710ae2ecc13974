"""`make bench` runs every section in one run and ends with one table of every row."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[2] / "bench"
sys.path.insert(0, str(BENCH))

import pgdata  # noqa: E402
import suite  # noqa: E402
from common import Result, SectionRun, at_least  # noqa: E402


def fake_runner(missed: str | None = None, broken: str | None = None, silent: str | None = None):  # type: ignore[no-untyped-def]
    """Stands in for a `bench/run.py` process: records one row per section, as run.py does."""

    def run(phase: suite.Phase, quick: bool, json_path: Path) -> int:
        code = 0
        for section in phase.sections:
            if section == silent:
                return 2  # the process died before this section reported
            ratio = 0.1 if section == missed else 1.0
            rows = [Result(f"{section} row", "1 msg/s", "1 msg/s", ratio, at_least(0.5))]
            error = None
            if section == broken:
                rows, error = [], f"section {section} failed: RuntimeError('no relay')"
            if ratio < 0.5 or error:
                code = 1
            SectionRun(phase.label, section, 12.0, 1.5, 2.5, rows, error).append_to(json_path)
        return code

    return run


def test_make_bench_runs_every_section_of_every_phase_and_prints_one_table(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = suite.main(["--json", str(tmp_path / "runs.jsonl")], runner=fake_runner())
    out = capsys.readouterr().out
    assert code == 0
    table = out.split("## Every result of this run")[1]
    for section in ("send", "memory", "latency", "dkim-relay", "import", "scaleout", *pgdata.SECTIONS):
        assert f"| {section} row | 1 msg/s | 1 msg/s | 1.00× | ≥ 0.5× | met |" in table
    assert "| PostgreSQL | scaleout row |" in table and "| SQLite | import row |" in table
    assert "| pgbig | pgreports | 12 | 660 | 1.5 → 2.5 |" in table  # its time beside its estimate
    assert "load average" in out.splitlines()[-1]


def test_a_missed_goal_or_a_failed_section_fails_the_run_after_the_other_sections_ran(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    runner = fake_runner(missed="tick", broken="scaleout", silent="pgingest")
    code = suite.main(["--json", str(tmp_path / "runs.jsonl")], runner=runner)
    captured = capsys.readouterr()
    assert code == 1
    assert "| tick row | 1 msg/s | 1 msg/s | 0.10× | ≥ 0.5× | **missed** |" in captured.out
    assert "| PostgreSQL | scaleout | | | | | **failed**: section scaleout failed: RuntimeError('no relay') |" in (
        captured.out
    )
    assert "| pgreports row |" in captured.out  # later phases still ran
    assert "goal missed: tick: tick row: 0.10×, goal ≥ 0.5×" in captured.err
    assert "PostgreSQL at scale: section pgingest did not report (its process exited 2)" in captured.err


def test_the_plan_names_every_section_with_an_estimate_and_runs_nothing(capsys: pytest.CaptureFixture[str]) -> None:
    def never(phase: suite.Phase, quick: bool, json_path: Path) -> int:
        raise AssertionError("--plan runs nothing")

    assert suite.main(["--plan"], runner=never) == 0
    out = capsys.readouterr().out
    assert out.startswith("make bench: estimated ")
    assert " ".join(pgdata.SECTIONS) in out and "scaleout" in out and "dkim-relay" in out
    every = [p.estimate(quick=False, reuse=False) for p in suite.phases("pg", "big", reuse=False)]
    reused = [p.estimate(quick=False, reuse=True) for p in suite.phases("pg", "big", reuse=True)]
    assert sum(reused) < sum(every)


def test_the_big_database_is_reused_only_when_asked() -> None:
    built, reused = suite.phases("pg", "big", reuse=False)[2], suite.phases("pg", "big", reuse=True)[2]
    assert built.env == {"NURTURE_BENCH_PG_URL": "big"}
    assert reused.env == {"NURTURE_BENCH_PG_URL": "big", "NURTURE_BENCH_PG_BIG_URL": "big"}
