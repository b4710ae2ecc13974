"""Machine activity: every tracking event gets a verdict (human / suspect / machine) with reasons."""

from __future__ import annotations

import ipaddress
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from nurture.errors import ValidationFailed
from nurture.scenario.expr import EventRecord
from nurture.scoring.engine import CompiledScoring
from nurture.scoring.loader import load_scoring

ROOT = Path(__file__).resolve().parents[2]
SENT = datetime(2026, 3, 20, 9, tzinfo=UTC)
NOW = SENT + timedelta(days=2)
GRADE_A = {"company_size": 1500, "industry": "Manufacturing", "job_title": "Head of Operations", "country": "DE"}
CHROME = (
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36"
)
PERSON_IP = "91.64.112.37"


@pytest.fixture(scope="module")
def scoring() -> CompiledScoring:
    return load_scoring(ROOT / "scenarios" / "scoring.yaml")


def tracked(type_: str, seconds: float, **props: Any) -> EventRecord:
    base: dict[str, Any] = {"send": 7, "sent_at": SENT.isoformat(), "ip": PERSON_IP, "user_agent": CHROME}
    return EventRecord(type_, SENT + timedelta(seconds=seconds), {**base, **props})


def test_a_person_clicking_an_hour_later_is_human(scoring: CompiledScoring) -> None:
    [verdict] = scoring.classify([tracked("click", 3600, link="pricing")])
    assert (verdict.kind, verdict.counts, verdict.reasons) == ("human", True, ())


@pytest.mark.parametrize(
    "agent", ["Mozilla/5.0", "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko)"]
)
def test_apple_mail_privacy_protection_opens_are_machine_by_user_agent_alone(
    scoring: CompiledScoring, agent: str
) -> None:
    [verdict] = scoring.classify([tracked("open", 900, user_agent=agent, ip="198.51.100.20")])
    assert verdict.kind == "machine" and "Apple Mail Privacy Protection" in verdict.reason


def test_an_open_from_apples_addresses_is_machine(scoring: CompiledScoring) -> None:
    [verdict] = scoring.classify([tracked("open", 900, ip="17.58.101.12")])
    assert verdict.kind == "machine" and "17.0.0.0/8" in verdict.reason


def test_safe_links_user_agent_matches_whatever_its_case(scoring: CompiledScoring) -> None:
    agent = "Microsoft Office/16.0 (Windows NT 10.0; Microsoft Outlook 16.0.17928; Pro)"
    for variant in (agent, agent.lower(), agent.upper()):
        [verdict] = scoring.classify([tracked("click", 600, link="pricing", user_agent=variant)])
        assert verdict.kind == "machine", variant
    result = scoring.evaluate(GRADE_A, [tracked("click", 600, link="pricing", user_agent=agent.lower())], NOW)
    assert result.engagement == 0


def test_the_scoring_files_own_user_agents_are_case_insensitive_globs(tmp_path: Path) -> None:
    text = (ROOT / "scenarios" / "scoring.yaml").read_text()
    path = tmp_path / "scoring.yaml"
    path.write_text(
        text.replace(
            "    discount_proxy_opens: true\n", "    discount_proxy_opens: true\n    user_agents: ['*LinkChecker*']\n"
        )
    )
    custom = load_scoring(path)
    [verdict] = custom.classify([tracked("click", 600, link="x", user_agent="acme linkchecker/2")])
    assert verdict.kind == "machine" and "listed in the scoring file" in verdict.reason


def test_a_pixel_fetched_one_second_after_delivery_is_a_scanner(scoring: CompiledScoring) -> None:
    [verdict] = scoring.classify([tracked("open", 1)])
    assert verdict.kind == "machine" and verdict.reason == "opened 1s after delivery"
    [given] = scoring.classify([EventRecord("open", SENT, {"seconds_after_delivery": 2, "user_agent": CHROME})])
    assert given.kind == "machine"


def test_fifty_clicks_on_one_link_in_two_seconds_are_a_machine(scoring: CompiledScoring) -> None:
    clicks = [tracked("click", 600 + i * 0.04, link="pricing") for i in range(50)]
    verdicts = scoring.classify(clicks)
    assert {v.kind for v in verdicts} == {"machine"}
    assert "50 requests for the same link within 2s" in verdicts[0].reason
    every_day = [EventRecord(c.type, c.at + timedelta(days=d), c.props) for d in range(6) for c in clicks]
    result = scoring.evaluate(GRADE_A, every_day, SENT + timedelta(days=7))
    assert result.engagement == 0 and not result.hot


