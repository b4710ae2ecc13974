"""Consent records, the regimes and the decisions taken from them; scenario topics."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from pydantic import ValidationError

from nurture.config import Settings
from nurture.consent.inputs import ConsentIn, ConsentProblem, records_from_row
from nurture.consent.model import (
    ALL_TOPICS,
    ConsentRecord,
    ConsentSource,
    ConsentStatus,
    Regime,
    RegimeSetting,
    decide_enrolment,
    decide_send,
    regime_for,
)
from nurture.consent.tokens import (
    TokenProblem,
    confirmation_token,
    preferences_token,
    read_confirmation,
    read_preferences,
)
from nurture.mail.tracking import sign
from nurture.scenario.loader import check_scenario, load_scenario

T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
GRANTED, WITHDRAWN, PENDING = ConsentStatus.GRANTED, ConsentStatus.WITHDRAWN, ConsentStatus.PENDING


def rec(topic: str, status: ConsentStatus, hours: int = 0, source: ConsentSource = ConsentSource.FORM) -> ConsentRecord:
    return ConsentRecord(topic, status, source, T0 + timedelta(hours=hours), wording="newsletter-form-v2")


# -- regimes ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("country", "expected"),
    [("JP", Regime.OPT_IN), ("DE", Regime.OPT_IN), ("fr", Regime.OPT_IN), ("NO", Regime.OPT_IN),
     ("US", Regime.OPT_OUT), ("GB", Regime.OPT_OUT), (None, Regime.OPT_OUT)],
)  # fmt: skip
def test_leads_in_japan_and_the_eea_need_consent_by_default(country: str | None, expected: Regime) -> None:
    assert regime_for(country, RegimeSetting.AUTO) is expected


def test_the_regime_setting_overrides_the_country() -> None:
    assert regime_for("US", RegimeSetting.OPT_IN) is Regime.OPT_IN
    assert regime_for("JP", RegimeSetting.OPT_OUT) is Regime.OPT_OUT
    settings = Settings(consent_opt_in_countries="jp, ca")
    assert regime_for("CA", RegimeSetting.AUTO, settings.opt_in_countries) is Regime.OPT_IN
    assert regime_for("DE", RegimeSetting.AUTO, settings.opt_in_countries) is Regime.OPT_OUT


# -- send decisions -----------------------------------------------------------------------


def test_under_opt_in_a_lead_without_consent_is_not_mailed_and_the_reason_says_why() -> None:
    decision = decide_send([], "newsletter", Regime.OPT_IN)
    assert not decision.send
    assert decision.reason == "no consent for topic 'newsletter' (opt-in regime)"


def test_under_opt_out_a_lead_without_records_is_mailed() -> None:
    assert decide_send([], "newsletter", Regime.OPT_OUT).send


def test_consent_to_one_topic_does_not_cover_another() -> None:
    records = [rec("newsletter", GRANTED)]
    assert decide_send(records, "newsletter", Regime.OPT_IN).send
    assert not decide_send(records, "events", Regime.OPT_IN).send


def test_a_withdrawal_stops_mail_under_either_regime_and_names_when_and_how() -> None:
    records = [rec("newsletter", GRANTED), rec("newsletter", WITHDRAWN, 5, ConsentSource.ONE_CLICK)]
    for regime in Regime:
        decision = decide_send(records, "newsletter", regime)
        assert not decision.send
        assert decision.reason == "consent to topic 'newsletter' withdrawn 2026-03-02T14:00:00+00:00 via one_click"
        assert decision.record == records[1]


def test_leaving_everything_covers_every_topic_until_a_topic_is_granted_again() -> None:
    records = [rec("newsletter", GRANTED), rec("events", GRANTED), rec(ALL_TOPICS, WITHDRAWN, 1)]
    assert not decide_send(records, "newsletter", Regime.OPT_OUT).send
    assert "all topics" in decide_send(records, "events", Regime.OPT_IN).reason
    records.append(rec("events", GRANTED, 2))
    assert decide_send(records, "events", Regime.OPT_IN).send
    assert not decide_send(records, "newsletter", Regime.OPT_IN).send


def test_the_latest_statement_wins_whatever_order_the_records_arrive_in() -> None:
    records = [rec("newsletter", WITHDRAWN, 3), rec("newsletter", GRANTED, 1)]
    assert not decide_send(records, "newsletter", Regime.OPT_IN).send


def test_a_pending_sign_up_is_not_consent_under_opt_in() -> None:
    records = [rec("newsletter", PENDING)]
    decision = decide_send(records, "newsletter", Regime.OPT_IN)
    assert not decision.send and "awaits confirmation" in decision.reason
    assert decide_send(records, "newsletter", Regime.OPT_OUT).send


def test_a_scenario_that_requires_confirmed_consent_takes_only_double_opt_in() -> None:
    form = [rec("newsletter", GRANTED)]
    confirmed = [*form, rec("newsletter", GRANTED, 1, ConsentSource.DOUBLE_OPT_IN)]
    assert not decide_enrolment(form, "newsletter", True, Regime.OPT_OUT).send
    assert "no confirmed consent" in decide_enrolment(form, "newsletter", True, Regime.OPT_OUT).reason
    assert decide_enrolment(confirmed, "newsletter", True, Regime.OPT_IN).send
    withdrawn = [*confirmed, rec("newsletter", WITHDRAWN, 2)]
    assert not decide_enrolment(withdrawn, "newsletter", True, Regime.OPT_IN).send
    assert decide_enrolment(form, "newsletter", False, Regime.OPT_IN).send


# -- signed links -------------------------------------------------------------------------


def test_a_confirmation_link_confirms_its_lead_and_topic_until_it_expires() -> None:
    token = confirmation_token("k" * 32, 42, "newsletter", T0, timedelta(days=7))
    found = read_confirmation("k" * 32, token, T0 + timedelta(days=6, hours=23))
    assert (found.lead_id, found.topic) == (42, "newsletter")
    with pytest.raises(TokenProblem) as expired:
        read_confirmation("k" * 32, token, T0 + timedelta(days=7))
    assert expired.value.reason == "expired"


def test_an_altered_or_foreign_link_is_refused_as_forged() -> None:
    secret = "k" * 32
    token = confirmation_token(secret, 42, "newsletter", T0, timedelta(days=7))
    others = [
        token[:-2] + ("AA" if not token.endswith("AA") else "BB"),
        confirmation_token("another secret", 42, "newsletter", T0, timedelta(days=7)),
        sign(secret, {"l": 42, "s": 7}),  # an unsubscribe link of an email
        preferences_token(secret, 42),
        "not-a-token",
    ]
    for other in others:
        with pytest.raises(TokenProblem) as problem:
            read_confirmation(secret, other, T0)
        assert problem.value.reason == "forged"
    assert read_preferences(secret, preferences_token(secret, 42)) == 42
    assert read_preferences(secret, token) is None


# -- consent as it arrives ----------------------------------------------------------------


def test_an_import_row_states_consent_per_topic_with_its_origin() -> None:
    row = {
        "email": "hana@example.jp",
        "consent": "yes",
        "consent_topic": "newsletter; seminars",
        "consent_at": "2026-02-10T10:30:00+09:00",
        "consent_source": "form",
        "consent_wording": "seminar-form-ja-v3",
        "consent_ip": "203.0.113.7",
        "consent_user_agent": "Mozilla/5.0",
    }
    records = records_from_row(row, T0)
    assert [r.topic for r in records] == ["newsletter", "seminars"]
    assert {(r.status, r.source, r.at, r.wording, r.ip) for r in records} == {
        (GRANTED, ConsentSource.FORM, datetime(2026, 2, 10, 1, 30, tzinfo=UTC), "seminar-form-ja-v3", "203.0.113.7")
    }
    assert records_from_row({"email": "x@example.com"}, T0) == []
    defaults = records_from_row({"consent": "granted"}, T0)
    assert defaults == [ConsentRecord("marketing", GRANTED, ConsentSource.IMPORT, T0)]


@pytest.mark.parametrize(
    ("row", "column", "words"),
    [
        ({"consent": "maybe"}, "consent", "not granted, withdrawn or pending"),
        ({"consent": "yes", "consent_topic": "News Letter"}, "consent_topic", "topic"),
        ({"consent": "yes", "consent_at": "10/02/2026"}, "consent_at", "ISO 8601"),
        ({"consent": "yes", "consent_at": "2026-02-10T10:30:00"}, "consent_at", "offset"),
        ({"consent": "yes", "consent_at": "2027-01-01"}, "consent_at", "future"),
        ({"consent": "yes", "consent_source": "one_click"}, "consent_source", "use one of"),
        ({"consent": "no", "consent_source": "double_opt_in"}, "consent_source", "granted"),
        ({"consent": "yes", "consent_ip": "999.1.1.1"}, "consent_ip", "not an IP address"),
        ({"consent_topic": "newsletter"}, "consent_topic", "without a 'consent' value"),
    ],
)
def test_a_bad_consent_column_is_reported_by_name(row: dict[str, str], column: str, words: str) -> None:
    with pytest.raises(ConsentProblem) as problem:
        records_from_row(row, T0)
    assert problem.value.field == column
    assert words in str(problem.value)


def test_the_api_takes_consent_with_where_it_came_from() -> None:
    item = ConsentIn.model_validate(
        {"topic": "newsletter", "status": "pending", "source": "form", "ip": "2001:db8::1",
         "user_agent": "Mozilla/5.0", "wording": "I want the newsletter", "at": "2026-03-02T10:00:00+01:00"}
    )  # fmt: skip
    record = item.record(T0)
    assert record == ConsentRecord(
        "newsletter", PENDING, ConsentSource.FORM, T0, "I want the newsletter", "2001:db8::1", "Mozilla/5.0"
    )
    assert ConsentIn().record(T0).source is ConsentSource.API
    for bad in ({"topic": "x y"}, {"ip": "nope"}, {"at": "2026-03-02T10:00:00"}, {"source": "one_click"},
                {"status": "maybe"}, {"colour": "red"}):  # fmt: skip
        with pytest.raises(ValidationError):
            ConsentIn.model_validate(bad)


# -- scenarios name their topic -----------------------------------------------------------

SCENARIO = """
id: news
name: News
topic: product-news
require_confirmed_consent: true
steps:
  - id: hello
    type: send_email
    template: hello
    subject: Hi
