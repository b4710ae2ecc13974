"""`leads import` in chunks: one upsert per chunk, the same outcome as a row at a time."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from nurture.clock import FakeClock
from nurture.errors import NurtureError
from nurture.leads import import_leads
from nurture.store import Store
from nurture.store.db import make_engine
from nurture.store.migrate import upgrade
from tests.integration.conftest import START


def _store(url: str) -> Store:
    engine = make_engine(url)
    upgrade(engine)
    return Store(engine, FakeClock(START))


def test_an_import_spanning_several_chunks_merges_repeats_names_bad_rows_and_keeps_existing_fields(
    db_url: str, tmp_path: Path
) -> None:
    store = _store(db_url)
    with store.transaction() as conn:
        store.leads.upsert(
            conn, {"email": "old@acme.example", "company": "Acme", "tags": ["vip"], "custom": {"plan": "gold"}}
        )
    path = tmp_path / "leads.csv"
    path.write_text(
        "email,first_name,job_title,tags,consent,consent_topic,seats\n"
        "a@acme.example,Ann,,,granted,news,\n"  # 2
        "old@acme.example,Olga,,trial,,,5\n"  # 3
        "broken,X,,,,,\n"  # 4
        "b@acme.example,Bob,,,,,\n"  # 5
        "a@acme.example,,CTO,beta,,,\n"  # 6: after a chunk boundary
        "c@acme.example,Cy,,,,,\n"  # 7
        "c@acme.example,,Buyer,,,,\n",  # 8: within the chunk
        encoding="utf-8",
    )
    seen: list[tuple[int, int]] = []
    report = import_leads(store, path, chunk=2, progress=lambda done, size: seen.append((done, size)))

    assert [str(p) for p in report.problems] == [f"{path}:4: email: not a valid email address: 'broken'"]
    assert [str(w) for w in report.warnings] == [
        f"{path}:6: a@acme.example also on {path}:2; this later row wins",
        f"{path}:8: c@acme.example also on {path}:7; this later row wins",
    ]
    assert (report.created, report.updated) == (3, 3)
    ann = store.leads.by_email("a@acme.example")
    assert ann is not None
    assert (ann.first_name, ann.job_title, ann.tags) == ("Ann", "CTO", ["beta"])
    cy = store.leads.by_email("c@acme.example")
    assert cy is not None and (cy.first_name, cy.job_title) == ("Cy", "Buyer")
    olga = store.leads.by_email("old@acme.example")
    assert olga is not None
    assert (olga.first_name, olga.company, olga.lifecycle_stage) == ("Olga", "Acme", "cold")
    assert olga.tags == ["vip", "trial"]
    assert olga.custom == {"plan": "gold", "seats": "5"}
    with store.reading() as conn:
        consents = store.consents.for_leads(conn, [ann.id])[ann.id]
    assert [(c.topic, c.status.value) for c in consents] == [("news", "granted")]
    assert seen[-1] == (path.stat().st_size, path.stat().st_size)


def test_a_file_that_is_not_utf8_imports_nothing_and_names_the_line(db_url: str, tmp_path: Path) -> None:
    store = _store(db_url)
    path = tmp_path / "leads.csv"
    path.write_bytes(
        b"email,company\n" + b"".join(b"p%d@acme.example,Acme\n" % i for i in range(3000)) + b"x@acme.example,\xff\n"
    )
    with pytest.raises(NurtureError, match=rf"^{re.escape(str(path))}:3002: not UTF-8"):
        import_leads(store, path)
    assert store.leads.by_email("p0@acme.example") is None


def test_values_no_database_can_store_are_bad_rows_named_by_line_and_the_rest_imports(
    db_url: str, tmp_path: Path
) -> None:
    # JSON's NaN and Infinity (Python reads them) and a NUL character (PostgreSQL text cannot
    # hold one) used to fail the whole chunk on PostgreSQL with a driver traceback.
    path = tmp_path / "leads.jsonl"
    path.write_text(
        '{"email": "h0@acme.example"}\n'
        '{"email": "h1@acme.example", "custom": {"n": NaN}}\n'
        '{"email": "h2@acme.example", "custom": {"notes": ["a\\u0000b"]}}\n'
        '{"email": "h3@acme.example", "tags": ["x\\u0000"]}\n'
        '{"email": "h4@acme.example", "custom": {"big": 1e999}}\n'
        '{"email": "h5@acme.example", "custom": {"k\\u0000": 1}}\n'
        '{"email": "h6@acme.example", "custom": {"big": 123456789012345678901234567890}}\n',
        encoding="utf-8",
    )
    store = _store(db_url)
    report = import_leads(store, path, chunk=3)

    assert [str(p).removeprefix(f"{path}:") for p in report.problems] == [
        "2: custom: n: nan is not a number JSON can store",
        "3: custom: notes[0]: contains a NUL character",
        "4: tags: tag 'x\\x00' must be one line of text (no control characters)",
        "5: custom: big: inf is not a number JSON can store",
        "6: custom: 'k\\x00': a name with a NUL character",
    ]
    assert report.created == 2
    assert store.leads.by_email("h0@acme.example") is not None
    assert store.leads.by_email("h6@acme.example") is not None


def test_an_unreadable_csv_row_is_named_and_the_rows_after_it_import(db_url: str, tmp_path: Path) -> None:
    path = tmp_path / "leads.csv"
    path.write_text(
        "email,notes\nf1@acme.example,ok\nf2@acme.example," + "x" * 200_000 + "\nf3@acme.example,ok\n",
        encoding="utf-8",
    )
    store = _store(db_url)
    report = import_leads(store, path)

    assert [str(p) for p in report.problems] == [f"{path}:3: unreadable CSV: field larger than field limit (131072)"]
    assert report.created == 2
    assert store.leads.by_email("f3@acme.example") is not None
    assert store.leads.by_email("f2@acme.example") is None


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[" + '{"email": "a%d@acme.example"},' * 5 + "\n", "7: bad JSON: the array is not closed with ']'"),
        ("[" + '{"email": "a%d@acme.example"},' * 5 + "\n{oops}]", "7: bad JSON: Expecting property name"),
    ],
)
def test_a_broken_json_array_imports_nothing_even_after_whole_chunks(
    db_url: str, tmp_path: Path, text: str, message: str
) -> None:
    path = tmp_path / "leads.json"
    path.write_text((text % tuple(range(5))).replace("},", "},\n"), encoding="utf-8")
    store = _store(db_url)
    with pytest.raises(NurtureError) as caught:
        import_leads(store, path, chunk=2)
    assert str(caught.value).removeprefix(f"{path}:").startswith(message)
    assert store.leads.by_email("a0@acme.example") is None
