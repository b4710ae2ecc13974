"""The tables. Leads are rows; a lead's place in a scenario is an enrolment row."""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

from sqlalchemy import BigInteger, Column, Index, Table, UniqueConstraint, func, text
from sqlmodel import Field, SQLModel

from nurture.store.types import UTCDateTime, json_type
from nurture.vocabulary import EnrolmentStatus, SendStatus, Stage


def _ts(**kw: Any) -> Any:
    return Field(sa_type=UTCDateTime, **kw)


class Lead(SQLModel, table=True):
    # Accounts are found by company name whatever its case (the account roll-up); the
    # dashboard's filtered lists, newest change first, and its sort by engagement. The search
    # indexes that differ per database live in migration 0010 only (SEARCH_INDEXES).
    __table_args__ = (
        Index("ix_lead_company_lower", func.lower(text("company"))),
        Index("ix_lead_stage_updated", "lifecycle_stage", "updated_at"),
        Index("ix_lead_owner_updated", "owner", "updated_at"),
        Index("ix_lead_grade_updated", "grade", "updated_at"),
        Index("ix_lead_engagement", "score_engagement"),
        Index("ix_lead_stage_engagement", "lifecycle_stage", "score_engagement"),
    )
    id: int | None = Field(default=None, primary_key=True)
    email: str = Field(max_length=320, unique=True)
    first_name: str | None = Field(default=None, max_length=200)
    last_name: str | None = Field(default=None, max_length=200)
    company: str | None = Field(default=None, max_length=300)
    company_size: int | None = None
    industry: str | None = Field(default=None, max_length=200)
    job_title: str | None = Field(default=None, max_length=300)
    country: str | None = Field(default=None, max_length=2)
    timezone: str | None = Field(default=None, max_length=64)
    source: str | None = Field(default=None, max_length=100)
    lifecycle_stage: str = Field(default=Stage.COLD.value, max_length=20)
    owner: str | None = Field(default=None, max_length=200)
    tags: list[str] = Field(default_factory=list, sa_column=Column(json_type(), nullable=False))
    custom: dict[str, Any] = Field(default_factory=dict, sa_column=Column(json_type(), nullable=False))
    unsubscribed: bool = False
    bounced: bool = False
    score_fit: int = 0
    score_engagement: int = 0
    grade: str = Field(default="D", max_length=2)
    engagement_since: datetime | None = _ts(default=None, nullable=True)
    scored_at: datetime | None = _ts(default=None, nullable=True)
    score_adjustment: int = Field(default=0, description="Points scenarios added with adjust_score")
    created_at: datetime = _ts()
    updated_at: datetime = _ts(index=True)


class ScenarioVersion(SQLModel, table=True):
    """Every version of every scenario ever run, so enrolled leads can finish on theirs."""

    __tablename__ = "scenario_version"
    scenario_id: str = Field(primary_key=True, max_length=100)
    version: str = Field(primary_key=True, max_length=12)
    path: str
    source: str
    loaded_at: datetime = _ts()
    is_current: bool = True


class Enrollment(SQLModel, table=True):
    __table_args__ = (
        Index(
            "ix_enrollment_due",
            "due_at",
            postgresql_where=text("status = 'active'"),
            sqlite_where=text("status = 'active'"),
        ),
        Index(
            "ux_enrollment_active",
            "lead_id",
            "scenario_id",
            unique=True,
            postgresql_where=text("status = 'active'"),
            sqlite_where=text("status = 'active'"),
        ),
        Index("ix_enrollment_scenario", "scenario_id", "status", "state"),
        Index("ix_enrollment_lead_scenario", "lead_id", "scenario_id"),
    )
    id: int | None = Field(default=None, primary_key=True)
    lead_id: int = Field(foreign_key="lead.id", index=True)
    scenario_id: str = Field(max_length=100)
    scenario_version: str = Field(max_length=12)
    state: str = Field(max_length=100)
    status: str = Field(default=EnrolmentStatus.ACTIVE.value, max_length=12)
    seq: int = 0
    entered_at: datetime = _ts()
    due_at: datetime | None = _ts(default=None, nullable=True)
    lease_owner: str | None = Field(default=None, max_length=100)
    lease_until: datetime | None = _ts(default=None, nullable=True)
    enrolled_at: datetime = _ts()
    finished_at: datetime | None = _ts(default=None, nullable=True)
    exit_reason: str | None = Field(default=None, max_length=200)