"""


def test_a_scenario_declares_its_topic_and_whether_it_needs_confirmed_consent(project: Callable[..., Path]) -> None:
    scenario = load_scenario(project(SCENARIO)).scenario
    assert (scenario.topic, scenario.require_confirmed_consent) == ("product-news", True)
    plain = load_scenario(project(SCENARIO.replace("topic: product-news\nrequire_confirmed_consent: true\n", "")))
    assert (plain.scenario.topic, plain.scenario.require_confirmed_consent) == ("marketing", False)


@pytest.mark.parametrize(
    ("old", "new", "line", "words"),
    [
        ("topic: product-news", "topic: Product News", 3, "topic 'Product News' must start with a lower-case letter"),
        ("topic: product-news", "topic: all", 3, "reserved"),
        ("require_confirmed_consent: true", "require_confirmed_consent: perhaps", 4, "valid boolean"),
        ("topic: product-news", "topik: product-news", 3, "did you mean 'topic'"),
    ],
)
def test_a_bad_topic_is_reported_at_its_line(
    project: Callable[..., Path], old: str, new: str, line: int, words: str
) -> None:
    path = project(SCENARIO.replace(old, new))
    _, found = check_scenario(path)
    assert len(found) == 1, found
    assert found[0].line == line and found[0].file == str(path)
    assert words in str(found[0])
