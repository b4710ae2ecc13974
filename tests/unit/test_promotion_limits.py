"""Promotion rate limits: the strongest promotions go through, the rest are held for review."""

from __future__ import annotations

from collections import Counter

from hypothesis import given, settings
from hypothesis import strategies as st

from nurture.scoring.limits import Candidate, ration
from nurture.scoring.model import PromotionLimits


def test_a_scoring_change_that_promotes_ten_thousand_at_once_is_held_for_review() -> None:
    owners = ["dana@x.example", "luis@x.example"]
    candidates = [Candidate(f"lead:{i}", owners[i % 2], strength=i % 97) for i in range(10_000)]
    result = ration(candidates, PromotionLimits(per_run=50, per_owner=25))
    assert len(result.released) == 50 and len(result.held) == 9_950
    assert Counter(c.owner for c in result.released) == {"dana@x.example": 25, "luis@x.example": 25}
    assert min(c.strength for c in result.released) >= 96  # the strongest first
    assert {h.reason for h in result.held} == {"over the limit of 50 promotions per run"}
    by_owner = ration(candidates, PromotionLimits(per_run=60, per_owner=25))
    assert len(by_owner.released) == 50
    assert by_owner.held[0].reason == "dana@x.example already has 25 new promotions within 1d (limit 25)"


def test_promotions_an_owner_already_got_in_the_window_count() -> None:
    candidates = [Candidate("lead:1", "dana@x.example", 10), Candidate("account:acme", "luis@x.example", 5)]
    result = ration(candidates, PromotionLimits(per_owner=3), {"dana@x.example": 3})
    assert [c.key for c in result.released] == ["account:acme"]
    assert [h.candidate.key for h in result.held] == ["lead:1"]


def test_without_limits_everything_goes_through_in_order() -> None:
    candidates = [Candidate(f"lead:{i}", "o", 1.0) for i in range(5)]
    assert ration(candidates, PromotionLimits()).released == candidates


@settings(max_examples=100, deadline=None)
@given(
    owners=st.lists(st.sampled_from("abcd"), max_size=60),
    per_run=st.one_of(st.none(), st.integers(min_value=0, max_value=30)),
    per_owner=st.one_of(st.none(), st.integers(min_value=0, max_value=10)),
    recent=st.dictionaries(st.sampled_from("abcd"), st.integers(min_value=0, max_value=12)),
)
def test_property_limits_are_never_exceeded_and_nothing_is_lost(
    owners: list[str], per_run: int | None, per_owner: int | None, recent: dict[str, int]
) -> None:
    candidates = [Candidate(f"lead:{i}", owner, float(i % 7)) for i, owner in enumerate(owners)]
    result = ration(candidates, PromotionLimits(per_run=per_run, per_owner=per_owner), recent)
    assert {c.key for c in result.released} | {h.candidate.key for h in result.held} == {c.key for c in candidates}
    assert len(result.released) + len(result.held) == len(candidates)
    if per_run is not None:
        assert len(result.released) <= per_run
    if per_owner is not None:
        for owner, count in Counter(c.owner for c in result.released).items():
            assert count + recent.get(owner, 0) <= per_owner