class Event(SQLModel, table=True):
    __table_args__ = (
        Index("ix_event_lead_at", "lead_id", "at"),
        Index("ix_event_received_lead", "received_at", "lead_id"),  # the qualify job's changed leads
        Index(  # the reputation rates' unsubscribes after recent sends, without reading other events
            "ix_event_unsubscribe",
            "lead_id",
            "at",
            postgresql_where=text("type = 'unsubscribe'"),
            sqlite_where=text("type = 'unsubscribe'"),
        ),
    )
    id: int | None = Field(default=None, primary_key=True)
    lead_id: int = Field(foreign_key="lead.id")
    type: str = Field(max_length=40)
    at: datetime = _ts()
    props: dict[str, Any] = Field(default_factory=dict, sa_column=Column(json_type(), nullable=False))
    external_id: str | None = Field(default=None, max_length=200, unique=True)
    received_at: datetime = _ts()


class EventDaily(SQLModel, table=True):
    """Pruned events, rolled up: how many events of a type a lead had on a UTC day; email
    events (opens, clicks, ...) also per email they refer to (`send_id`; 0 for none and for
    other events) and per verdict of the machine filter as the scenario report judges them
    (human, suspect, machine; other events are all `human`). What reports keep counting
    after `nurture events prune` dropped the raw events (see `store/retention.py`). No
    foreign key: the rows come from events, which have theirs, and checking one per row
    more than doubled the time a prune takes to write them; an erasure deletes them too."""

    __tablename__ = "event_daily"
    lead_id: int = Field(primary_key=True)
    day: date = Field(primary_key=True)
    type: str = Field(primary_key=True, max_length=40)
    send_id: int = Field(default=0, primary_key=True)
    verdict: str = Field(default="human", primary_key=True, max_length=10)
    n: int = 0


class Send(SQLModel, table=True):
    """The outbox: one row per email a step asked for, unique by idempotency key."""

    __table_args__ = (
        Index(
            "ix_send_pending",
            "next_attempt_at",
            postgresql_where=text("status IN ('pending', 'sending')"),
            sqlite_where=text("status IN ('pending', 'sending')"),
        ),
        Index("ix_send_lead_sent", "lead_id", "sent_at"),
    )
    id: int | None = Field(default=None, primary_key=True)
    idempotency_key: str = Field(max_length=64, unique=True)
    kind: str = Field(default="email", max_length=20)
    lead_id: int = Field(foreign_key="lead.id")
    enrollment_id: int | None = Field(default=None, foreign_key="enrollment.id")
    scenario_id: str = Field(max_length=100)
    scenario_version: str = Field(max_length=12)
    step: str = Field(max_length=100)
    template: str = Field(max_length=200)
    subject: str
    sender: str
    reply_to: str | None = None
    status: str = Field(default=SendStatus.PENDING.value, max_length=12)
    attempts: int = 0
    created_at: datetime = _ts()
    next_attempt_at: datetime = _ts()
    lease_owner: str | None = Field(default=None, max_length=100)
    lease_until: datetime | None = _ts(default=None, nullable=True)
    sent_at: datetime | None = _ts(default=None, nullable=True)
    message_id: str | None = Field(default=None, max_length=300)
    last_error: str | None = None
    # When the step chose to send: window (as the send window allows), optimal (the lead's
    # best hour), control (send_time: optimal's comparison group, sent as the window allows).
    timing: str = Field(default="window", max_length=10)


class Suppression(SQLModel, table=True):
    email: str = Field(primary_key=True, max_length=320)
    reason: str = Field(max_length=40)
    detail: str | None = None
    created_at: datetime = _ts()


class Feedback(SQLModel, table=True):
    """What receivers and ESPs reported after the SMTP session: bounces, complaints,
    deliveries, ESP opens and clicks, with the reply as given and what nurture did."""

    __table_args__ = (
        UniqueConstraint("source", "event_id"),  # a redelivered webhook event counts once
        Index("ix_feedback_email_kind", "email", "kind", "received_at"),
        Index("ix_feedback_send", "send_id"),
        Index("ix_feedback_lead", "lead_id", "received_at"),
    )
    id: int | None = Field(default=None, primary_key=True)
    received_at: datetime = _ts()
    occurred_at: datetime | None = _ts(default=None, nullable=True)
    source: str = Field(max_length=20)  # dsn, arf, ses, sendgrid, mailgun, postmark
    kind: str = Field(max_length=20)
    email: str | None = Field(default=None, max_length=320)
    lead_id: int | None = Field(default=None, foreign_key="lead.id")
    send_id: int | None = Field(default=None, foreign_key="send.id")
    scenario_id: str | None = Field(default=None, max_length=100)
    status: str | None = Field(default=None, max_length=12)
    code: int | None = None
    diagnostic: str = ""
    event_id: str | None = Field(default=None, max_length=200)
    authenticated: bool = False
    decision: str = ""


