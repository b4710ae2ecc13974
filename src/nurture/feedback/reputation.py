"""The reputation guard: whether a scenario's recent sends hurt the sender's reputation
enough to stop sending it until someone looks.

Mailbox providers act on complaint rates above 0.3% (Gmail's and Yahoo's bulk-sender rules)
and on many sends to addresses that do not exist. The guard looks at the outcomes of a
scenario's last N sends and pauses it past either threshold; its sends wait, they are not
dropped. Below `min_sends` sends nothing is judged: one complaint among ten sends says
little.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Outcomes:
    """What became of a group's last sends (a scenario's, or a recipient domain's)."""

    sends: int
    delivered: int = 0
    hard_bounces: int = 0
    soft_bounces: int = 0
    complaints: int = 0
    unsubscribes: int = 0

    def rate(self, count: int) -> float:
        return count / self.sends if self.sends else 0.0

    @property
    def rates(self) -> dict[str, float]:
        return {
            "delivered": self.rate(self.delivered),
            "hard_bounce": self.rate(self.hard_bounces),
            "soft_bounce": self.rate(self.soft_bounces),
            "complaint": self.rate(self.complaints),
            "unsubscribe": self.rate(self.unsubscribes),
        }


@dataclass(frozen=True)
class ReputationPolicy:
    window: int = 1000  # judge the last N sends
    min_sends: int = 100  # fewer sends than this: too few to judge
    max_complaint_rate: float = 0.003
    max_hard_bounce_rate: float = 0.05


@dataclass(frozen=True)
class Verdict:
    pause: bool
    reasons: tuple[str, ...] = ()


def judge(outcomes: Outcomes, policy: ReputationPolicy) -> Verdict:
    """Pause when the complaint or hard-bounce rate of the last sends is over its limit."""
    if outcomes.sends < policy.min_sends:
        return Verdict(False)
    reasons = []
    for label, count, limit in (
        ("complaint", outcomes.complaints, policy.max_complaint_rate),
        ("hard-bounce", outcomes.hard_bounces, policy.max_hard_bounce_rate),
    ):
        rate = outcomes.rate(count)
        if rate > limit:
            reasons.append(f"{label} rate {rate:.2%} over the last {outcomes.sends} sends exceeds {limit:.2%}")
    return Verdict(bool(reasons), tuple(reasons))
