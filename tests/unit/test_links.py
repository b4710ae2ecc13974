"""Every link in an email is tracked: plain links, bare URLs in the text part, named links."""

from __future__ import annotations

import email
import re
from datetime import UTC, datetime
from email.message import EmailMessage
from email.policy import default
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

from nurture.mail.compose import Composer
from nurture.mail.links import LinkTracker, link_name, with_utm
from nurture.mail.tracking import verify

SECRET = "s3cret"
BASE = "https://t.example"


def compose(
    tmp_path: Path, html: str, text: str | None = None, utm: dict[str, str] | None = None, **lead: Any
) -> EmailMessage:
    folder = tmp_path / "email_templates"
    folder.mkdir(exist_ok=True)
    (folder / "news.html").write_text(html, encoding="utf-8")
    if text is not None:
        (folder / "news.txt").write_text(text, encoding="utf-8")
    composer = Composer(folder, BASE, SECRET, "mail.example", scenario_utm={"nurture": utm or {}})
    row = {
        "id": 7,
        "template": "news",
        "subject": "News",
        "scenario_id": "nurture",
        "sender": "Acme <news@acme.example>",
        "idempotency_key": "k1",
        "reply_to": None,
    }
    lead_row: dict[str, Any] = {
        "id": 3,
        "email": "ann@example.com",
        "first_name": "Ann",
        "last_name": "Smith",
        "custom": {},
        "score_fit": 0,
        "score_engagement": 0,
        "grade": "D",
    }
    for column in ("company", "company_size", "industry", "job_title", "country", "timezone", "source"):
        lead_row[column] = None
    for column in ("lifecycle_stage", "owner", "tags", "unsubscribed", "bounced", "created_at"):
        lead_row[column] = None
    lead_row.update(lead)
    built = composer.compose(row, lead_row, datetime(2026, 3, 2, 9, tzinfo=UTC))
    return email.message_from_bytes(built.data, policy=default)  # type: ignore[return-value]


def parts(message: EmailMessage) -> tuple[str, str]:
    html = message.get_body(("html",)).get_content()  # type: ignore[union-attr]
    text = message.get_body(("plain",)).get_content()  # type: ignore[union-attr]
    return html, text


def clicks(body: str) -> list[dict[str, Any]]:
    """The payloads of the click links in a body (what the tracking endpoint will verify)."""
    found = []
    for found_url in re.findall(r"https://t\.example/c/[^\s\"'<>)]+", body):
        url = found_url.rstrip(".")  # as mail clients link a URL at the end of a sentence
        payload = verify(SECRET, unquote(url.split("/c/", 1)[1]))
        assert payload is not None, f"{url} does not verify"
        found.append(payload)
    return found


def test_a_plain_link_in_html_and_a_bare_url_in_text_become_tracked_clicks(tmp_path: Path) -> None:
    html, text = parts(
        compose(
            tmp_path,
            '<p><a href="https://acme.example/pricing">See pricing</a></p>',
            "See pricing: https://acme.example/pricing.\n",
        )
    )
    assert "https://acme.example/pricing" not in html
    [in_html] = clicks(html)
    assert in_html["u"] == "https://acme.example/pricing" and in_html["n"] == "acme.example/pricing"
    assert in_html["s"] == 7 and in_html["l"] == 3
    [in_text] = clicks(text)
    assert in_text["u"] == "https://acme.example/pricing"
    assert re.search(r"/c/\S+\.\r?\n", text), "the sentence's full stop stays outside the link"


def test_data_link_names_a_link_and_data_notrack_leaves_it_alone_in_both_parts(tmp_path: Path) -> None:
    html, text = parts(
        compose(
            tmp_path,
            '<a data-link="demo" href="https://acme.example/demo?x=1&amp;y=2">Demo</a>'
            '<a href="https://law.example/privacy" data-notrack>Privacy</a>',
        )
    )
    [demo] = clicks(html)
    assert demo["n"] == "demo" and demo["u"] == "https://acme.example/demo?x=1&y=2"
    assert 'href="https://law.example/privacy"' in html and "data-notrack" not in html and "data-link" not in html
    assert "https://law.example/privacy" in text  # the derived text part keeps the opted-out link as it is
    assert [c["n"] for c in clicks(text)] == ["demo"]


def test_utm_parameters_of_the_scenario_go_on_every_link_without_replacing_the_links_own(tmp_path: Path) -> None:
    html, _ = parts(
        compose(
            tmp_path,
            '<a href="https://acme.example/a">A</a> <a href="https://acme.example/b?utm_source=partner">B</a>'
            "<a href=\"{{ link('named', 'https://acme.example/c') }}\">C</a>",
            utm={"source": "newsletter", "medium": "email", "campaign": "nurture"},
        )
    )
    targets = {c["n"]: parse_qs(urlsplit(c["u"]).query) for c in clicks(html)}
    assert targets["acme.example/a"] == {
        "utm_source": ["newsletter"],
        "utm_medium": ["email"],
        "utm_campaign": ["nurture"],
    }
    assert targets["acme.example/b"]["utm_source"] == ["partner"]
    assert targets["named"]["utm_medium"] == ["email"]


def test_unsubscribe_mailto_and_nurtures_own_links_are_not_rewrapped(tmp_path: Path) -> None:
    html, _ = parts(
        compose(
            tmp_path,
            '<a href="{{ unsubscribe_url }}">Unsubscribe</a> <a href="mailto:help@acme.example">Mail us</a>',
        )
    )
    assert f'href="{BASE}/u/' in html and 'href="mailto:help@acme.example"' in html
    assert clicks(html) == []


def test_link_helpers() -> None:
    assert link_name("https://www.acme.example/pricing/") == "acme.example/pricing"
    assert with_utm("https://a.example/x?q=1", {"source": "n"}) == "https://a.example/x?q=1&utm_source=n"
    tracker = LinkTracker(lambda name, url: f"{BASE}/c/{name}", BASE)
    assert tracker.html("<a href='https://a.example/'>x</a>") == f'<a href="{BASE}/c/a.example">x</a>'
    assert tracker.text("(https://a.example/x)") == f"({BASE}/c/a.example/x)"


def test_japanese_leads_are_addressed_family_name_first(tmp_path: Path) -> None:
    message = compose(tmp_path, "<p>{{ full_name }} 様</p>", first_name="太郎", last_name="山田", country="JP")
    assert str(message["To"]) == "山田 太郎 <ann@example.com>"
    assert "山田 太郎 様" in parts(message)[0]
    english = compose(tmp_path, "<p>Dear {{ full_name }}</p>", country="DE")
    assert str(english["To"]) == "Ann Smith <ann@example.com>"
    own_choice = compose(tmp_path, "<p>{{ full_name }}</p>", country="JP", custom={"name_order": "given_first"})
    assert str(own_choice["To"]) == "Ann Smith <ann@example.com>"