class ScenarioPause(SQLModel, table=True):
    """A scenario held back by the reputation guard (or by hand) until someone resumes it."""

    __tablename__ = "scenario_pause"
    scenario_id: str = Field(primary_key=True, max_length=100)
    paused_at: datetime = _ts()
    reason: str = ""
    resumed_at: datetime | None = _ts(default=None, nullable=True)
    resumed_by: str | None = Field(default=None, max_length=200)


class AuditLog(SQLModel, table=True):
    __tablename__ = "audit_log"
    __table_args__ = (Index("ix_audit_lead", "lead_id", "at"),)
    id: int | None = Field(default=None, primary_key=True)
    at: datetime = _ts()
    lead_id: int | None = Field(default=None, foreign_key="lead.id")
    enrollment_id: int | None = None
    kind: str = Field(max_length=40)
    detail: dict[str, Any] = Field(default_factory=dict, sa_column=Column(json_type(), nullable=False))


class LifecycleChange(SQLModel, table=True):
    """Every change of a lead's lifecycle stage, with who or what made it and why."""

    __tablename__ = "lifecycle_change"
    __table_args__ = (Index("ix_lifecycle_lead", "lead_id", "at"), Index("ix_lifecycle_stage_at", "to_stage", "at"))
    id: int | None = Field(default=None, primary_key=True)
    lead_id: int = Field(foreign_key="lead.id")
    at: datetime = _ts()
    from_stage: str = Field(max_length=20)
    to_stage: str = Field(max_length=20)
    reason: str
    actor: str = Field(max_length=200)


class ScoreHistory(SQLModel, table=True):
    __tablename__ = "score_history"
    __table_args__ = (Index("ix_score_history_lead", "lead_id", "at"),)
    id: int | None = Field(default=None, primary_key=True)
    lead_id: int = Field(foreign_key="lead.id")
    at: datetime = _ts()
    fit: int
    engagement: int
    grade: str = Field(max_length=2)


class Activity(SQLModel, table=True):
    """What sales did or learned: calls, meetings, survey answers, feedback."""

    __table_args__ = (Index("ix_activity_lead", "lead_id", "at"),)
    id: int | None = Field(default=None, primary_key=True)
    lead_id: int = Field(foreign_key="lead.id")
    at: datetime = _ts()
    kind: str = Field(max_length=40)
    note: str = ""
    actor: str = Field(max_length=200)


class Notification(SQLModel, table=True):
    """The durable outbox of messages to sales: emails to owners and signed webhooks."""

    __table_args__ = (
        Index(
            "ix_notification_pending",
            "next_attempt_at",
            postgresql_where=text("status IN ('pending', 'sending')"),
            sqlite_where=text("status IN ('pending', 'sending')"),
        ),
    )
    id: int | None = Field(default=None, primary_key=True)
    key: str = Field(max_length=100, unique=True)
    kind: str = Field(max_length=20)  # email | webhook
    lead_id: int | None = Field(default=None, foreign_key="lead.id")
    target: str
    subject: str = ""
    payload: dict[str, Any] = Field(default_factory=dict, sa_column=Column(json_type(), nullable=False))
    status: str = Field(default=SendStatus.PENDING.value, max_length=12)
    attempts: int = 0
    created_at: datetime = _ts()
    next_attempt_at: datetime = _ts()
    lease_owner: str | None = Field(default=None, max_length=100)
    lease_until: datetime | None = _ts(default=None, nullable=True)
    sent_at: datetime | None = _ts(default=None, nullable=True)
    last_error: str | None = None


class Setting(SQLModel, table=True):
    """Small named values the daemon keeps between runs (e.g. enrolment watermarks)."""

    __tablename__ = "kv"
    key: str = Field(primary_key=True, max_length=200)
    value: str