def test_a_double_click_counts_once(scoring: CompiledScoring) -> None:
    first, again = scoring.classify([tracked("click", 900, link="pricing"), tracked("click", 901, link="pricing")])
    assert first.counts and first.kind == "human"
    assert again.kind == "human" and again.repeat and not again.counts and "counts once" in again.reason
    once = scoring.evaluate(GRADE_A, [tracked("click", 900, link="pricing")], NOW)
    twice = scoring.evaluate(
        GRADE_A, [tracked("click", 900, link="pricing"), tracked("click", 901, link="pricing")], NOW
    )
    assert once.engagement == twice.engagement == 5


def test_several_links_within_seconds_are_a_burst(scoring: CompiledScoring) -> None:
    verdicts = scoring.classify([tracked("click", 300 + i, link=f"l{i}") for i in range(3)])
    assert all(v.kind == "machine" and "3 links clicked within 5s" in v.reason for v in verdicts)


def test_the_hidden_link_marks_the_send_as_scanned(scoring: CompiledScoring) -> None:
    scanner = "3.236.10.20"
    events = [
        tracked("click", 95, link="case-study", ip=scanner),
        tracked("click", 103, link="honeypot", ip=scanner, honeypot=True),
        tracked("open", 130, ip=scanner),
        tracked("click", 150, link="pricing", ip=scanner),
        tracked("click", 5400, link="pricing"),  # the person, 90 minutes later
        tracked("click", 100, link="pricing", send=8),  # another email: not marked
    ]
    verdicts = scoring.classify(events)
    assert [v.kind for v in verdicts] == ["machine", "machine", "machine", "machine", "human", "human"]
    assert verdicts[1].reason == "requested the hidden link no person sees"
    assert verdicts[0].reason == "8s from a request for this email's hidden link"


def test_a_click_through_a_privacy_proxy_is_only_suspect_and_keeps_part_of_its_points(scoring: CompiledScoring) -> None:
    relay = tracked("click", 5400, link="pricing", ip="172.226.41.18")
    [verdict] = scoring.classify([relay])
    assert verdict.kind == "suspect" and verdict.counts
    result = scoring.evaluate(GRADE_A, [relay], NOW)
    assert result.engagement == 2  # 5 points × 0.5 for a suspect, decayed over two days
    assert [d.verdict for d in result.discounted] == ["suspect"] and "(counts 0.5)" in result.discounted[0].reason
    both = tracked("click", 5400, link="pricing", ip="172.226.41.18", user_agent="Mozilla/5.0")
    [verdict] = scoring.classify([both])
    assert verdict.kind == "machine" and "two weak signals" in verdict.reason


def test_the_verdicts_are_listed_in_the_score(scoring: CompiledScoring) -> None:
    events = [tracked("open", 1), tracked("click", 3600, link="pricing")]
    result = scoring.evaluate(GRADE_A, events, NOW)
    assert [(a.type, a.verdict.kind) for a in result.activity] == [("open", "machine"), ("click", "human")]
    assert result.machine_events == 1 and result.human_events == 1
    assert [d.reason for d in result.discounted] == ["opened 1s after delivery"]


def test_machine_data_file_in_the_scoring_file_replaces_the_shipped_one(tmp_path: Path) -> None:
    (tmp_path / "machines.yaml").write_text(
        "networks:\n  - {name: Our gateway, kind: scanner, ranges: [192.0.2.0/24]}\nuser_agents: []\n"
    )
    text = (ROOT / "scenarios" / "scoring.yaml").read_text()
    path = tmp_path / "scoring.yaml"
    path.write_text(text.replace("    # data: machines.yaml", "    data: machines.yaml"))
    custom = load_scoring(path)
    [gateway, apple] = custom.classify(
        [tracked("click", 600, link="x", ip="192.0.2.9"), tracked("open", 600, ip="17.1.1.1")]
    )
    assert gateway.kind == "machine" and "Our gateway" in gateway.reason
    assert apple.kind == "human"  # the shipped ranges are replaced, not merged
    (tmp_path / "machines.yaml").write_text("networks:\n  - {name: Bad, kind: scanner, ranges: [300.1.2.0/24]}\n")
    with pytest.raises(ValidationFailed) as caught:
        load_scoring(path)
    [problem] = caught.value.diagnostics
    assert problem.file == str(path) and problem.line > 1
    assert "bots.data: networks[0] (Bad): bad address range '300.1.2.0/24'" in problem.message


