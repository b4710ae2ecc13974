"""Every campaign email shows the sender's name, postal address and an unsubscribe link;
the built-in double opt-in email and the consent pages."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from nurture.consent.pages import render_confirmation_email, render_page
from nurture.mail.footer import SenderIdentity, check_sender_identity
from nurture.scenario.templates import TemplateStore

ACME = SenderIdentity("Acme Analytics GmbH", "Friedrichstraße 12, 10117 Berlin, Germany")
LAYOUT = """<html><body>{% block body %}{% endblock %}
<p>{{ sender.name }} · {{ sender.postal_address }}<br><a href="{{ unsubscribe_url }}">Unsubscribe</a></p>
</body></html>"""
TEXT_FOOTER = "\n--\n{{ sender.name }}, {{ sender.postal_address }}\nUnsubscribe: {{ unsubscribe_url }}\n"


def store(tmp_path: Path, files: dict[str, str]) -> TemplateStore:
    for name, body in files.items():
        (tmp_path / name).write_text(body, encoding="utf-8")
    return TemplateStore(tmp_path)


def messages(found: list[object]) -> list[str]:
    return [str(d) for d in found]


def test_a_template_with_the_configured_footer_in_both_parts_passes(tmp_path: Path) -> None:
    templates = store(
        tmp_path,
        {
            "_layout.html": LAYOUT,
            "welcome.html": '{% extends "_layout.html" %}{% block body %}<p>Hi {{ lead.first_name }}</p>'
            "{% if lead.company_size >= 100 %}<p>Big!</p>{% endif %}"
            "<p>{{ lead.webinar_title or 'our webinar' }}</p>"
            "{% for seat in 'x' * lead.seats|int %}<p>Seat {{ loop.index }} of {{ lead.seats|float }}</p>{% endfor %}"
            "{% endblock %}",
            "welcome.txt": "Hi {{ lead.first_name }}" + TEXT_FOOTER,
            "plain.html": "<p>Hi</p><p>Acme Analytics GmbH<br>Friedrichstraße 12,\n 10117 Berlin, Germany</p>"
            "<a href='{{ unsubscribe_url }}'>Abmelden</a>",
        },
    )
    assert check_sender_identity(templates, {"welcome": 7, "plain": 12}, ACME, "s.yaml") == []


def test_each_missing_part_of_the_identity_is_reported_at_the_step_that_sends_it(tmp_path: Path) -> None:
    templates = store(
        tmp_path,
        {
            "no_address.html": "<p>Hi</p><p>{{ sender.name }}</p><a href='{{ unsubscribe_url }}'>Unsubscribe</a>",
            "no_link.html": "<p>{{ sender.name }}, {{ sender.postal_address }}</p>"
            "<p>To unsubscribe go to {{ unsubscribe_url }}</p>",
            "no_text_link.html": LAYOUT.replace("{% block body %}{% endblock %}", "<p>Hi</p>"),
            "no_text_link.txt": "Hi\n{{ sender.name }}, {{ sender.postal_address }}\n",
        },
    )
    uses = {"no_address": 4, "no_link": 9, "no_text_link": 14}
    found = messages(check_sender_identity(templates, uses, ACME, "s.yaml"))
    assert len(found) == 4, found
    no_address = "s.yaml:4: template 'no_address' does not show the sender's postal address"
    assert sum(m.startswith(no_address) for m in found) == 2
    assert sum(m.startswith("s.yaml:9: template 'no_link' does not show the unsubscribe link") for m in found) == 1
    assert "as a link (href) in its HTML part" in next(m for m in found if m.startswith("s.yaml:9:"))
    assert [m for m in found if m.startswith("s.yaml:14:")] == [
        "s.yaml:14: template 'no_text_link' does not show the unsubscribe link {{ unsubscribe_url }} in its text part"
        ' — add <a href="{{ unsubscribe_url }}">Unsubscribe</a> (and the URL in the .txt part)'
    ]


def test_without_a_configured_identity_validate_says_what_to_set(tmp_path: Path) -> None:
    templates = store(tmp_path, {"a.html": LAYOUT})
    found = messages(check_sender_identity(templates, {"a": 6}, None, "s.yaml"))
    assert found == [
        "s.yaml:6: the sender's identity is not configured, so emails cannot show who sends them — "
        "set NURTURE_SENDER_NAME and NURTURE_SENDER_POSTAL_ADDRESS (required in Japan, the EU and by CAN-SPAM)"
    ]


def test_a_template_that_cannot_render_is_reported_not_passed(tmp_path: Path) -> None:
    templates = store(tmp_path, {"broken.html": "{{ lead.first_name | nosuchfilter }}"})
    (found,) = messages(check_sender_identity(templates, {"broken": 3}, ACME, "s.yaml"))
    assert found.startswith("s.yaml:3: could not render template 'broken'")


def test_the_sample_templates_show_the_configured_identity() -> None:
    root = Path(__file__).resolve().parents[2] / "email_templates"
    templates = TemplateStore(root)
    names = {p.stem: 1 for p in root.glob("*.html") if not p.stem.startswith("_")}
    assert check_sender_identity(templates, names, ACME, "scenarios") == []


# -- the built-in double opt-in email and pages -------------------------------------------

EXPIRES = datetime(2026, 3, 9, 9, 0, tzinfo=UTC)


def test_the_confirmation_email_carries_the_link_its_expiry_and_the_senders_identity() -> None:
    email = render_confirmation_email(
        sender=ACME,
        email="jane@example.com",
        first_name="Jane",
        last_name="Roe",
        country="DE",
        topic="product-news",
        confirm_url="https://nurture.example/consent/confirm/TOKEN",
        preferences_url="https://nurture.example/p/PREFS",
        expires_at=EXPIRES,
        timezone="Europe/Berlin",
    )
    assert email.subject == "Please confirm: emails about Product news from Acme Analytics GmbH"
    for part in (email.html, email.text):
        assert "https://nurture.example/consent/confirm/TOKEN" in part
        assert "Friedrichstraße 12, 10117 Berlin, Germany" in part and "Acme Analytics GmbH" in part
        assert "09 March 2026, 10:00 CET" in part
    assert 'href="https://nurture.example/p/PREFS"' in email.html


def test_a_lead_in_japan_gets_the_confirmation_in_japanese_with_tokyo_time() -> None:
    tokyo = SenderIdentity("株式会社アクメ", "〒100-0005 東京都千代田区丸の内1-1-1")
    email = render_confirmation_email(
        sender=tokyo,
        email="hana@example.jp",
        first_name="花子",
        last_name="山田",
        country="JP",
        topic="seminars",
        confirm_url="https://nurture.example/consent/confirm/T",
        preferences_url="https://nurture.example/p/P",
        expires_at=EXPIRES,
    )
    assert email.subject.startswith("【株式会社アクメ】メール配信のご確認")
    assert "山田 様" in email.text and "2026年03月09日 18:00 JST" in email.text
    assert "送信者：株式会社アクメ" in email.html and "東京都千代田区丸の内" in email.html


def test_consent_pages_escape_what_they_show() -> None:
    page = render_page(
        "confirm",
        sender=ACME,
        email="<script>alert(1)</script>@example.com",
        topic_label="News",
        action="/consent/confirm/T",
    )
    assert "<script>alert" not in page and "&lt;script&gt;" in page
    assert "Friedrichstraße 12" in page


@pytest.mark.parametrize("reason", ["expired", "forged"])
def test_a_refused_link_gets_a_page_that_says_why(reason: str) -> None:
    page = render_page("link_problem", sender=None, reason=reason)
    assert ("expired" in page) is (reason == "expired")
