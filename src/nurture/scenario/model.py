"""The scenario format, as marketers write it in `scenarios/*.yaml`.

These pydantic models are the single definition of the format: the loader validates
files against them and `nurture schema` publishes them as JSON Schema for editors.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, field_validator, model_validator

from nurture.consent.model import ALL_TOPICS, DEFAULT_TOPIC, TOPIC_PATTERN, is_topic
from nurture.errors import DurationError
from nurture.timeutil import (
    WeekdayTime,
    is_valid_zone,
    parse_clock_time,
    parse_duration,
    parse_month_day,
    parse_weekday,
    suggest_zone,
)

STEP_ID = r"^[a-z][a-z0-9_]*$"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


def _check_duration(value: str) -> str:
    try:
        parse_duration(value)
    except DurationError as exc:
        raise ValueError(str(exc)) from exc
    return value


Duration = Annotated[
    str,
    AfterValidator(_check_duration),
    Field(description="A duration: '3d', '36h', '90m', '1w2d'."),
]


class _StepBase(_Strict):
    id: str = Field(pattern=STEP_ID, description="Unique name of the step within the scenario.")
    next: str | None = Field(default=None, description="Step to continue with; default is the following step.")
    note: str | None = Field(default=None, description="Free text for authors; ignored.")


class SendEmail(_StepBase):
    """Send one templated email."""

    type: Literal["send_email"]
    template: str = Field(
        description="Name of a template in email_templates/ (without extension); language variants are "
        "NAME.LANG.html (welcome.ja.html), chosen by the lead's language."
    )
    subject: str | dict[str, str] = Field(
        description="Subject line; may use {{ lead.* }} variables. One per language: {ja: ..., en: ...}."
    )
    from_: str | None = Field(default=None, alias="from", description="Sender; default: scenario's.")
    reply_to: str | None = None
    send_time: Literal["window", "optimal"] = Field(
        default="window",
        description="'window': as soon as the send window allows; 'optimal': at the hour this lead "
        "(else its account, else the scenario's audience) opens and clicks most, inside the window.",
    )
    send_time_control: float = Field(
        default=0.1,
        ge=0,
        lt=1,
        description="With send_time: optimal, the share of leads (a stable draw) sent as the window allows "
        "instead, so that the report can show the lift in clicks.",
    )


class Wait(_StepBase):
    """Pause for a duration, or until a weekday and local time."""

    type: Literal["wait"]
    duration: Duration | None = None
    until: str | None = Field(default=None, description="Weekday and local time, e.g. 'tuesday 10:00'.")

    @field_validator("until")
    @classmethod
    def _v_until(cls, value: str | None) -> str | None:
        if value is not None:
            try:
                WeekdayTime.parse(value)
            except DurationError as exc:
                raise ValueError(str(exc)) from exc
        return value

    @model_validator(mode="after")
    def _one_of(self) -> Wait:
        if (self.duration is None) == (self.until is None):
            raise ValueError("a wait needs exactly one of 'duration' or 'until'")
        return self


class WaitFor(_StepBase):
    """Wait for a behavioural event, with a timeout and a branch for each outcome."""

    type: Literal["wait_for"]
    event: str = Field(description="Event type: open, click, page_view, form_fill, download, ...")
    where: str | None = Field(default=None, description="Extra condition on `event`, e.g. event.link == 'demo'.")
    timeout: Duration
    on_event: str = Field(description="Step to go to when the event arrives in time.")
    on_timeout: str = Field(description="Step to go to when the timeout passes first.")


class Case(_Strict):
    if_: str = Field(alias="if", description="Condition in the expression language.")
    goto: str


class Branch(_StepBase):
    """Take the first case whose condition holds, else the `else` step."""

    type: Literal["branch"]
    cases: list[Case] = Field(min_length=1)
    else_: str = Field(alias="else")


class Variant(_Strict):
    """One arm of a split: a different path (`goto`), a different template and/or subject for
    the email that follows the split, a holdout that gets nothing, or (none of these) the
    journey as written."""

    name: str | None = Field(default=None, description="The arm's name (required in experiments).")
    weight: float = Field(default=1.0, gt=0, description="Share of leads, relative to the other arms.")
    goto: str | None = Field(default=None, description="Step this arm continues with (a different path).")
    template: str | None = Field(default=None, description="Template for the email right after the split.")
    subject: str | None = Field(default=None, description="Subject for the email right after the split.")
    holdout: bool = Field(default=False, description="Leads in this arm get nothing: they leave the journey.")

    @model_validator(mode="after")
    def _one_kind(self) -> Variant:
        if self.holdout and (self.goto or self.template or self.subject):
            raise ValueError("a holdout arm gets nothing: it cannot also have goto, template or subject")
        if self.goto and (self.template or self.subject):
            raise ValueError("an arm is either a path (goto) or a change of the next email (template, subject)")
        return self

    @property
    def overrides(self) -> bool:
        return bool(self.template or self.subject)


GOAL_SHORTCUTS = ("click", "became_hot", "converted")


class EventGoal(_Strict):
    event: str = Field(description="Event type that counts as reaching the goal.")
    where: str | None = Field(default=None, description="Extra condition on `event`, e.g. event.url == '/pricing'.")


class Experiment(_Strict):
    """A split that measures its arms and picks a winner with a stated error guarantee."""

    goal: str | EventGoal = Field(
        description="'click' (on an email this journey sends after the split), 'became_hot', 'converted', "
        "or {event: TYPE, where: CONDITION}."
    )
    within: Duration = Field(default="7d", description="How long after assignment the goal may be reached.")
    method: Literal["msprt", "bayesian"] = Field(
        default="msprt",
        description="'msprt': always-valid sequential test (false winners at most `alpha`, however often it is "
        "looked at); 'bayesian': winner when P(best) reaches `threshold`.",
    )
    alpha: float = Field(default=0.05, gt=0, lt=0.5, description="mSPRT: the false-winner rate it guarantees.")
    effect: float = Field(
        default=0.05, gt=0, le=1, description="mSPRT: the difference in goal rate it is tuned to find quickest."
    )
    threshold: float = Field(default=0.95, gt=0.5, lt=1, description="Bayesian: P(best) needed for a winner.")
    prior: tuple[float, float] = Field(default=(1.0, 1.0), description="Bayesian: Beta prior [a, b] of every arm.")
    min_per_arm: int = Field(default=100, ge=10, description="Leads every arm needs before any decision.")
    max_duration: Duration = Field(
        default="30d",
        description="After this long without a winner the experiment stops; new leads take the first arm.",
    )

    @field_validator("prior")
    @classmethod
    def _v_prior(cls, value: tuple[float, float]) -> tuple[float, float]:
        if value[0] <= 0 or value[1] <= 0:
            raise ValueError("a Beta prior needs two positive numbers, e.g. [1, 1]")
        return value

    @model_validator(mode="after")
    def _method_settings(self) -> Experiment:
        given = self.model_fields_set
        if self.method == "msprt" and given & {"threshold", "prior"}:
            raise ValueError("'threshold' and 'prior' belong to method: bayesian; mSPRT uses 'alpha' and 'effect'")
        if self.method == "bayesian" and given & {"alpha", "effect"}:
            raise ValueError("'alpha' and 'effect' belong to method: msprt; the Bayesian rule uses 'threshold'")
        if parse_duration(self.max_duration) <= parse_duration(self.within):
            raise ValueError("max_duration must be longer than 'within', or no lead's outcome would ever count")
        return self


class Split(_StepBase):
    """Weighted random split; a lead always lands in the same arm. With `experiment`, an A/B
    test that picks a winner: once decided, new leads take the winner."""

    type: Literal["split"]
    variants: list[Variant] = Field(min_length=2)
    experiment: Experiment | None = None

    @model_validator(mode="after")
    def _names(self) -> Split:
        if self.experiment is not None and not all(v.name for v in self.variants):
            raise ValueError("every arm of an experiment needs a name (it is reported by name)")
        return self

    def arm_names(self) -> list[str]:
        return [v.name or chr(ord("a") + i) for i, v in enumerate(self.variants)]


class Update(_StepBase):
    """Set lead fields, add or remove tags, adjust the engagement score."""

    type: Literal["update"]
    set: dict[str, str | int | float | bool | None] = Field(default_factory=dict)
    add_tags: list[str] = Field(default_factory=list)
    remove_tags: list[str] = Field(default_factory=list)
    adjust_score: int = 0


class NotifySales(_StepBase):
    """Hand the lead to sales with a message."""

    type: Literal["notify_sales"]
    message: str = "Lead ready for sales"


class Goto(_StepBase):
    type: Literal["goto"]
    target: str


class Exit(_StepBase):
    type: Literal["exit"]
    reason: str = "completed"


Step = Annotated[
    SendEmail | Wait | WaitFor | Branch | Split | Update | NotifySales | Goto | Exit,
    Field(discriminator="type"),
]

DAY_NAMES = Literal["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
_WORKDAYS: tuple[DAY_NAMES, ...] = ("mon", "tue", "wed", "thu", "fri")


class Blackout(_Strict):
    """A period in which nothing is sent, every year: `from: "12-28"`, `to: "01-04"` (inclusive)."""

    name: str
    from_: str = Field(alias="from", description="First day, MM-DD.")
    to: str = Field(description="Last day, MM-DD; may be in the next year (12-28 to 01-04).")

    @field_validator("from_", "to")
    @classmethod
    def _v_day(cls, value: str) -> str:
        try:
            parse_month_day(value)
        except DurationError as exc:
            raise ValueError(str(exc)) from exc
        return value


class SendWindowSpec(_Strict):
    days: list[DAY_NAMES] = Field(default_factory=lambda: list(_WORKDAYS))
    start: str = "09:00"
    end: str = "17:00"
    timezone: str = Field(
        default="lead",
        description="'lead' uses each lead's own time zone; or an IANA name like 'Asia/Tokyo'.",
    )
    fallback_timezone: str = Field(default="UTC", description="Used when a lead has no zone.")
    holidays: list[str] = Field(
        default_factory=list, description="Countries whose public holidays close the window, e.g. [JP]."
    )
    blackouts: list[Blackout] = Field(default_factory=list, description="Periods with no sending, every year.")

    @field_validator("start", "end")
    @classmethod
    def _v_time(cls, value: str) -> str:
        try:
            parse_clock_time(value)
        except DurationError as exc:
            raise ValueError(str(exc)) from exc
        return value

    @field_validator("timezone", "fallback_timezone")
    @classmethod
    def _v_zone(cls, value: str) -> str:
        if value != "lead" and not is_valid_zone(value):
            raise ValueError(f"unknown time zone {value!r} — {suggest_zone(value)}")
        return value

    @model_validator(mode="after")
    def _order(self) -> SendWindowSpec:
        if parse_clock_time(self.start) >= parse_clock_time(self.end):
            raise ValueError("send window must start before it ends")
        if not self.days:
            raise ValueError("send window needs at least one day")
        return self

    def day_numbers(self) -> frozenset[int]:
        return frozenset(parse_weekday(d) for d in self.days)


class Entry(_Strict):
    when: str | None = Field(default=None, description="Which leads enrol, as an expression.")
    source: list[str] = Field(default_factory=list, description="Only leads from these sources.")
    lists: list[str] = Field(default_factory=list, description="Only members of at least one of these lists.")
    not_lists: list[str] = Field(default_factory=list, description="Never members of these lists.")


class Reentry(_Strict):
    """May a lead enter again? `never`: once only. `after_exit`: after its last enrolment
    finished and `cooldown` has passed since. `always`: once `cooldown` has passed since it last
    entered, starting over even while still enrolled."""

    policy: Literal["never", "after_exit", "always"] = Field(
        default="never",
        description="never: once only; after_exit: again after finishing (+ cooldown); "
        "always: again after cooldown since the last entry, even while still enrolled.",
    )
    cooldown: Duration | None = Field(
        default=None,
        description="after_exit: time since the last enrolment finished; always: since it began.",
    )

    @model_validator(mode="after")
    def _always_needs_a_cooldown(self) -> Reentry:
        if self.policy == "always" and self.cooldown is None:
            raise ValueError(
                "'always' needs a 'cooldown' (how soon a lead may start over), "
                "or the lead would start over every time the enrol job sees it"
            )
        return self


EXIT_SHORTCUTS = {
    "became_hot": 'lifecycle in ["hot", "accepted"]',
    "unsubscribed": "lead.unsubscribed",
    "bounced": "lead.bounced",
    "converted": 'lifecycle == "customer"',
    "recycled": 'lifecycle == "recycled"',
    "rejected": 'lifecycle == "rejected"',
}


class Scenario(_Strict):
    """One scenario file."""

    id: str = Field(pattern=STEP_ID)
    name: str
    description: str = ""
    entry: Entry = Field(default_factory=Entry)
    reentry: Reentry = Field(default_factory=Reentry)
    exit_when: list[str] = Field(
        default_factory=lambda: ["unsubscribed", "bounced"],
        description=f"Shortcuts ({', '.join(EXIT_SHORTCUTS)}) or expressions.",
    )
    send_window: SendWindowSpec = Field(default_factory=SendWindowSpec)
    from_: str = Field(alias="from", default="Marketing <marketing@example.com>")
    owner: str | None = Field(
        default=None,
        pattern=r"^[^@\s]+@[^@\s]+$",
        description="Email of the person responsible for the scenario; told when an experiment decides.",
    )
    lead_fields: list[str] = Field(default_factory=list, description="Custom lead fields this scenario reads.")
    priority: int = Field(default=0, description="Among exclusive scenarios, the higher priority keeps the lead.")
    exclusive_with: list[str] = Field(
        default_factory=list, description="Scenario ids a lead may not be in at the same time as this one."
    )
    group: str | None = Field(default=None, description="Scenarios of one group exclude each other.")
    utm: dict[str, str] = Field(
        default_factory=dict,
        description="UTM parameters for every link, e.g. {source: newsletter, medium: email}; campaign "
        "defaults to the scenario id.",
    )
    track_opens: bool = Field(
        default=True,
        description="Add an open pixel to emails with enough text to carry one (false: never). "
        "Privacy proxies (Apple Mail) fetch pixels unread, so opens are a weak signal anyway.",
    )
    migrate: dict[str, str] = Field(
        default_factory=dict,
        description="Move leads on an older version from step (key) to step (value) of this one.",
    )
    steps: list[Step] = Field(min_length=1)
    topic: str = Field(
        default=DEFAULT_TOPIC,
        json_schema_extra={"pattern": TOPIC_PATTERN},
        description="What the scenario mails about; a send needs the lead's consent to this topic "
        "(under the opt-in regime) and stops when the lead leaves it.",
    )
    require_confirmed_consent: bool = Field(
        default=False,
        description="Enrol only leads who confirmed their consent to the topic (double opt-in).",
    )

    @field_validator("topic")
    @classmethod
    def _v_topic(cls, value: str) -> str:
        if value == ALL_TOPICS:
            raise ValueError(f"topic '{ALL_TOPICS}' is reserved for statements about every topic: name the topic")
        if not is_topic(value):
            raise ValueError(
                f"topic {value!r} must start with a lower-case letter and use only a-z, 0-9, '-' and '_' "
                "(e.g. 'newsletter', 'product-news')"
            )
        return value