class Experiment(SQLModel, table=True):
    """An experiment inside a journey (one per split and version of its settings): running,
    or over with its decision. `key` is the compiler's experiment key."""

    key: str = Field(primary_key=True, max_length=200)
    scenario_id: str = Field(max_length=100, index=True)
    step: str = Field(max_length=100)
    status: str = Field(default="running", max_length=12)
    started_at: datetime = _ts()
    checked_at: datetime | None = _ts(default=None, nullable=True)
    decided_at: datetime | None = _ts(default=None, nullable=True)
    winner: str | None = Field(default=None, max_length=100)
    route_to: str | None = Field(default=None, max_length=100)
    effect: float | None = None
    interval_low: float | None = None
    interval_high: float | None = None
    p_value: float | None = None  # mSPRT: the smallest always-valid p-value seen
    statistic: str = ""
    reason: str = ""


class ExperimentAssignment(SQLModel, table=True):
    """A lead's arm in an experiment (once per lead), and whether and when it reached the goal.

    `settled` once the goal's window has closed: the outcome is final and counts."""

    __tablename__ = "experiment_assignment"
    __table_args__ = (
        UniqueConstraint("experiment_key", "lead_id"),
        Index("ix_assignment_open", "experiment_key", "settled"),
    )
    id: int | None = Field(default=None, primary_key=True)
    experiment_key: str = Field(max_length=200, foreign_key="experiment.key")
    lead_id: int = Field(foreign_key="lead.id", index=True)
    enrollment_id: int | None = None
    arm: str = Field(max_length=100)
    randomised: bool = True
    assigned_at: datetime = _ts()
    reached_at: datetime | None = _ts(default=None, nullable=True)
    settled: bool = False


class StepVisit(SQLModel, table=True):
    """How many times leads moved into each step of each scenario version (for funnels).

    A counter per step, bumped once per step per advance batch, costs far less than a row
    per visit; a lead's own path is in its audit log and sends."""

    __tablename__ = "step_visit"
    scenario_id: str = Field(primary_key=True, max_length=100)
    scenario_version: str = Field(primary_key=True, max_length=12)
    step: str = Field(primary_key=True, max_length=100)
    entered: int = 0


class Tally(SQLModel, table=True):
    """Counts of rows by what reports group them by, kept by database triggers in the
    transaction that inserts, changes or deletes the rows (see `store/tallies.py`).

    `kind` names the table counted (event, send, enrolment, lead), `a`..`d` the grouping
    values, `day` the UTC day ('' when not by day). `part` is 0 on SQLite (one writer: the
    triggers add to the row in place) and on PostgreSQL for folded totals; concurrent
    PostgreSQL writers each add to a row of their own transaction id, so they never wait on
    each other's counter rows, and `Tallies.fold` later adds those rows into part 0.
    """

    __table_args__ = (Index("ux_tally", "kind", "a", "b", "c", "d", "day", "part", unique=True),)
    id: int | None = Field(default=None, primary_key=True)
    kind: str = Field(max_length=12)
    a: str = Field(default="", max_length=100)
    b: str = Field(default="", max_length=200)
    c: str = Field(default="", max_length=200)
    d: str = Field(default="", max_length=20)
    day: str = Field(default="", max_length=10)
    part: int = Field(default=0, sa_type=BigInteger)
    n: int = Field(default=0, sa_type=BigInteger)


class Outcome(SQLModel, table=True):
    """What became of an email or an enrolment, for the scenario report: one row per fact
    (`metric`: opened, clicked, machine_opened, machine_clicked, bot_events, unsubscribed,
    bounced, converted; converted_lead per lead and scenario; hot per enrolment), with
    `day` the UTC day of its enrolment and `detail` the day of an unsubscribe or the
    microseconds from enrolment to hot. Written by `Outcomes.catch_up` for the leads that
    `outcome_pending` names; triggers add each row's `n` to the tallies (kind 'outcome').
    """

    __table_args__ = (Index("ix_outcome_lead", "lead_id"),)
    id: int | None = Field(default=None, primary_key=True)
    lead_id: int
    send_id: int | None = None
    enrollment_id: int | None = None
    scenario_id: str = Field(max_length=100)
    step: str = Field(default="", max_length=100)
    metric: str = Field(max_length=20)
    detail: str = Field(default="", max_length=20)
    day: str = Field(max_length=10)
    n: int = 1


class OutcomePending(SQLModel, table=True):
    """Leads whose outcomes may have changed, put here by triggers in the transaction that
    changed them (an email event, a send marked sent after a conversion, a stage change, an
    enrolment, a deletion); `Outcomes.catch_up` recounts them and removes the rows it read."""

    __tablename__ = "outcome_pending"
    id: int | None = Field(default=None, primary_key=True)
    lead_id: int


