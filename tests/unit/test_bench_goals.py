"""`make bench` fails when a ratio misses the goal printed beside it."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[2] / "bench"
sys.path.insert(0, str(BENCH))

import run  # noqa: E402
from common import Result, at_least, at_most, missed  # noqa: E402


def test_a_ratio_below_or_above_its_goal_is_reported_as_missed() -> None:
    send = Result("send", "3,000 msg/s", "6,200 msg/s", 3000 / 6200, at_least(0.5))
    tick = Result("tick", "61 ms", "30 ms", 61 / 30, at_most(2))
    advance = Result("advance", "2,500 steps/s", "10,000 steps/s", 0.25, at_least(0.25))
    assert (send.met, tick.met, advance.met) == (False, False, True)
    assert send.line == "| send | 3,000 msg/s | 6,200 msg/s | 0.48× | ≥ 0.5× **missed** |"
    assert advance.line == "| advance | 2,500 steps/s | 10,000 steps/s | 0.25× | ≥ 0.25× |"
    assert missed([send, tick, advance]) == [
        "goal missed: send: 0.48×, goal ≥ 0.5×",
        "goal missed: tick: 2.03×, goal ≤ 2×",
    ]


def test_make_bench_exits_non_zero_when_a_goal_is_missed(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    def slow_tick(folder: Path, small: int, large: int, due: int) -> list[Result]:
        return [Result("tick", "90 ms", "30 ms", 3.0, at_most(2))]

    monkeypatch.setattr(run, "bench_tick", slow_tick)
    monkeypatch.setattr(sys, "argv", ["run.py", "tick", "--keep", str(tmp_path)])
    with pytest.raises(SystemExit) as stopped:
        run.main()
    assert stopped.value.code == 1
    assert "goal missed: tick: 3.00×, goal ≤ 2×" in capsys.readouterr().err


def test_make_bench_exits_zero_when_every_goal_is_met(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    def fast_tick(folder: Path, small: int, large: int, due: int) -> list[Result]:
        return [Result("tick", "30 ms", "30 ms", 1.0, at_most(2))]

    monkeypatch.setattr(run, "bench_tick", fast_tick)
    monkeypatch.setattr(sys, "argv", ["run.py", "tick", "--keep", str(tmp_path)])
    run.main()  # returns: no SystemExit
