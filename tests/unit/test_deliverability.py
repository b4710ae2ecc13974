"""Template checks that `nurture validate` reports, and the open pixel that never makes a
message image-only."""

from __future__ import annotations

import email
from email import policy
from pathlib import Path

from nurture.mail.compose import Composer
from nurture.mail.deliverability import (
    OPEN_PIXEL_MIN_TEXT,
    add_open_pixel,
    check_template,
    misleading_links,
    template_warnings,
    visible_text,
)
from nurture.scenario.templates import TemplateStore
from nurture.vocabulary import STANDARD_FIELDS
from tests.samples import ROOT, SENT_AT, sample_emails

FOOTER = "<p>Acme Analytics · 100 Main Street · Boston, MA 02110</p>"


def test_pixel_goes_only_into_html_with_enough_text() -> None:
    short = f"<html><body><p>Hi Anna</p>{FOOTER}</body></html>"
    assert add_open_pixel(short, "https://t.example/o/x.gif") == short
    long = f"<html><body><p>{'word ' * (OPEN_PIXEL_MIN_TEXT // 5 + 10)}</p></body></html>"
    tracked = add_open_pixel(long, "https://t.example/o/x.gif?a=1&b=2")
    assert tracked.endswith(
        '<img src="https://t.example/o/x.gif?a=1&amp;b=2" width="1" height="1" alt=""></body></html>'
    )


def test_visible_text_leaves_out_head_styles_and_markup() -> None:
    markup = "<html><head><title>T</title><style>p{}</style></head><body><p>A &amp; B</p><!-- x --></body></html>"
    assert visible_text(markup) == "A & B"


def test_clean_template_gets_no_warning() -> None:
    html = f'<p>Hi Anna, <a href="https://go.acme.example/c/x">read the story</a>.</p>{FOOTER}'
    assert template_warnings(html=html, text="Hi Anna", has_text_part=True) == []


def test_missing_text_part_is_reported() -> None:
    [warning] = template_warnings(html=FOOTER, text="", has_text_part=False)
    assert warning.startswith("no text part")


def test_image_heavy_html_is_reported() -> None:
    html = f'<p><img src="https://cdn.acme.example/banner.png"><img src="https://cdn.acme.example/b.png"></p>{FOOTER}'
    [warning] = template_warnings(html=html, text="x", has_text_part=True)
    assert warning.startswith("image-heavy HTML: 2 image(s) with ")


def test_link_text_showing_another_address_than_its_target_is_reported() -> None:
    html = (
        '<a href="https://go.acme.example/c/tok">https://acme.example/pricing</a>'
        '<a href="https://acme.example/pricing">https://www.acme.example/pricing</a>'  # same host: fine
        '<a href="https://evil.example/">www.acme.example</a>'
        '<a href="mailto:sales@acme.example">sales@acme.example</a>'
        '<a href="https://go.acme.example/c/t2">Read more</a>'
    )
    assert misleading_links(html) == [
        ("https://acme.example/pricing", "https://go.acme.example/c/tok"),
        ("www.acme.example", "https://evil.example/"),
    ]


def test_every_sample_template_passes_the_deliverability_checks() -> None:
    for sample in sample_emails():
        parsed = email.message_from_bytes(sample.message.data, policy=policy.default)
        html = parsed.get_body(("html",)).get_content()  # type: ignore[union-attr]
        text = parsed.get_body(("plain",)).get_content()  # type: ignore[union-attr]
        has_text = (ROOT / "email_templates" / f"{sample.template}.txt").is_file()
        assert template_warnings(html=html, text=text, has_text_part=has_text) == [], sample.template


def test_composed_emails_carry_list_id_and_a_pixel_only_when_long_and_tracked(tmp_path: Path) -> None:
    (tmp_path / "short.html").write_text(f"<html><body><p>Hi {{{{ lead.first_name }}}}</p>{FOOTER}</body></html>")
    (tmp_path / "long.html").write_text(f"<html><body><p>{'word ' * 800}</p>{FOOTER}</body></html>")
    composer = Composer(tmp_path, "https://t.example", "s", "acme.example", scenario_names={"news": "Acme news"})
    lead = {name: None for name in STANDARD_FIELDS} | {"id": 1, "email": "anna@x.example", "custom": {}}
    lead |= {"first_name": "Anna", "score_fit": 0, "score_engagement": 0, "grade": "D"}

    def compose(template: str, scenario: str = "news") -> bytes:
        row = {"id": 9, "scenario_id": scenario, "template": template, "subject": "Hi", "sender": "a@acme.example"}
        row |= {"reply_to": None, "idempotency_key": f"e9-{template}"}
        return composer.compose(row, lead, SENT_AT).data

    short, long = compose("short"), compose("long")
    assert b"List-Id: Acme news <news.acme.example>\r\n" in short
    assert b"/o/" not in short and b"/o/" in long
    composer.untracked_opens = frozenset({"news"})
    assert b"/o/" not in compose("long")


def test_template_check_renders_as_sent_and_points_at_the_line(tmp_path: Path) -> None:
    (tmp_path / "promo.html").write_text(
        "<p>Hi {{ lead.first_name }}</p>\n"
        "<p><a href=\"{{ link('pricing', 'https://acme.example/pricing') }}\">https://acme.example/pricing</a></p>\n"
        '<p><img src="https://cdn.acme.example/banner.png"></p>\n'
    )
    problems = check_template(TemplateStore(tmp_path), "promo", "https://go.acme.example")
    assert [(Path(p.file).name, p.line, p.message.split(":")[0]) for p in problems] == [
        ("promo.html", 1, "no text part (NAME.txt)"),
        ("promo.html", 1, "image-heavy HTML"),
        ("promo.html", 2, "link text shows 'https"),
    ]
    assert "goes to 'go.acme.example'" in problems[2].message


def test_every_sample_template_passes_the_template_check() -> None:
    store = TemplateStore(ROOT / "email_templates")
    names = sorted(p.stem for p in store.root.glob("*.html") if not p.stem.startswith("_"))
    assert len(names) == 12
    assert [p for name in names for p in check_template(store, name, "https://go.acme.example")] == []
