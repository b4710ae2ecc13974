"""The ingest API other systems call: leads, behaviour events, sales feedback.

Every call needs an API key (`Authorization: Bearer nk_…` or `X-API-Key`). A request is
validated whole before anything is written and written in one transaction, so a rejected
request (422, naming the field) stores nothing. Events carry an optional `id`; an id seen
before is ignored, so senders may retry freely. An event dated before the event retention's
prune is ignored too (counted as `too_old`, with the reason): its month is kept only as
daily counts, which are final, and it is most likely a redelivery they already hold.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Header, HTTPException, Request
from fastapi.responses import JSONResponse
from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, field_validator

from nurture.consent.export import PersonExport
from nurture.consent.model import ConsentSource
from nurture.errors import NurtureError
from nurture.feedback.suppressions import REASONS as SUPPRESSION_REASONS
from nurture.feedback.suppressions import Suppression
from nurture.leads import LeadIn, erase_person, export_person, save_lead, storable_json
from nurture.mail.message import PLAIN_ADDRESS
from nurture.vocabulary import EventType
from nurture.web.context import Web, web

CLOCK_SKEW = timedelta(minutes=5)
MAX_BATCH = 1000


def api_client(
    request: Request,
    authorization: Annotated[str | None, Header()] = None,
    x_api_key: Annotated[str | None, Header()] = None,
) -> str:
    """The name of the calling system's key; 401 without a valid, unrevoked one."""
    name: str | None = getattr(request.state, "api_client", None)  # checked before the body was read
    if name is not None:
        return name
    key = x_api_key or (authorization or "").removeprefix("Bearer ").strip()
    name = web(request).store.access.check_key(key) if key else None
    if name is None:
        raise HTTPException(401, "a valid API key is required", headers={"WWW-Authenticate": "Bearer"})
    return name


router = APIRouter(prefix="/api/v1", tags=["ingest"], dependencies=[Depends(api_client)])