class ApiKey(SQLModel, table=True):
    """A key other systems use on the ingest API. Only its SHA-256 is kept: keys are long
    random strings, so a fast hash is enough and a stolen database reveals none."""

    __tablename__ = "api_key"
    id: int | None = Field(default=None, primary_key=True)
    name: str = Field(max_length=100, unique=True)
    prefix: str = Field(max_length=16, description="The key's first characters, to tell keys apart")
    key_hash: str = Field(max_length=64, unique=True)
    created_at: datetime = _ts()
    revoked_at: datetime | None = _ts(default=None, nullable=True)
    last_used_at: datetime | None = _ts(default=None, nullable=True)


class DashboardUser(SQLModel, table=True):
    """Someone who may log in to the dashboard; the password is kept as a salted scrypt hash."""

    __tablename__ = "dashboard_user"
    id: int | None = Field(default=None, primary_key=True)
    username: str = Field(max_length=100, unique=True)
    password_hash: str = Field(max_length=300)
    display_name: str = Field(default="", max_length=200)
    email: str | None = Field(default=None, max_length=320, description="Where the dashboard sends their test emails")
    created_at: datetime = _ts()
    disabled: bool = False


class LoginFailure(SQLModel, table=True):
    """Wrong dashboard passwords per user name and per client address (the login throttle),
    in the database so that every `serve` and `run` process, and a restarted one, counts
    them together. Times are the database's clock."""

    __tablename__ = "login_failure"
    key: str = Field(primary_key=True, max_length=300)
    failures: int = 0
    blocked_until: datetime | None = _ts(default=None, nullable=True)
    last_failed_at: datetime = _ts(index=True)


class ConsentRecordRow(SQLModel, table=True):
    """Every consent statement of a lead, per topic; only ever added (the latest is in force)."""

    __tablename__ = "consent_record"
    __table_args__ = (Index("ix_consent_lead", "lead_id", "at"),)
    id: int | None = Field(default=None, primary_key=True)
    lead_id: int = Field(foreign_key="lead.id")
    topic: str = Field(max_length=64)
    status: str = Field(max_length=12)
    source: str = Field(max_length=20)
    at: datetime = _ts()
    wording: str | None = None
    ip: str | None = Field(default=None, max_length=64)
    user_agent: str | None = Field(default=None, max_length=500)
    detail: str | None = Field(default=None, max_length=300)


class ErasureLog(SQLModel, table=True):
    """That an erasure happened: when, on whose order, how many rows per table; nothing
    about the person."""

    __tablename__ = "erasure_log"
    id: int | None = Field(default=None, primary_key=True)
    at: datetime = _ts()
    actor: str = Field(max_length=200)
    rows: dict[str, Any] = Field(default_factory=dict, sa_column=Column(json_type(), nullable=False))


class Account(SQLModel, table=True):
    """An account's standing as an account: hot when its engagement crossed its own line."""

    key: str = Field(primary_key=True, max_length=300)
    stage: str = Field(default="cold", max_length=20)
    engagement: float = 0.0
    people: list[Any] = Field(default_factory=list, sa_column=Column(json_type(), nullable=False))
    owner: str | None = Field(default=None, max_length=200)
    changed_at: datetime = _ts()


class Promotion(SQLModel, table=True):
    """Every promotion the scores asked for (a lead, or an account), released to sales or held.

    Held promotions wait for review (`nurture score release`); released ones count against
    the owner's limit within the window.
    """

    __table_args__ = (Index("ix_promotion_status", "status", "created_at"),)
    id: int | None = Field(default=None, primary_key=True)
    key: str = Field(max_length=320)  # lead:<id> | account:<key>
    kind: str = Field(max_length=10)  # lead | account
    lead_id: int | None = Field(default=None, foreign_key="lead.id")
    account: str | None = Field(default=None, max_length=300)
    owner: str = Field(max_length=200)
    strength: float = 0.0
    status: str = Field(max_length=10)  # released | held
    reason: str = ""
    detail: dict[str, Any] = Field(default_factory=dict, sa_column=Column(json_type(), nullable=False))
    created_at: datetime = _ts()
    released_at: datetime | None = _ts(default=None, nullable=True)
    released_by: str | None = Field(default=None, max_length=200)


# Named handles on the tables, for the SQL of the store's modules.
class ListMember(SQLModel, table=True):
    """A member of a static list (or a suppression list) of the project, by email: a list can
    name people who are not leads yet, such as a customer list imported from the CRM."""

    __tablename__ = "list_member"
    __table_args__ = (Index("ix_list_member_email", "email"),)
    list_name: str = Field(primary_key=True, max_length=100)
    email: str = Field(primary_key=True, max_length=320)
    added_at: datetime = _ts()


