"""Lead files parsed into records that know their line; encodings recognised."""

from __future__ import annotations

import pytest

from nurture.errors import NurtureError
from nurture.importing import RowProblem, parse_rows, sendable_address


def records(data: bytes, name: str = "leads.csv", **kw: str) -> list[tuple[str, object]]:
    return list(parse_rows(data, name, **kw))


def test_csv_line_numbers_stay_right_after_blank_lines_and_multi_line_values() -> None:
    data = b'email,note\n\nann@a.example,one\n\n\nbob@b.example,"two\nlines"\n\ncho@c.example,three\n'
    found = records(data)
    assert [where for where, _ in found] == ["leads.csv:3", "leads.csv:6", "leads.csv:9"]
    assert found[1][1] == {"email": "bob@b.example", "note": "two\nlines"}


def test_a_row_with_too_many_values_is_reported_on_its_own_line() -> None:
    found = records(b"email\n\nann@a.example,extra\nbob@b.example\n")
    assert found[0] == ("leads.csv:3", RowProblem("leads.csv:3", "more values than header columns"))
    assert found[1] == ("leads.csv:4", {"email": "bob@b.example"})


def test_a_cp932_file_is_recognised_and_the_message_offers_the_encoding_option() -> None:
    data = "email,company\n\nyamada@example.jp,株式会社山田製作所\n".encode("cp932")
    with pytest.raises(NurtureError) as caught:
        records(data)
    message = str(caught.value)
    assert message.startswith("leads.csv:3: not UTF-8")
    assert "--encoding cp932" in message
    assert records(data, encoding="cp932") == [
        ("leads.csv:3", {"email": "yamada@example.jp", "company": "株式会社山田製作所"})
    ]


def test_a_latin1_file_gets_the_general_hint_and_an_unknown_encoding_is_named() -> None:
    with pytest.raises(NurtureError, match=r"leads.csv:2: not UTF-8 .*pass --encoding"):
        records("email,city\nann@a.example,Zürich\n".encode("latin-1"))
    with pytest.raises(NurtureError, match="unknown encoding 'klingon'"):
        records(b"email\n", encoding="klingon")


def test_a_utf8_bom_is_not_part_of_the_first_column() -> None:
    assert records("email\nann@a.example\n".encode("utf-8-sig")) == [("leads.csv:2", {"email": "ann@a.example"})]


def test_json_lines_and_arrays_keep_their_lines() -> None:
    assert records(b'{"email": "a@a.example"}\n\n[1]\n', "l.jsonl") == [
        ("l.jsonl:1", {"email": "a@a.example"}),
        ("l.jsonl:3", RowProblem("l.jsonl:3", "not an object")),
    ]
    assert [w for w, _ in records(b'[\n{"email": "a@a.example"},\n\n{"email": "b@b.example"}]', "l.json")] == [
        "l.json:2",
        "l.json:4",
    ]


@pytest.mark.parametrize(
    ("address", "sent_as"),
    [
        ("Ann@Example.COM", "Ann@example.com"),
        ("taro@例え.jp", "taro@xn--r8jz45g.jp"),
        ("o'neil+news@mail.example.ie", "o'neil+news@mail.example.ie"),
    ],
)
def test_addresses_are_stored_as_the_sender_will_send_them(address: str, sent_as: str) -> None:
    assert sendable_address(address) == sent_as


@pytest.mark.parametrize(
    ("address", "reason"),
    [
        ("山田@example.jp", "needs SMTPUTF8"),
        ("ann@@example.com", "not a valid email address"),
        ("ann@example", "not a valid email address"),
        ("a..b@example.com", "not a valid email address"),
        ("ann@exa mple.com", "not a valid email address"),
        ("ann@-bad-.example", "not a valid email address"),
    ],
)
def test_addresses_the_sender_cannot_send_are_refused_with_the_reason(address: str, reason: str) -> None:
    with pytest.raises(ValueError, match=reason):
        sendable_address(address)