class EventIn(BaseModel):
    """One thing a lead did."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    id: str | None = Field(
        default=None, min_length=1, max_length=200, description="Your id for the event; an id seen before is ignored"
    )
    email: str = Field(max_length=320, description="The lead's email address")
    type: EventType
    at: AwareDatetime | None = Field(default=None, description="When it happened (ISO 8601 with offset); default now")
    props: dict[str, str | int | float | bool | None] = Field(
        default_factory=dict, description="e.g. url, title, asset, webinar; flat values only"
    )

    @field_validator("email")
    @classmethod
    def _lower(cls, value: str) -> str:
        if "\x00" in value:
            raise ValueError("contains a NUL character")
        return value.lower()

    @field_validator("props")
    @classmethod
    def _small(cls, value: dict[str, Any]) -> dict[str, Any]:
        if len(value) > 50:
            raise ValueError("at most 50 properties")
        for key, item in value.items():
            if len(key) > 100 or (isinstance(item, str) and len(item) > 2000):
                raise ValueError(f"property {key[:100]!r} is too long (keys ≤ 100, values ≤ 2000 characters)")
        problem = storable_json(value)
        if problem:
            raise ValueError(problem)
        return value

    @field_validator("id")
    @classmethod
    def _id(cls, value: str | None) -> str | None:
        if value is not None and "\x00" in value:
            raise ValueError("contains a NUL character")
        return value


class EventBatch(BaseModel):
    model_config = ConfigDict(extra="forbid")
    events: list[EventIn] = Field(min_length=1, max_length=MAX_BATCH)


class LeadBatch(BaseModel):
    model_config = ConfigDict(extra="forbid")
    leads: list[LeadIn] = Field(min_length=1, max_length=MAX_BATCH)


class FeedbackIn(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)
    email: str = Field(max_length=320)
    action: Literal["accept", "reject", "recycle", "won"]
    reason: str = Field(min_length=1, max_length=2000)
    by: str = Field(default="sales", min_length=1, max_length=200)


class Stored(BaseModel):
    stored: int
    duplicates: int
    too_old: int | None = Field(default=None, description="Events dated before `kept_since`, not stored")
    kept_since: datetime | None = Field(
        default=None, description="Events before this moment were pruned into daily counts (event retention)"
    )
    reason: str | None = Field(default=None, description="Why events were not stored, when some were too old")


class LeadsStored(BaseModel):
    created: int
    updated: int
    ids: list[int]


class LeadOut(BaseModel):
    email: str
    first_name: str | None
    last_name: str | None
    company: str | None
    lifecycle_stage: str
    owner: str | None
    grade: str
    score_fit: int
    score_engagement: int
    unsubscribed: bool
    bounced: bool
    tags: list[str]
    custom: dict[str, Any]


class FeedbackOut(BaseModel):
    email: str
    from_stage: str
    to_stage: str


def _invalid(errors: list[dict[str, Any]]) -> JSONResponse:
    return JSONResponse({"detail": errors}, status_code=422)


def _store_events(w: Web, events: list[EventIn], batch: bool) -> JSONResponse | Stored:
    now = w.clock.now()
    emails = sorted({e.email for e in events})
    ids = w.store.leads.ids_by_email(emails)
    errors = []
    for index, event in enumerate(events):
        loc: list[str | int] = ["body", "events", index] if batch else ["body"]
        if event.email not in ids:
            errors.append({"loc": [*loc, "email"], "msg": f"no lead with email {event.email}", "type": "not_found"})
        if event.at is not None and event.at > now + CLOCK_SKEW:
            errors.append({"loc": [*loc, "at"], "msg": "lies in the future", "type": "value_error"})
    if errors:
        return _invalid(errors)
    address_of = {lead_id: email for email, lead_id in ids.items()}
    rows = [(ids[e.email], e.type, e.at or now, e.props, e.id) for e in events]
    with w.store.transaction() as conn:
        recent = all(w.store.events.recent(row[2]) for row in rows)
        horizon = None if recent else w.store.events.horizon(conn)
        kept = [row for row in rows if horizon is None or row[2] >= horizon]
        fresh = w.store.events.record_many(conn, kept)
        # An unsubscribe or bounce too old to store still suppresses: suppression is not part of
        # the pruned counts, and repeating it is harmless.
        refused = [(row[0], row[1]) for row in rows if horizon is not None and row[2] < horizon]
        for lead_id, type_ in [*fresh, *refused]:
            if type_ in ("unsubscribe", "bounce"):
                w.store.leads.suppress(conn, address_of[lead_id], type_, "ingest API")
    stored, too_old = len(fresh), len(rows) - len(kept)
    if not too_old:
        return Stored(stored=stored, duplicates=len(kept) - stored)
    assert horizon is not None
    return Stored(
        stored=stored,
        duplicates=len(kept) - stored,
        too_old=too_old,
        kept_since=horizon,
        reason=(
            f"{too_old} event{'s' if too_old > 1 else ''} dated before {horizon:%Y-%m-%d} not stored: events "
            "before then are kept only as daily counts (event retention), which are final; a redelivered "
            "event is already counted in them (an unsubscribe or bounce among them still suppresses its address)"
        ),
    )


@router.post(
    "/events",
    response_model=Stored,
    response_model_exclude_none=True,
    responses={422: {"description": "A field is invalid"}},
)
def post_event(event: EventIn, request: Request) -> Any:
    """Record one event (page view, form fill, download, webinar attendance, custom, ...)."""
    return _store_events(web(request), [event], batch=False)


@router.post(
    "/events/batch",
    response_model=Stored,
    response_model_exclude_none=True,
    responses={422: {"description": "An event is invalid"}},
)
def post_events(batch: EventBatch, request: Request) -> Any:
    """Record up to 1,000 events at once: all of them, or (on any error) none."""
    return _store_events(web(request), batch.events, batch=True)


def _upsert(w: Web, leads: list[LeadIn]) -> LeadsStored:
    result = LeadsStored(created=0, updated=0, ids=[])
    now = w.clock.now()
    sender = w.settings.confirmation_from
    with w.store.transaction() as conn:
        for lead in leads:
            lead_id, created = save_lead(w.store, conn, lead, now, ConsentSource.API, sender)
            result.ids.append(lead_id)
            result.created += created
            result.updated += not created
    return result


@router.post("/leads", response_model=LeadsStored)
def post_lead(lead: LeadIn, request: Request) -> LeadsStored:
    """Create or update one lead, by email. Custom fields merge; tags add. `consent`
    statements are recorded; a `pending` one sends the double opt-in email."""
    return _upsert(web(request), [lead])


@router.post("/leads/batch", response_model=LeadsStored)
def post_leads(batch: LeadBatch, request: Request) -> LeadsStored:
    """Create or update up to 1,000 leads: all of them, or (on any error) none."""
    return _upsert(web(request), batch.leads)


@router.get("/leads/{email}", response_model=LeadOut, responses={404: {"description": "No such lead"}})
def get_lead(email: str, request: Request) -> Any:
    row = web(request).store.leads.by_email(email)
    if row is None:
        raise HTTPException(404, f"no lead with email {email}")
    return LeadOut.model_validate(dict(row._mapping))


@router.get(
    "/leads/{email}/export",
    response_model=PersonExport,
    responses={404: {"description": "Nothing is held about this address"}},
)
def export_lead(email: str, request: Request) -> Any:
    """Everything held about one person (an access request), in the `nurture.person-export/1` format."""
    w = web(request)
    topics = sorted({c.scenario.topic for c in w.project()[0].values()})
    document = export_person(w.store, w.settings, email, topics)
    if document is None:
        raise HTTPException(404, f"nothing is held about {email}")
    return document


class EraseIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    by: str = Field(min_length=1, max_length=200, description="Who asked for the erasure (kept in the erasure log)")


class ErasureOut(BaseModel):
    erasure: int = Field(description="The erasure log entry")
    found: bool = Field(description="Whether a lead had the address")
    deleted: dict[str, int] = Field(description="Rows deleted, per table")
    redacted: dict[str, int] = Field(description="Rows where mentions of the person were replaced, per table")


@router.post("/leads/{email}/erase", response_model=ErasureOut)
def erase_lead(email: str, item: EraseIn, request: Request, client: Annotated[str, Depends(api_client)]) -> Any:
    """Remove the person from every table; only a keyed hash of the address stays on the
    suppression list, so it is never mailed again. Answers the same for an unknown address."""
    w = web(request)
    done = erase_person(w.store, w.settings, email, f"{item.by} (API key {client})")
    return ErasureOut(erasure=done.log_id, found=done.found, deleted=done.deleted, redacted=done.redacted)


@router.post("/feedback", response_model=FeedbackOut, responses={409: {"description": "Not allowed in this stage"}})
def post_feedback(item: FeedbackIn, request: Request) -> Any:
    """Sales feedback on a lead: accept, reject, recycle (back to nurture) or won."""
    from nurture.lifecycle import feedback

    w = web(request)
    if w.store.leads.by_email(item.email) is None:
        return _invalid([{"loc": ["body", "email"], "msg": f"no lead with email {item.email}", "type": "not_found"}])
    try:
        old, new = feedback(w.store, item.email, item.action, item.reason, item.by, w.clock.now())
    except NurtureError as exc:
        raise HTTPException(409, str(exc)) from exc
    return FeedbackOut(email=item.email, from_stage=old, to_stage=new)


class SuppressionIn(BaseModel):
    """An address never to be mailed, e.g. from another tool's suppression list."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    email: str = Field(max_length=320)
    reason: str = Field(default="imported", description=f"One of {', '.join(SUPPRESSION_REASONS)}")
    created_at: AwareDatetime | None = Field(default=None, description="When the other tool suppressed it")

    @field_validator("email")
    @classmethod
    def _address(cls, value: str) -> str:
        value = value.lower()
        if not PLAIN_ADDRESS.match(value):
            raise ValueError("not an email address")
        return value

    @field_validator("reason")
    @classmethod
    def _reason(cls, value: str) -> str:
        if value not in SUPPRESSION_REASONS:
            raise ValueError(f"unknown reason {value!r}: use one of {', '.join(SUPPRESSION_REASONS)}")
        return value


class SuppressionBatch(BaseModel):
    model_config = ConfigDict(extra="forbid")
    suppressions: list[SuppressionIn] = Field(max_length=10_000)


class SuppressionOut(BaseModel):
    email: str
    reason: str
    created_at: datetime | None
    source: str


class SuppressionsStored(BaseModel):
    added: int
    already: int


@router.get("/suppressions", response_model=list[SuppressionOut])
def get_suppressions(request: Request) -> Any:
    """The whole suppression list (for a migration to another tool)."""
    return [
        SuppressionOut(email=s.email, reason=s.reason, created_at=s.created_at, source=s.source)
        for s in web(request).store.feedback.suppressions()
    ]


@router.post("/suppressions", response_model=SuppressionsStored)
def post_suppressions(batch: SuppressionBatch, request: Request) -> SuppressionsStored:
    """Add addresses to the suppression list in one transaction; known ones are kept as they are."""
    w = web(request)
    rows = [Suppression(s.email, s.reason, s.created_at, "api") for s in batch.suppressions]
    unique = list({r.email: r for r in rows}.values())
    added = w.store.feedback.import_suppressions(unique, w.clock.now())
    return SuppressionsStored(added=added, already=len(unique) - added)
