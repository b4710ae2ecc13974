"""How many hand-offs sales gets at once: the promotion rate limit, as a pure decision.

A scoring change can make thousands of leads hot in one run; no sales team can take
10,000 alerts. `ration` lets the strongest promotions through up to `per_run` in a run
and `per_owner` per owner per window, and holds the rest for review (they stay where
they are, listed on the dashboard, until `nurture score release` lets them through).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from nurture.scoring.model import PromotionLimits


@dataclass(frozen=True)
class Candidate:
    """One promotion the scores ask for: a lead (`lead:12`) or an account (`account:acme`)."""

    key: str
    owner: str
    strength: float = 0.0


@dataclass(frozen=True)
class Held:
    candidate: Candidate
    reason: str


@dataclass(frozen=True)
class Ration:
    released: list[Candidate] = field(default_factory=list)
    held: list[Held] = field(default_factory=list)


def ration(
    candidates: Sequence[Candidate], limits: PromotionLimits, owner_recent: Mapping[str, int] | None = None
) -> Ration:
    """Which promotions go through now and which are held, strongest first.

    `owner_recent` is how many promotions each owner already got within `limits.window`
    (released ones, including earlier runs). Ties keep the order given.
    """
    recent = dict(owner_recent or {})
    given: dict[str, int] = defaultdict(int)
    result = Ration()
    ordered = sorted(enumerate(candidates), key=lambda pair: (-pair[1].strength, pair[0]))
    for _, candidate in ordered:
        if limits.per_run is not None and len(result.released) >= limits.per_run:
            result.held.append(Held(candidate, f"over the limit of {limits.per_run} promotions per run"))
            continue
        so_far = recent.get(candidate.owner, 0) + given[candidate.owner]
        if limits.per_owner is not None and so_far >= limits.per_owner:
            result.held.append(
                Held(
                    candidate,
                    f"{candidate.owner} already has {so_far} new promotions within {limits.window} "
                    f"(limit {limits.per_owner})",
                )
            )
            continue
        given[candidate.owner] += 1
        result.released.append(candidate)
    return result
