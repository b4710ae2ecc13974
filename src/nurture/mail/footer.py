"""Sender identity: every campaign email shows who sends it, where they are, and how to stop.

Japan's Act on Specified Electronic Mail (art. 4) and CAN-SPAM (15 U.S.C. 7704(a)(5))
require the sender's name, a postal address and a working way to opt out in every
marketing email; GDPR and the ePrivacy rules expect the same. The identity is configured
once (`NURTURE_SENDER_NAME`, `NURTURE_SENDER_POSTAL_ADDRESS`) and templates show it with
`{{ sender.name }}` and `{{ sender.postal_address }}`.

The check renders each template a scenario sends, with blank lead data, and looks at what
a reader would see: the name and the address in the visible text of both the HTML and the
text part, and the unsubscribe URL as a link in the HTML and in the text.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from jinja2 import ChainableUndefined

from nurture.errors import Diagnostic
from nurture.scenario.templates import TemplateError, TemplateStore, html_to_text

if TYPE_CHECKING:
    from nurture.scenario.loader import LoadedScenario

UNSUBSCRIBE_PROBE = "https://unsubscribe.invalid/u/probe"


@dataclass(frozen=True)
class SenderIdentity:
    name: str
    postal_address: str
    contact: str | None = None  # e.g. an address or phone for questions; optional

    def as_context(self) -> dict[str, Any]:
        return {"name": self.name, "postal_address": self.postal_address, "contact": self.contact or ""}


class _Blank(ChainableUndefined):
    """A lead value that is not there: prints as nothing and compares false, so templates
    with conditions on lead data render their plain path."""

    __slots__ = ()

    def _false(self, *_: Any) -> bool:
        return False

    __lt__ = __le__ = __gt__ = __ge__ = _false  # type: ignore[assignment]

    def _same(self, *_: Any) -> _Blank:
        return self

    __add__ = __radd__ = __sub__ = __rsub__ = __mul__ = __rmul__ = _same  # type: ignore[assignment]
    __truediv__ = __rtruediv__ = __floordiv__ = __mod__ = _same  # type: ignore[assignment]

    def __int__(self) -> int:  # type: ignore[override]  # `lead.seats|int`: blank reads as 0, like `""|int`
        return 0

    def __float__(self) -> float:  # type: ignore[override]
        return 0.0


class _BlankRecord:
    """Stands in for `lead` and `score`: every field is blank."""

    def __getitem__(self, key: str) -> _Blank:
        return _Blank()

    def __contains__(self, key: object) -> bool:
        return False

    def __iter__(self) -> Iterator[str]:
        return iter(())


def _visible(text: str) -> str:
    return " ".join(text.replace("\u3000", " ").split()).casefold()


@dataclass(frozen=True)
class _Part:
    label: str
    visible: str
    has_unsubscribe_link: bool


def _parts(html: str, text: str) -> list[_Part]:
    link = re.compile(r"""href\s*=\s*["']""" + re.escape(UNSUBSCRIBE_PROBE) + r"""["']""", re.I)
    return [
        _Part("HTML part", _visible(html_to_text(html)), bool(link.search(html))),
        _Part("text part", _visible(text), UNSUBSCRIBE_PROBE in text),
    ]


def missing_identity(templates: TemplateStore, name: str, identity: SenderIdentity | None) -> list[str] | TemplateError:
    """What template `name` fails to show, in words ('the sender's postal address in its
    text part'), or the error that stopped it from rendering."""
    context: Mapping[str, Any] = {
        "lead": _BlankRecord(),
        "score": _BlankRecord(),
        "scenario": "",
        "unsubscribe_url": UNSUBSCRIBE_PROBE,
        "link": lambda _name, url: url,
        "now": datetime(2026, 1, 1, tzinfo=UTC),
        "sender": (identity or SenderIdentity("", "")).as_context(),
    }
    try:
        rendered = templates.render(name, "", context)
    except TemplateError as exc:
        return exc
    missing: list[str] = []
    for part in _parts(rendered.html, rendered.text):
        if identity is not None:
            if _visible(identity.name) not in part.visible:
                missing.append(f"the sender's name ({identity.name!r}) in its {part.label}")
            if _visible(identity.postal_address) not in part.visible:
                missing.append(f"the sender's postal address ({identity.postal_address!r}) in its {part.label}")
        if not part.has_unsubscribe_link:
            where = "as a link (href) in its HTML part" if part.label == "HTML part" else "in its text part"
            missing.append(f"the unsubscribe link {{{{ unsubscribe_url }}}} {where}")
    return missing


def check_sender_identity(
    templates: TemplateStore,
    uses: Mapping[str, int],
    identity: SenderIdentity | None,
    filename: str,
) -> list[Diagnostic]:
    """Problems of the campaign templates a scenario file sends (`uses`: template name →
    line of the step that sends it), as file:line diagnostics of the scenario file."""
    problems: list[Diagnostic] = []
    if identity is None and uses:
        first = min(uses.values())
        problems.append(
            Diagnostic(
                filename,
                first,
                "the sender's identity is not configured, so emails cannot show who sends them",
                "set NURTURE_SENDER_NAME and NURTURE_SENDER_POSTAL_ADDRESS (required in Japan, the EU and by CAN-SPAM)",
            )
        )
    for name, line in sorted(uses.items(), key=lambda item: item[1]):
        if not templates.exists(name):
            continue  # the scenario check already reports a missing template
        found = missing_identity(templates, name, identity)
        if isinstance(found, TemplateError):
            problems.append(
                Diagnostic(filename, line, f"could not render template '{name}' to check its footer: {found}")
            )
            continue
        for what in found:
            hint = "show it in the footer, e.g. {{ sender.name }} · {{ sender.postal_address }}"
            if "unsubscribe" in what:
                hint = 'add <a href="{{ unsubscribe_url }}">Unsubscribe</a> (and the URL in the .txt part)'
            problems.append(Diagnostic(filename, line, f"template '{name}' does not show {what}", hint))
    return problems


def sender_identity_problems(scenario: LoadedScenario, identity: SenderIdentity | None) -> list[Diagnostic]:
    """`check_sender_identity` for the templates a loaded scenario sends, at their steps' lines."""
    from nurture.scenario.model import SendEmail

    uses: dict[str, int] = {}
    for step in scenario.scenario.steps:
        if isinstance(step, SendEmail):
            uses.setdefault(step.template, scenario.step_lines.get(step.id, 1))
    return check_sender_identity(scenario.templates, uses, identity, str(scenario.path))
