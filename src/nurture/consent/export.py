"""The format of a person's data export (`nurture leads export EMAIL`, `GET /api/v1/leads/{email}/export`).

One JSON document with everything nurture holds about one address, for an access request
under GDPR article 15 or APPI article 33. The pydantic models below are the format's one
definition: the store fills them and `nurture leads export --schema` prints their JSON Schema.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any, Final, Literal

from pydantic import BaseModel, ConfigDict, Field

from nurture.consent.model import ALL_TOPICS, ConsentRecord, ConsentSource, ConsentStatus, Regime, decide_send

FORMAT: Final = "nurture.person-export/1"


class _Out(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ConsentOut(_Out):
    topic: str = Field(description="The topic, or 'all' for a statement about every topic")
    status: Literal["granted", "withdrawn", "pending"]
    source: str = Field(description="import, form, api, double_opt_in, preferences, one_click, complaint, operator")
    at: datetime
    wording: str | None = Field(default=None, description="The text the person agreed to, or its version")
    ip: str | None = None
    user_agent: str | None = None
    detail: str | None = None


class TopicState(_Out):
    topic: str
    regime: Literal["opt_in", "opt_out"]
    may_send: bool
    reason: str


class SuppressionOut(_Out):
    reason: str
    detail: str | None = None
    created_at: datetime


class EnrolmentOut(_Out):
    scenario_id: str
    scenario_version: str
    state: str
    status: str
    enrolled_at: datetime
    finished_at: datetime | None = None
    exit_reason: str | None = None


class EmailOut(_Out):
    scenario_id: str
    scenario_version: str
    step: str
    template: str = Field(description="The template the email was rendered from")
    subject: str = Field(description="The subject as the scenario wrote it (it may use the variables)")
    sender: str
    reply_to: str | None = None
    status: str = Field(description="pending, sent, failed, bounced, skipped, ...")
    created_at: datetime
    sent_at: datetime | None = None
    message_id: str | None = None
    detail: str | None = Field(default=None, description="Why it failed or was skipped")
    variables: dict[str, Any] = Field(
        default_factory=dict, description="The lead fields the template was rendered with (as held today)"
    )


class EventOut(_Out):
    type: str
    at: datetime
    properties: dict[str, Any]
    external_id: str | None = None
    received_at: datetime


class ScorePoint(_Out):
    at: datetime
    fit: int
    engagement: int
    grade: str


class ScoresOut(_Out):
    fit: int
    engagement: int
    grade: str
    adjustment: int
    scored_at: datetime | None = None
    history: list[ScorePoint]


class StageChange(_Out):
    at: datetime
    from_stage: str
    to_stage: str
    reason: str
    actor: str


class LifecycleOut(_Out):
    stage: str
    owner: str | None = None
    changes: list[StageChange]


class ActivityOut(_Out):
    at: datetime
    kind: str
    note: str
    actor: str


class NotificationOut(_Out):
    kind: str
    target: str
    subject: str
    status: str
    created_at: datetime
    sent_at: datetime | None = None


class AuditOut(_Out):
    at: datetime
    kind: str
    detail: dict[str, Any]


class PersonExport(_Out):
    """Everything held about one person."""

    format: Literal["nurture.person-export/1"] = FORMAT
    exported_at: datetime
    email: str
    fields: dict[str, Any] = Field(description="The lead's fields, custom fields and tags")
    consent: list[ConsentOut] = Field(description="Every consent statement, oldest first")
    consent_in_force: list[TopicState] = Field(description="Per topic: whether nurture may mail, and why")
    suppressed: list[SuppressionOut]
    enrolments: list[EnrolmentOut]
    emails: list[EmailOut]
    events: list[EventOut]
    scores: ScoresOut
    lifecycle: LifecycleOut
    activities: list[ActivityOut]
    notifications: list[NotificationOut] = Field(description="Messages to sales about the person")
    audit: list[AuditOut]


def export_schema() -> dict[str, Any]:
    document = PersonExport.model_json_schema()
    document["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    document["title"] = "nurture person export"
    return document


_LEAD_INTERNAL = ("id", "custom", "score_fit", "score_engagement", "grade", "score_adjustment", "scored_at",
                  "engagement_since", "lifecycle_stage", "owner")  # fmt: skip


def build_export(
    person: Mapping[str, Any],
    *,
    now: datetime,
    regime: Regime,
    topics: Sequence[str],
) -> PersonExport:
    """The export document from the rows the store holds about a person (`Consents.person`):
    the lead row, and lists of rows under consent, suppressed, enrolments, sends, events,
    scores, lifecycle, activities, notifications and audit."""
    lead = dict(person["lead"])
    fields = {k: v for k, v in lead.items() if k not in _LEAD_INTERNAL}
    fields.update({f"custom.{k}": v for k, v in (lead.get("custom") or {}).items()})
    records = [
        ConsentRecord(
            r["topic"], ConsentStatus(r["status"]), ConsentSource(r["source"]), r["at"],
            r["wording"], r["ip"], r["user_agent"], r["detail"],
        )
        for r in person["consent"]
    ]  # fmt: skip
    known = list(dict.fromkeys([*topics, *(r.topic for r in records if r.topic != ALL_TOPICS)]))
    in_force = []
    for topic in known:
        decision = decide_send(records, topic, regime)
        in_force.append(TopicState(topic=topic, regime=regime.value, may_send=decision.send, reason=decision.reason))
    variables = {k: v for k, v in fields.items() if k not in ("created_at", "updated_at")}
    return PersonExport(
        exported_at=now,
        email=lead["email"],
        fields=fields,
        consent=[ConsentOut(**{k: r[k] for k in ConsentOut.model_fields}) for r in person["consent"]],
        consent_in_force=in_force,
        suppressed=[SuppressionOut(**{k: r[k] for k in SuppressionOut.model_fields}) for r in person["suppressed"]],
        enrolments=[EnrolmentOut(**{k: r[k] for k in EnrolmentOut.model_fields}) for r in person["enrolments"]],
        emails=[
            EmailOut(
                **{k: r[k] for k in EmailOut.model_fields if k not in ("detail", "variables")},
                detail=r["last_error"],
                variables=variables,
            )
            for r in person["sends"]
        ],
        events=[
            EventOut(
                type=r["type"],
                at=r["at"],
                properties=r["props"] or {},
                external_id=r["external_id"],
                received_at=r["received_at"],
            )
            for r in person["events"]
        ],
        scores=ScoresOut(
            fit=lead["score_fit"],
            engagement=lead["score_engagement"],
            grade=lead["grade"],
            adjustment=lead["score_adjustment"],
            scored_at=lead["scored_at"],
            history=[ScorePoint(**{k: r[k] for k in ScorePoint.model_fields}) for r in person["scores"]],
        ),
        lifecycle=LifecycleOut(
            stage=lead["lifecycle_stage"],
            owner=lead["owner"],
            changes=[StageChange(**{k: r[k] for k in StageChange.model_fields}) for r in person["lifecycle"]],
        ),
        activities=[ActivityOut(**{k: r[k] for k in ActivityOut.model_fields}) for r in person["activities"]],
        notifications=[
            NotificationOut(**{k: r[k] for k in NotificationOut.model_fields}) for r in person["notifications"]
        ],
        audit=[AuditOut(at=r["at"], kind=r["kind"], detail=r["detail"] or {}) for r in person["audit"]],
    )