ACCOUNTS: Table = Account.__table__  # type: ignore[attr-defined]
ACTIVITIES: Table = Activity.__table__  # type: ignore[attr-defined]
API_KEYS: Table = ApiKey.__table__  # type: ignore[attr-defined]
AUDIT_LOG: Table = AuditLog.__table__  # type: ignore[attr-defined]
DASHBOARD_USERS: Table = DashboardUser.__table__  # type: ignore[attr-defined]
ENROLMENTS: Table = Enrollment.__table__  # type: ignore[attr-defined]
FEEDBACK: Table = Feedback.__table__  # type: ignore[attr-defined]
EVENTS: Table = Event.__table__  # type: ignore[attr-defined]
EVENT_DAILY: Table = EventDaily.__table__  # type: ignore[attr-defined]
EXPERIMENTS: Table = Experiment.__table__  # type: ignore[attr-defined]
EXPERIMENT_ASSIGNMENTS: Table = ExperimentAssignment.__table__  # type: ignore[attr-defined]
LEADS: Table = Lead.__table__  # type: ignore[attr-defined]
LIFECYCLE_CHANGES: Table = LifecycleChange.__table__  # type: ignore[attr-defined]
LOGIN_FAILURES: Table = LoginFailure.__table__  # type: ignore[attr-defined]
LIST_MEMBERS: Table = ListMember.__table__  # type: ignore[attr-defined]
NOTIFICATIONS: Table = Notification.__table__  # type: ignore[attr-defined]
OUTCOMES: Table = Outcome.__table__  # type: ignore[attr-defined]
OUTCOME_PENDING: Table = OutcomePending.__table__  # type: ignore[attr-defined]
PROMOTIONS: Table = Promotion.__table__  # type: ignore[attr-defined]
SCENARIO_PAUSES: Table = ScenarioPause.__table__  # type: ignore[attr-defined]
SCENARIO_VERSIONS: Table = ScenarioVersion.__table__  # type: ignore[attr-defined]
SCORE_HISTORY: Table = ScoreHistory.__table__  # type: ignore[attr-defined]
SENDS: Table = Send.__table__  # type: ignore[attr-defined]
SETTINGS: Table = Setting.__table__  # type: ignore[attr-defined]
STEP_VISITS: Table = StepVisit.__table__  # type: ignore[attr-defined]
TALLIES: Table = Tally.__table__  # type: ignore[attr-defined]
SUPPRESSIONS: Table = Suppression.__table__  # type: ignore[attr-defined]
CONSENT_RECORDS: Table = ConsentRecordRow.__table__  # type: ignore[attr-defined]
ERASURE_LOG: Table = ErasureLog.__table__  # type: ignore[attr-defined]


__all__ = [
    "ACCOUNTS",
    "ACTIVITIES",
    "API_KEYS",
    "AUDIT_LOG",
    "CONSENT_RECORDS",
    "DASHBOARD_USERS",
    "ENROLMENTS",
    "ERASURE_LOG",
    "EVENTS",
    "EVENT_DAILY",
    "EXPERIMENTS",
    "EXPERIMENT_ASSIGNMENTS",
    "FEEDBACK",
    "LEADS",
    "LIFECYCLE_CHANGES",
    "LIST_MEMBERS",
    "LOGIN_FAILURES",
    "NOTIFICATIONS",
    "OUTCOMES",
    "OUTCOME_PENDING",
    "PROMOTIONS",
    "SCENARIO_PAUSES",
    "SCENARIO_VERSIONS",
    "SCORE_HISTORY",
    "SENDS",
    "SETTINGS",
    "STEP_VISITS",
    "SUPPRESSIONS",
    "TALLIES",
    "Account",
    "Activity",
    "ApiKey",
    "AuditLog",
    "ConsentRecordRow",
    "DashboardUser",
    "Enrollment",
    "ErasureLog",
    "Event",
    "EventDaily",
    "Experiment",
    "ExperimentAssignment",
    "Feedback",
    "Lead",
    "LifecycleChange",
    "LoginFailure",
    "Notification",
    "Outcome",
    "OutcomePending",
    "Promotion",
    "ScenarioPause",
    "ScenarioVersion",
    "ScoreHistory",
    "Send",
    "Setting",
    "StepVisit",
    "Suppression",
    "Tally",
]
