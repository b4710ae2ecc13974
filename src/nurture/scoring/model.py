"""The scoring file (`scenarios/scoring.yaml`): rules, guards and the hot definition.

Marketing and sales share this one file: it says what fits, what engagement is worth,
how fast it fades, what is discounted as machine activity, and what "hot" means.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, model_validator

from nurture.errors import DurationError
from nurture.timeutil import parse_duration

GRADES = ("A", "B", "C", "D")
Grade = Literal["A", "B", "C", "D"]
_DEFAULT_GRADES: dict[Grade, int] = {"A": 60, "B": 40, "C": 20}


def _duration(value: str) -> str:
    try:
        parse_duration(value)
    except DurationError as exc:
        raise ValueError(str(exc)) from exc
    return value


Duration = Annotated[str, AfterValidator(_duration)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


class FitRule(_Strict):
    name: str = Field(pattern=r"^[a-z][a-z0-9_]*$")
    when: str = Field(description="Expression on lead fields, e.g. lead.company_size >= 500")
    points: int


class EngagementRule(_Strict):
    name: str = Field(pattern=r"^[a-z][a-z0-9_]*$")
    event: str = Field(description="Event type this rule scores")
    match: dict[str, str] = Field(default_factory=dict, description="Property patterns, e.g. url: '*pricing*'")
    points: int
    cap_per_day: int | None = Field(default=None, ge=0, description="Most points this rule gives in one day")
    cap_total: int | None = Field(default=None, ge=0, description="Most points this rule gives in all")


class BotGuards(_Strict):
    """How tracking requests are told apart: people, mail-security scanners, privacy proxies.

    The address ranges and user-agent patterns of known scanners and proxies ship with
    nurture (`scoring/data/machines.yaml`); `data` points at a file of your own instead.
    """

    min_seconds_after_delivery: int = Field(
        default=10, ge=0, description="An open or click sooner than this after delivery is a scanner"
    )
    burst_clicks: int = Field(default=3, ge=2, description="This many links of one email clicked ...")
    burst_seconds: int = Field(default=5, ge=1, description="... within this many seconds: a link scanner")
    repeat_seconds: int = Field(
        default=30, ge=0, description="Clicks on the same link of one email within this many seconds count once"
    )
    repeat_machine: int = Field(
        default=5, ge=2, description="This many clicks on one link within repeat_seconds: a machine, not a person"
    )
    honeypot_seconds: int = Field(
        default=60,
        ge=0,
        description="Opens and clicks of a send this close to a request for its hidden link count for nothing",
    )
    suspect_weight: float = Field(
        default=0.5, ge=0, le=1, description="Share of its points a suspect (one weak machine signal) keeps"
    )
    user_agents: list[str] = Field(
        default_factory=list,
        description="Extra scanner user-agent patterns (case-insensitive globs), on top of the shipped data",
    )
    data: str | None = Field(
        default=None, description="Address ranges and user agents of machines; default: the shipped data"
    )
    discount_proxy_opens: bool = Field(default=True, description="Opens fetched by privacy proxies score nothing")


class AccountHot(_Strict):
    """When an account, as an account, is worth one hand-off to its owner."""

    engagement: int = Field(ge=1, description="Account engagement (sum of its people's, each capped) to be hot")
    min_people: int = Field(default=2, ge=1, description="Engaged people the account needs besides the line")
    person_engagement: int = Field(
        default=10, ge=1, description="Own engagement that counts a person as engaged for the account"
    )


class Account(_Strict):
    """Colleagues' engagement: a separate, capped part of each lead's score, and account-hot."""

    weight: float = Field(default=0.5, ge=0, le=1, description="Share of colleagues' engagement that counts")
    by: Literal["company", "email_domain"] = "company"
    cap: int | None = Field(
        default=None, ge=0, description="Most engagement points one lead gets from its account (none: no cap)"
    )
    person_cap: int | None = Field(
        default=None, ge=0, description="Most one person adds to the account's engagement (none: no cap)"
    )
    hot: AccountHot | None = None


class PromotionLimits(_Strict):
    """Most hand-offs to sales at once; the rest are held for review (`nurture score release`)."""

    per_run: int | None = Field(default=None, ge=0, description="Most promotions in one qualify run")
    per_owner: int | None = Field(default=None, ge=0, description="Most promotions one owner gets per window")
    window: Duration = Field(default="1d", description="The window per_owner counts over")


class Hot(_Strict):
    """Engagement needed to be hot, per fit grade; a grade not listed can never be hot."""

    engagement: dict[Grade, int]
    warm_engagement: int = Field(default=15, ge=0, description="Engagement that makes a cold lead warm")
    min_own_engagement: int = Field(
        default=0, ge=0, description="The lead's own engagement (not its account's) needed to be hot"
    )


class Owner(_Strict):
    name: str
    email: str
    countries: list[str] = Field(default_factory=list)
    industries: list[str] = Field(default_factory=list)


class Routing(_Strict):
    owners: list[Owner] = Field(min_length=1)
    webhook_url: str | None = None
    dashboard_url: str = "http://localhost:8025"  # `nurture serve`'s default port


class Scoring(_Strict):
    lead_fields: list[str] = Field(default_factory=list, description="Custom lead fields the rules read")
    fit: list[FitRule] = Field(default_factory=list)
    grades: dict[Grade, int] = Field(
        default_factory=lambda: dict(_DEFAULT_GRADES),
        description="Least fit points for each grade; else D",
    )
    engagement: list[EngagementRule] = Field(default_factory=list)
    half_life: Duration = "30d"
    lookback: Duration = "180d"
    bots: BotGuards = Field(default_factory=BotGuards)
    account: Account = Field(default_factory=Account)
    hot: Hot
    promotion_limits: PromotionLimits = Field(default_factory=PromotionLimits)
    routing: Routing

    @model_validator(mode="after")
    def _ordered_grades(self) -> Scoring:
        a, b, c = self.grades.get("A", 0), self.grades.get("B", 0), self.grades.get("C", 0)
        if not a >= b >= c:
            raise ValueError("grades must need A ≥ B ≥ C fit points")
        return self


class ScoringFile(_Strict):
    scoring: Scoring
