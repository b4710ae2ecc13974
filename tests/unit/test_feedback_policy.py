"""What each kind of feedback does to the recipient."""

from __future__ import annotations

from nurture.feedback.events import FeedbackEvent, FeedbackKind
from nurture.feedback.policy import SoftBouncePolicy, decide

POLICY = SoftBouncePolicy(limit=3)


def event(kind: FeedbackKind, status: str | None = None) -> FeedbackEvent:
    return FeedbackEvent(kind, "dsn", recipient="anna@x.example", send_id=1, status=status)


def test_hard_bounce_suppresses() -> None:
    decision = decide(
        event(FeedbackKind.HARD_BOUNCE, "5.1.1"), authenticated=True, recent_soft_bounces=0, policy=POLICY
    )
    assert decision.suppress == "hard_bounce" and not decision.unsubscribe
    assert decision.note == "hard bounce (5.1.1): address suppressed"


def test_complaint_unsubscribes_and_suppresses() -> None:
    decision = decide(event(FeedbackKind.COMPLAINT), authenticated=True, recent_soft_bounces=0, policy=POLICY)
    assert decision.suppress == "complaint" and decision.unsubscribe


def test_soft_bounces_count_until_the_limit_within_the_period() -> None:
    first = decide(event(FeedbackKind.SOFT_BOUNCE, "4.2.2"), authenticated=True, recent_soft_bounces=0, policy=POLICY)
    assert first.counts_soft and first.suppress is None and first.note == "soft bounce (4.2.2), 1 of 3 within 30 days"
    third = decide(event(FeedbackKind.SOFT_BOUNCE), authenticated=True, recent_soft_bounces=2, policy=POLICY)
    assert third.suppress == "soft_bounces"


def test_policy_bounce_never_suppresses() -> None:
    decision = decide(
        event(FeedbackKind.POLICY_BOUNCE, "5.7.26"), authenticated=True, recent_soft_bounces=9, policy=POLICY
    )
    assert decision.suppress is None and not decision.counts_soft and not decision.unsubscribe


def test_unverified_reports_change_nothing() -> None:
    for kind in FeedbackKind:
        decision = decide(event(kind), authenticated=False, recent_soft_bounces=5, policy=POLICY)
        assert (decision.suppress, decision.unsubscribe, decision.counts_soft) == (None, False, False)


def test_esp_unsubscribe_unsubscribes_without_suppressing() -> None:
    decision = decide(event(FeedbackKind.UNSUBSCRIBE), authenticated=True, recent_soft_bounces=0, policy=POLICY)
    assert decision.unsubscribe and decision.suppress is None
