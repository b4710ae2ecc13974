"""Hostile or mistaken input files, through the installed commands: clear errors, no tracebacks."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.e2e.test_cli_scenarios import nurture


@pytest.mark.parametrize("value", ["5", "true"])
def test_steps_of_the_wrong_type_give_a_file_line_error_in_validate_and_graph(tmp_path: Path, value: str) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(f"id: bad\nname: Bad\nsteps: {value}\n", encoding="utf-8")
    for command in ("validate", "graph"):
        result = nurture(command, str(path))
        assert result.returncode == 1, result.stdout + result.stderr
        assert f"{path}:3: steps: Input should be a valid list" in result.stdout + result.stderr
        assert "Traceback" not in result.stderr
