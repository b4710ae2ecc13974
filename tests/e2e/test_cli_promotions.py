"""Held promotions from the command line: `nurture score held` lists them, `release` lets them through."""

from __future__ import annotations

import shutil
from pathlib import Path

from nurture.clock import SystemClock
from nurture.jobs.catalog import Catalog, find_scoring
from nurture.jobs.qualify import Qualifier
from nurture.store import Store
from tests.e2e.test_cli_scenarios import ROOT, nurture


def test_held_promotions_are_listed_and_released_from_the_cli(tmp_path: Path) -> None:
    db = f"sqlite:///{tmp_path / 'n.db'}"
    scenarios = tmp_path / "scenarios"
    scenarios.mkdir()
    text = (ROOT / "scenarios" / "scoring.yaml").read_text().replace("per_run: 50", "per_run: 1")
    (scenarios / "scoring.yaml").write_text(text)
    shutil.copytree(ROOT / "email_templates", tmp_path / "email_templates")
    assert nurture("db", "upgrade", "--db", db).returncode == 0
    leads = tmp_path / "leads.csv"
    leads.write_text(
        "email,first_name,company,company_size,industry,job_title,country\n"
        "ada@nordwerk.example,Ada,Nordwerk,1500,Manufacturing,Head of Operations,DE\n"
        "bo@fjord.example,Bo,Fjord,1500,Manufacturing,Head of Operations,SE\n"
    )
    assert nurture("leads", "import", str(leads), "--db", db).returncode == 0
    for email in ("ada@nordwerk.example", "bo@fjord.example"):
        assert nurture("events", "add", email, "inquiry", "--db", db).returncode == 0

    store = Store.open(db, SystemClock())
    catalog = Catalog(store, scenarios, tmp_path / "email_templates")
    catalog.scoring = find_scoring(scenarios, tmp_path / "email_templates")
    stats = Qualifier(store, catalog, SystemClock()).run_once()
    assert (stats.promoted, stats.held) == (1, 1)

    held = nurture("score", "held", "--db", db)
    assert held.returncode == 0, held.stderr
    assert "over the limit of 1 promotions per run" in held.stdout and "1 held;" in held.stdout
    refused = nurture("score", "release", "--db", db, "--scenarios", str(scenarios))
    assert refused.returncode == 1 and "or pass --all" in refused.stderr
    released = nurture("score", "release", "--all", "--by", "max", "--db", db, "--scenarios", str(scenarios))
    assert released.returncode == 0, released.stderr
    assert "handed to max.keller@acme-analytics.example" in released.stdout and "1 released" in released.stdout
    assert nurture("score", "held", "--db", db).stdout.strip() == "no promotions held for review"
    for email in ("ada@nordwerk.example", "bo@fjord.example"):
        assert "lifecycle_stage: hot" in nurture("leads", "show", email, "--db", db).stdout
