"""What a step asks the outside world to do; adapters (store, mail) carry it out."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any


@dataclass(frozen=True, slots=True)
class SendEmail:
    step: str
    template: str
    subject: str
    sender: str
    reply_to: str | None
    idempotency_key: str
    at: datetime
    timing: str = "window"  # window | optimal (the lead's best hour) | control (optimal's comparison group)


@dataclass(frozen=True, slots=True)
class NotifySales:
    step: str
    message: str
    idempotency_key: str
    at: datetime


@dataclass(frozen=True, slots=True)
class UpdateLead:
    step: str
    set: Mapping[str, Any]
    add_tags: tuple[str, ...]
    remove_tags: tuple[str, ...]
    score_delta: int
    at: datetime


@dataclass(frozen=True, slots=True)
class Finished:
    """The lead left the scenario: `completed` (reached the end) or `exited` (exit condition)."""

    status: str
    reason: str
    at: datetime


@dataclass(frozen=True, slots=True)
class AssignArm:
    """The lead entered an arm of an experiment. `randomised` is False when the experiment was
    already over and the lead took the winner: such leads are not part of the comparison."""

    step: str
    experiment: str
    arm: str
    randomised: bool
    at: datetime


Effect = SendEmail | NotifySales | UpdateLead | Finished | AssignArm


@dataclass(frozen=True, slots=True)
class Decision:
    """Why the lead went where it went; printed by `nurture simulate`, kept in the audit log."""

    at: datetime
    step: str
    text: str