def test_a_missing_machine_data_file_is_a_clear_error(tmp_path: Path) -> None:
    text = (ROOT / "scenarios" / "scoring.yaml").read_text()
    path = tmp_path / "scoring.yaml"
    path.write_text(text.replace("    # data: machines.yaml", "    data: nowhere.yaml"))
    with pytest.raises(ValidationFailed) as caught:
        load_scoring(path)
    assert "bots.data: cannot read machine data" in str(caught.value.diagnostics[0])


SCANNER_BLOCKS = ["40.107.0.0/16", "52.100.0.0/14", "64.235.144.0/20", "205.139.110.0/24", "148.163.128.0/19"]


@settings(max_examples=80, deadline=None)
@given(
    block=st.sampled_from(SCANNER_BLOCKS),
    offset=st.integers(min_value=0, max_value=255),
    seconds=st.floats(min_value=0, max_value=86400 * 2),
    kind=st.sampled_from(["open", "click"]),
    link=st.sampled_from(["pricing", "case-study", "webinar"]),
)
def test_property_events_from_scanner_addresses_never_change_a_score(
    scoring: CompiledScoring, block: str, offset: int, seconds: float, kind: str, link: str
) -> None:
    network = ipaddress.ip_network(block)
    ip = str(network[offset % network.num_addresses])
    person = [tracked("click", 7200, link="case-study"), tracked("download", 8000)]
    scanner = tracked(kind, seconds, link=link, ip=ip, send=99)
    assert (
        scoring.evaluate(GRADE_A, [*person, scanner], NOW).engagement
        == scoring.evaluate(GRADE_A, person, NOW).engagement
    )


@settings(max_examples=60, deadline=None)
@given(repeats=st.lists(st.floats(min_value=0, max_value=29), max_size=10))
def test_property_repeating_a_click_within_seconds_never_adds_points(
    scoring: CompiledScoring, repeats: list[float]
) -> None:
    first = tracked("click", 7200, link="pricing")
    again = [tracked("click", 7200 + s, link="pricing") for s in repeats]
    assert (
        scoring.evaluate(GRADE_A, [first, *again], NOW).engagement <= scoring.evaluate(GRADE_A, [first], NOW).engagement
    )


junk = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.floats(allow_nan=True),
    st.text(max_size=40),
    st.lists(st.integers(), max_size=3),
    st.sampled_from(["2026-03-20T09:00:00", "2026-03-20T09:00:00Z", "yesterday", "::1", "17.1.2.3", "999.1.1.1"]),
)


@settings(max_examples=150, deadline=None)
@given(
    props=st.dictionaries(
        st.sampled_from(["ip", "user_agent", "honeypot", "send", "link", "seconds_after_delivery", "sent_at", "proxy"]),
        junk,
    ),
    kind=st.sampled_from(["open", "click", "page_view"]),
)
def test_property_any_recorded_properties_get_a_verdict_and_never_an_error(
    scoring: CompiledScoring, props: dict[str, Any], kind: str
) -> None:
    events = [EventRecord(kind, SENT + timedelta(minutes=5), props), tracked("click", 600, link="x")]
    verdicts = scoring.classify(events)
    assert [v.kind in ("human", "suspect", "machine") for v in verdicts] == [True, True]
    scoring.evaluate(GRADE_A, events, NOW)


# Events as most leads have them (no signal of their own: a send, a link, a page), and some
# with signals, bursts and repeats, so that both the quick look and the whole one decide.
plain_props = st.fixed_dictionaries(
    {},
    optional={
        "send": st.sampled_from([1, 2, 3, "s1", 1.0, True, ["x"]]),
        "link": st.sampled_from(["a", "b", "c", "d", None]),
        "url": st.sampled_from(["https://x.example/pricing", "https://x.example/blog"]),
    },
)


@st.composite
def mostly_plain_events(draw: Any) -> list[EventRecord]:
    from tests.unit.test_engagement_replay import START, gaps, kinds, props

    at = START + timedelta(seconds=draw(st.integers(0, 86400)))
    events = []
    for _ in range(draw(st.integers(0, 12))):
        at += timedelta(seconds=draw(gaps))
        chosen = draw(st.one_of(plain_props, plain_props, plain_props, props))
        events.append(EventRecord(draw(kinds), at, chosen))
    return draw(st.permutations(events))


@settings(max_examples=500, deadline=None)
@given(events=mostly_plain_events(), data=st.data())
def test_events_a_quick_look_finds_human_get_the_verdicts_the_whole_classification_gives(
    events: list[EventRecord], data: st.DataObject
) -> None:
    from tests.unit.test_engagement_replay import scorings

    scoring = data.draw(scorings)
    classifier = scoring.classifier
    assert classifier.classify(events) == classifier._classify(events)
