"""Consent as data, and the decisions taken from it.

A consent record says that, at a moment, a person granted, withdrew or asked to grant
(pending a confirmation) permission to be mailed about one topic, where the statement came
from and what it said. Records are only ever added: the current state of a topic is its
latest record, so the history answers "when and how did this address agree?".

Whether a send needs a grant depends on the regime. Under opt-in (the default for leads in
Japan and the EU/EEA: Japan's Act on Specified Electronic Mail, the ePrivacy Directive with
GDPR) nothing is sent without a grant; under opt-out (CAN-SPAM and similar) mail may go to
anybody who has not objected. Either way a withdrawal stops the mail at once.

Everything here is pure: plain values in, decisions out.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

ALL_TOPICS = "all"
"""The topic of a statement about every topic ("unsubscribe from everything")."""

DEFAULT_TOPIC = "marketing"
"""The topic of a scenario that names none."""

TOPIC_PATTERN = r"^[a-z][a-z0-9_-]{0,63}$"
_TOPIC = re.compile(TOPIC_PATTERN)

EU_EEA_COUNTRIES = frozenset(
    {
        # EU member states
        "AT", "BE", "BG", "HR", "CY", "CZ", "DK", "EE", "FI", "FR", "DE", "GR", "HU", "IE", "IT", "LV",
        "LT", "LU", "MT", "NL", "PL", "PT", "RO", "SK", "SI", "ES", "SE",
        # the other EEA states
        "IS", "LI", "NO",
    }
)  # fmt: skip
OPT_IN_COUNTRIES = EU_EEA_COUNTRIES | {"JP"}
"""Where nurture asks for prior consent unless told otherwise (`NURTURE_CONSENT_OPT_IN_COUNTRIES`)."""


class ConsentStatus(StrEnum):
    GRANTED = "granted"
    WITHDRAWN = "withdrawn"
    PENDING = "pending"  # asked for through a form; waits for the double opt-in confirmation


class ConsentSource(StrEnum):
    IMPORT = "import"
    FORM = "form"
    API = "api"
    DOUBLE_OPT_IN = "double_opt_in"  # the person confirmed through the signed link
    PREFERENCES = "preferences"  # the preference centre (unsubscribe page)
    ONE_CLICK = "one_click"  # RFC 8058 one-click unsubscribe from a mail client
    COMPLAINT = "complaint"  # a spam complaint counts as an objection
    OPERATOR = "operator"  # someone on the team, on the person's request


class Regime(StrEnum):
    OPT_IN = "opt_in"
    OPT_OUT = "opt_out"


class RegimeSetting(StrEnum):
    AUTO = "auto"  # opt-in for leads in the opt-in countries, opt-out elsewhere
    OPT_IN = "opt_in"
    OPT_OUT = "opt_out"


def is_topic(value: str) -> bool:
    return bool(_TOPIC.match(value))


@dataclass(frozen=True, slots=True)
class ConsentRecord:
    """One statement of a person about one topic (or `ALL_TOPICS`)."""

    topic: str
    status: ConsentStatus
    source: ConsentSource
    at: datetime
    wording: str | None = None  # the text shown, or its version ("newsletter-form-v3")
    ip: str | None = None
    user_agent: str | None = None
    detail: str | None = None  # e.g. the send a one-click came from

    @property
    def confirmed(self) -> bool:
        """A grant the person confirmed by following the double opt-in link."""
        return self.status is ConsentStatus.GRANTED and self.source is ConsentSource.DOUBLE_OPT_IN


def regime_for(
    country: str | None, setting: RegimeSetting, opt_in_countries: Iterable[str] = OPT_IN_COUNTRIES
) -> Regime:
    """The regime a lead is mailed under. With `auto`, a lead in an opt-in country needs a
    grant; a lead elsewhere, or whose country is not known, is mailed until it objects."""
    if setting is RegimeSetting.OPT_IN:
        return Regime.OPT_IN
    if setting is RegimeSetting.OPT_OUT:
        return Regime.OPT_OUT
    countries = opt_in_countries if isinstance(opt_in_countries, frozenset) else frozenset(opt_in_countries)
    return Regime.OPT_IN if country and country.upper() in countries else Regime.OPT_OUT


def current(records: Sequence[ConsentRecord], topic: str) -> ConsentRecord | None:
    """The statement in force for `topic`: the latest record about it or about all topics
    (of two at the same moment, the later in the sequence)."""
    found: ConsentRecord | None = None
    for record in records:
        if record.topic in (topic, ALL_TOPICS) and (found is None or record.at >= found.at):
            found = record
    return found


@dataclass(frozen=True, slots=True)
class SendDecision:
    send: bool
    reason: str  # why, in words a person checking a lead's history understands
    regime: Regime
    record: ConsentRecord | None = None


def _when(record: ConsentRecord) -> str:
    return f"{record.at.isoformat(timespec='seconds')} via {record.source.value}"


def decide_send(records: Sequence[ConsentRecord], topic: str, regime: Regime) -> SendDecision:
    """May an email about `topic` go to a person with these records, under `regime`?"""
    record = current(records, topic)
    if record is None:
        if regime is Regime.OPT_IN:
            return SendDecision(False, f"no consent for topic '{topic}' (opt-in regime)", regime)
        return SendDecision(True, f"no objection to topic '{topic}' (opt-out regime)", regime)
    about = "all topics" if record.topic == ALL_TOPICS else f"topic '{record.topic}'"
    if record.status is ConsentStatus.WITHDRAWN:
        return SendDecision(False, f"consent to {about} withdrawn {_when(record)}", regime, record)
    if record.status is ConsentStatus.GRANTED:
        return SendDecision(True, f"consent to {about} granted {_when(record)}", regime, record)
    if regime is Regime.OPT_IN:
        return SendDecision(False, f"consent to {about} awaits confirmation (asked {_when(record)})", regime, record)
    return SendDecision(True, f"no objection to topic '{topic}' (opt-out regime; confirmation pending)", regime, record)


def decide_enrolment(
    records: Sequence[ConsentRecord], topic: str, require_confirmed: bool, regime: Regime
) -> SendDecision:
    """May a lead enter a scenario about `topic`? A scenario that requires confirmed consent
    takes only leads whose statement in force is a double opt-in confirmation; any other
    scenario takes every lead the send decision would mail."""
    if not require_confirmed:
        return decide_send(records, topic, regime)
    record = current(records, topic)
    if record is not None and record.confirmed:
        return SendDecision(True, f"consent to topic '{topic}' confirmed {_when(record)}", regime, record)
    if record is None:
        return SendDecision(False, f"no confirmed consent for topic '{topic}'", regime)
    return SendDecision(
        False, f"no confirmed consent for topic '{topic}' (last: {record.status.value} {_when(record)})", regime, record
    )
