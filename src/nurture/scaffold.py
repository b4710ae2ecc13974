"""The sample project shipped inside the package, and `nurture init`, which copies it.

In a checkout, `samples/` links to the repository's `scenarios/`, `email_templates/` and
`examples/`, so the demo and a new project start from the very files the README shows; an
installed wheel carries copies of them.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from pydantic_core import PydanticUndefined

from nurture.config import SETTINGS_FILE, Settings
from nurture.errors import NurtureError

SAMPLES = Path(__file__).resolve().parent / "samples"
_PARTS = ("scenarios", "email_templates", "examples/leads.csv")
# Settings a new project needs before `nurture validate` passes: every email shows its sender.
_STARTER = {"sender_name": "Acme Analytics", "sender_postal_address": "100 Main Street, Boston, MA 02110"}


def samples_root() -> Path:
    """The folder holding the sample project; raises when the installation lost part of it."""
    missing = [part for part in _PARTS if not (SAMPLES / part).exists()]
    if missing:
        raise NurtureError(
            f"{SAMPLES}: the sample project is incomplete (missing {', '.join(missing)}); reinstall nurture"
        )
    return SAMPLES


def init_project(folder: Path) -> list[Path]:
    """Write a working project into `folder` (new or empty): the sample scenarios, email
    templates and scoring file, example leads, and a commented settings file. Returns what
    it wrote, top level only."""
    if folder.exists() and any(folder.iterdir()):
        raise NurtureError(f"{folder}: not empty; nurture init writes a new project into an empty or new folder")
    source = samples_root()
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    for name in ("scenarios", "email_templates"):
        shutil.copytree(source / name, folder / name)
        written.append(folder / name)
    shutil.copyfile(source / "examples" / "leads.csv", folder / "leads.csv")
    written.append(folder / "leads.csv")
    (folder / SETTINGS_FILE).write_text(settings_file(), encoding="utf-8")
    written.append(folder / SETTINGS_FILE)
    return written


def settings_file() -> str:
    """Every setting, commented out at its default, with what it does where the model says so;
    the sender's identity set to sample values. Generated from `Settings`, so it names every
    setting there is."""
    lines = [
        "# nurture settings. nurture reads this file from the folder it runs in; environment",
        "# variables of the same name win over it. Uncomment a line to change a setting.",
        "",
    ]
    for name, field in Settings.model_fields.items():
        if field.description:
            lines.append(f"# {field.description}")
        if name in _STARTER:
            lines.append("# Set for the sample scenarios to validate; change it to your own before sending.")
            lines.append(f'NURTURE_{name.upper()}="{_STARTER[name]}"')
            continue
        default = field.default if field.default is not PydanticUndefined else None
        if field.default_factory is not None:
            lines.append(f"# NURTURE_{name.upper()}=  (default: worked out at start)")
        else:
            lines.append(f"# NURTURE_{name.upper()}={'' if default is None else _text(default)}")
    return "\n".join(lines) + "\n"


def _text(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)
