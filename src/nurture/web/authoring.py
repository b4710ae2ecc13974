"""Authoring aids on a scenario's page: an email step rendered for a chosen lead, exactly as
the sender would build it (same composer: template in the lead's language, sender identity,
tracked and signed links, open pixel), a test copy of it to oneself, and what `nurture
validate` says about the scenario."""

from __future__ import annotations

import email.policy
import uuid
from dataclasses import dataclass
from datetime import datetime
from email import message_from_bytes
from email.message import EmailMessage
from typing import Any

from nurture.config import Settings
from nurture.errors import NurtureError
from nurture.jobs.catalog import find_scoring
from nurture.mail.compose import Composer
from nurture.mail.deliverability import check_template
from nurture.mail.footer import sender_identity_problems
from nurture.mail.message import BuiltMessage
from nurture.scenario.compiler import CompiledScenario
from nurture.scenario.model import SendEmail
from nurture.scenario.projectcheck import check_project
from nurture.scenario.projectfile import load_project


@dataclass(frozen=True)
class Preview:
    step: str
    template: str
    subject: str
    sender: str
    recipient: str
    html: str
    text: str
    message: BuiltMessage


@dataclass(frozen=True)
class Finding:
    severity: str  # "error" or "warning"
    text: str


def email_steps(compiled: CompiledScenario) -> list[SendEmail]:
    return [s for s in compiled.scenario.steps if isinstance(s, SendEmail)]


def compose_step(
    settings: Settings,
    compiled: CompiledScenario,
    step_id: str,
    lead: Any,
    now: datetime,
    to: str | None = None,
    test: bool = False,
) -> Preview:
    """The email of step `step_id` for `lead` (a lead row), built by the sender's composer;
    addressed to `to` instead of the lead when given. A test is marked in its subject and
    carries links of no real send (id 0), which count nothing."""
    step = compiled.steps.get(step_id)
    if not isinstance(step, SendEmail):
        raise NurtureError(f"{compiled.id} has no email step {step_id!r}")
    fields = dict(lead._mapping)
    fields.update(fields.get("custom") or {})
    template, subject, _language = compiled.localised(step, fields)
    project = compiled.loaded.project
    sender = step.from_ or compiled.scenario.from_ or settings.notify_sender
    composer = Composer(
        settings.templates_dir,
        settings.base_url,
        settings.secret_key,
        settings.mail_domain,
        settings.unsubscribe_mailto,
        {compiled.id: compiled.scenario.name},
        scenario_utm={compiled.id: dict(project.utm)} if project is not None else {},
        name_order=project.name_order if project is not None else "auto",
        list_domain=settings.list_domain,
        sender=settings.sender_identity,
    )
    row = {
        "id": 0,
        "kind": "email",
        "template": template,
        "subject": f"[test] {subject}" if test else subject,
        "scenario_id": compiled.id,
        "sender": sender,
        "idempotency_key": f"preview-{uuid.uuid4().hex}",
        "reply_to": step.reply_to,
    }
    built = composer.compose_one(row, {**lead._mapping, "email": to or lead.email}, now)
    if isinstance(built, Exception):
        raise NurtureError(f"the email of step {step_id!r} does not render for {lead.email}: {built}")
    parsed = message_from_bytes(built.data, policy=email.policy.default)
    assert isinstance(parsed, EmailMessage)
    html_part = parsed.get_body(("html",))
    text_part = parsed.get_body(("plain",))
    return Preview(
        step=step_id,
        template=template,
        subject=str(parsed["Subject"]),
        sender=str(parsed["From"]),
        recipient=str(parsed["To"]),
        html=html_part.get_content() if html_part is not None else "",
        text=text_part.get_content() if text_part is not None else "",
        message=built,
    )


def findings(settings: Settings, compiled: CompiledScenario, project: list[CompiledScenario]) -> list[Finding]:
    """What `nurture validate` prints about this scenario's file: its problems (errors), its
    warnings and the deliverability warnings of its templates, and the project checks that
    name it."""
    loaded = compiled.loaded
    loaded.templates.refresh()  # templates edited since the scenario was loaded are checked as they are now
    found = [Finding("error", str(d)) for d in sender_identity_problems(loaded, settings.sender_identity)]
    found += [Finding("warning", str(w)) for w in loaded.warnings]
    identity = settings.sender_identity
    for name in sorted({s.template for s in email_steps(compiled)}):
        if loaded.templates.exists(name):
            for warning in check_template(
                loaded.templates, name, settings.base_url, identity.as_context() if identity else None
            ):
                found.append(Finding("warning", str(warning)))
    folder = loaded.path.parent
    has_routing = find_scoring(folder, settings.templates_dir) is not None
    others = [c.loaded for c in project if c.loaded.path.parent == folder]
    for diagnostic in check_project(others, has_routing, load_project(folder)):
        text = str(diagnostic)
        if loaded.path.name in text or compiled.id in text:
            found.append(Finding("error", text))
    return found
