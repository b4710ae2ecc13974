"""nurture as a user gets it: a wheel installed into a fresh virtualenv, run from an empty folder
far from the checkout."""

from __future__ import annotations

import mailbox
import os
import subprocess
import sys
import sysconfig
import venv
from pathlib import Path

import pytest

from tests.e2e.test_cli_scenarios import ROOT


def run(*args: str | Path, cwd: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(a) for a in args], cwd=cwd, env=env, capture_output=True, text=True, timeout=600, check=False
    )


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The `bin/` folder of a fresh virtualenv with the wheel built from this checkout installed.

    The wheel goes in on its own (`--no-deps`); the virtualenv borrows the already installed
    dependencies through a path file, without the checkout's own editable install, so that the
    `nurture` it runs can only be the one inside the wheel."""
    base = tmp_path_factory.mktemp("installed")
    wheels = base / "wheels"
    built = run(sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-w", wheels, ROOT, cwd=base)
    assert built.returncode == 0, built.stderr
    (wheel,) = wheels.glob("nurture-*.whl")
    env_dir = base / "venv"
    venv.EnvBuilder(with_pip=True).create(env_dir)
    bin_dir = env_dir / "bin"
    installed = run(bin_dir / "python", "-m", "pip", "install", "--no-deps", "--no-index", wheel, cwd=base)
    assert installed.returncode == 0, installed.stderr
    site = run(bin_dir / "python", "-c", "import sysconfig; print(sysconfig.get_path('purelib'))", cwd=base)
    Path(site.stdout.strip(), "dependencies.pth").write_text(sysconfig.get_path("purelib") + "\n")
    return bin_dir


def user_env(bin_dir: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("NURTURE_", "PYTHON", "VIRTUAL_ENV"))}
    env["PATH"] = f"{bin_dir}{os.pathsep}{env.get('PATH', '')}"
    return env


def test_installed_package_runs_from_its_own_files_not_the_checkout(installed: Path, tmp_path: Path) -> None:
    where = run(installed / "python", "-c", "import nurture; print(nurture.__file__)", cwd=tmp_path)
    assert where.returncode == 0, where.stderr
    assert Path(where.stdout.strip()).is_relative_to(installed.parent)
    version = run(installed / "nurture", "--version", cwd=tmp_path, env=user_env(installed))
    assert version.returncode == 0
    assert version.stdout.strip() == "nurture 0.1.0"


def test_init_scaffolds_a_project_that_validates_imports_and_runs(installed: Path, tmp_path: Path) -> None:
    env = user_env(installed)
    made = run(installed / "nurture", "init", "acme", cwd=tmp_path, env=env)
    assert made.returncode == 0, made.stderr
    project = tmp_path / "acme"
    assert sorted(p.name for p in project.iterdir()) == ["email_templates", "leads.csv", "nurture.env", "scenarios"]
    assert (project / "scenarios" / "scoring.yaml").is_file()
    written = (project / "nurture.env").read_text()
    assert "# NURTURE_SMTP_HOST=127.0.0.1" in written
    assert 'NURTURE_SENDER_NAME="Acme Analytics"' in written.splitlines()

    validated = run(installed / "nurture", "validate", "scenarios/", cwd=project, env=env)
    assert validated.returncode == 0, validated.stdout + validated.stderr

    # The settings file is read from the folder the command runs in.
    settings = project / "nurture.env"
    settings.write_text(settings.read_text() + "NURTURE_DATABASE_URL=sqlite:///from-settings-file.db\n")
    assert run(installed / "nurture", "db", "upgrade", cwd=project, env=env).returncode == 0
    imported = run(installed / "nurture", "leads", "import", "leads.csv", cwd=project, env=env)
    assert imported.returncode == 0, imported.stderr
    assert imported.stdout.startswith("150 created")
    assert (project / "from-settings-file.db").is_file()

    again = run(installed / "nurture", "init", "acme", cwd=tmp_path, env=env)
    assert again.returncode == 1
    assert "not empty" in again.stderr and "Traceback" not in again.stderr


def test_demo_runs_from_an_empty_folder_with_the_samples_inside_the_package(installed: Path, tmp_path: Path) -> None:
    result = run(
        installed / "nurture", "demo", "--days", "3", "--seconds-per-day", "0", "--workdir", "d", "--no-serve",
        cwd=tmp_path, env=user_env(installed),
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    delivered = mailbox.Maildir(tmp_path / "d" / "maildir", create=False)
    assert len(delivered) > 0, result.stdout
    assert (tmp_path / "d" / "outcomes.csv").is_file() and (tmp_path / "d" / "summary.json").is_file()
