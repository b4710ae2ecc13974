"""Experiments through the scenario commands, as a marketer runs them."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from tests.e2e.test_cli_scenarios import ROOT, nurture


def test_validate_graph_and_schema_understand_the_sample_experiment() -> None:
    assert nurture("validate", "scenarios/").returncode == 0
    mermaid = nurture("graph", "scenarios/reengagement.yaml").stdout
    assert "experiment: click within 7d, mSPRT α=0.05, ≥100/arm, ≤60d" in mermaid
    schema = json.loads(nurture("schema").stdout)
    experiment = schema["$defs"]["Experiment"]["properties"]
    assert {"goal", "method", "alpha", "threshold", "min_per_arm", "max_duration", "within"} <= set(experiment)


def test_validate_points_at_a_misspelt_goal(tmp_path: Path) -> None:
    shutil.copytree(ROOT / "scenarios", tmp_path / "scenarios")
    shutil.copytree(ROOT / "email_templates", tmp_path / "email_templates")
    path = tmp_path / "scenarios" / "reengagement.yaml"
    text = path.read_text().replace("goal: click", "goal: clicks")
    path.write_text(text)
    line = text.splitlines().index("      goal: clicks") + 1
    result = nurture("validate", "scenarios/", cwd=tmp_path)
    assert result.returncode != 0
    assert f"reengagement.yaml:{line}: experiment of step 'subject_test' has unknown goal 'clicks'" in result.stdout
    assert "did you mean 'click'?" in result.stdout


def test_simulate_reports_the_arm_the_lead_would_get(tmp_path: Path) -> None:
    lead = tmp_path / "recycled.yaml"
    lead.write_text((ROOT / "examples" / "lead_quiet.yaml").read_text() + "lifecycle_stage: recycled\n")
    result = nurture(
        "simulate",
        "scenarios/reengagement.yaml",
        "--lead",
        str(lead),
        "--start",
        "2026-03-03T09:00:00Z",
        "--until",
        "3d",
    )
    assert result.returncode == 0, result.stderr
    arm_lines = [line for line in result.stdout.splitlines() if "experiment: arm" in line]
    assert len(arm_lines) == 1, result.stdout
    assert "by weight (experiment running)" in arm_lines[0]
    arm = arm_lines[0].split("'")[1]
    assert arm in ("question", "value")
    template = {"question": "reengage_question", "value": "reengage_value"}[arm]
    assert f"✉ email '{template}'" in result.stdout
