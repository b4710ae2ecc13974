"""Suppression lists move between tools as CSV files."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from nurture.errors import ImportProblem
from nurture.feedback.suppressions import Suppression, read_csv, write_csv


def test_another_tools_export_loads_with_its_own_words_for_reasons() -> None:
    text = (
        "\ufeffEmail,Reason,Created_At,List\n"
        "Anna@X.example,bounce,2025-11-02T10:00:00Z,newsletter\n"
        "ben@x.example,spamreport,,\n"
        "cy@x.example,,2025-12-01,\n"
        "\n"
        "anna@x.example,hard_bounce,,\n"  # the same address twice: one row
    )
    rows = read_csv(text)
    assert rows == [
        Suppression("anna@x.example", "hard_bounce"),
        Suppression("ben@x.example", "complaint"),
        Suppression("cy@x.example", "imported", datetime(2025, 12, 1, tzinfo=UTC)),
    ]


def test_bad_rows_are_named_by_line_and_nothing_is_imported() -> None:
    text = (
        "email,reason,created_at\nok@x.example,complaint,\nnot-an-address,,\nz@x.example,angry,\n"
        "q@x.example,,yesterday\n"
    )
    with pytest.raises(ImportProblem) as problem:
        read_csv(text, "old-tool.csv")
    assert str(problem.value).splitlines() == [
        "old-tool.csv:3: not an email address: 'not-an-address'",
        "old-tool.csv:4: unknown reason 'angry' (use one of hard_bounce, soft_bounces, complaint, unsubscribed, "
        "imported, manual)",
        "old-tool.csv:5: created_at 'yesterday' is not an ISO 8601 time",
    ]


def test_a_file_without_an_email_column_is_refused() -> None:
    with pytest.raises(ImportProblem, match="no 'email' column"):
        read_csv("address,reason\na@x.example,bounce\n", "x.csv")


def test_export_reads_back_as_the_same_list() -> None:
    rows = [
        Suppression("a@x.example", "hard_bounce", datetime(2026, 3, 3, 14, 0, tzinfo=UTC), "dsn"),
        Suppression("b@x.example", "complaint", None, "ses"),
    ]
    text = write_csv(rows)
    assert text.splitlines()[0] == "email,reason,created_at,source"
    assert [(r.email, r.reason, r.created_at) for r in read_csv(text)] == [
        (r.email, r.reason, r.created_at) for r in rows
    ]
