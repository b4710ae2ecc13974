"""What makes an email look like bulk mail done right, checked without sending it.

Pure functions over rendered HTML and text: whether an open pixel may be added, and the
warnings `nurture validate` prints for a template (no text part, image-heavy HTML, link
text that shows another address than the link goes to). The sender's identity (name and
postal address) is checked with the footer rules in `mail/footer.py`.
"""

from __future__ import annotations

import html as htmllib
import re
from collections.abc import Mapping
from datetime import UTC, datetime
from urllib.parse import urlsplit

from nurture.errors import Diagnostic
from nurture.mail.links import LinkTracker
from nurture.mail.tracking import Links
from nurture.scenario.expr import Record
from nurture.scenario.templates import TemplateError, TemplateStore

# SpamAssassin's HTML_IMAGE_ONLY_04 … _32 rules score any HTML part that has an image and
# at most 3,200 characters of text (0.6 to 2.8 points each). An open pixel is an image, so
# it goes only into HTML with more text than that.
OPEN_PIXEL_MIN_TEXT = 3200

_HIDDEN = re.compile(r"(?is)<(head|style|script|title)\b.*?</\1\s*>|<!--.*?-->")
_TAG = re.compile(r"<[^>]*>")
_IMG = re.compile(r"(?i)<img\b")
_ANCHOR = re.compile(r"(?is)<a\b([^>]*)>(.*?)</a\s*>")
_HREF = re.compile(r"""(?is)\bhref\s*=\s*(?:"([^"]*)"|'([^']*)'|([^\s>]+))""")
# Text that a reader takes for an address: a URL, or a bare host name like www.acme.example.
_URLISH = re.compile(
    r"(?i)^(?:https?://\S+|www\.[a-z0-9-]+(?:\.[a-z0-9-]+)+(?:/\S*)?|[a-z0-9-]+(?:\.[a-z0-9-]+)*\.[a-z]{2,}/\S*)$"
)


def visible_text(markup: str) -> str:
    """The text a reader sees in an HTML part, whitespace collapsed."""
    body = _TAG.sub(" ", _HIDDEN.sub(" ", markup))
    return " ".join(htmllib.unescape(body).split())


def can_carry_pixel(markup: str) -> bool:
    """Whether an open pixel leaves this HTML with enough text not to read as image-only."""
    # The visible text is never longer than the markup (tags go, entities shrink), so short
    # HTML, most campaign emails, needs no scan.
    return len(markup) > OPEN_PIXEL_MIN_TEXT and len(visible_text(markup)) > OPEN_PIXEL_MIN_TEXT


def add_open_pixel(markup: str, pixel_url: str) -> str:
    """`markup` with a 1×1 open pixel at the end of its body, if it has the text to carry one."""
    if not can_carry_pixel(markup):
        return markup
    pixel = f'<img src="{htmllib.escape(pixel_url)}" width="1" height="1" alt="">'
    return markup.replace("</body>", pixel + "</body>", 1) if "</body>" in markup else markup + pixel


def _host(url: str) -> str:
    text = url.strip()
    if not re.match(r"(?i)^[a-z][a-z0-9+.-]*://", text):
        text = "http://" + text
    try:
        host = urlsplit(text).hostname or ""
    except ValueError:
        return ""
    return host.lower().removeprefix("www.")


def misleading_links(markup: str) -> list[tuple[str, str]]:
    """(shown text, real target) for each link whose text shows an address on another host
    than the one it goes to: what phishing looks like, and what filters look for. A tracked
    link goes to the tracking host, so its text should be words, not the destination's URL."""
    found = []
    for attributes, inner in _ANCHOR.findall(markup):
        href = _HREF.search(attributes)
        if href is None:
            continue
        target = htmllib.unescape(next(g for g in href.groups() if g is not None))
        shown = " ".join(htmllib.unescape(_TAG.sub("", inner)).split())
        if not _URLISH.match(shown) or target.lower().startswith("mailto:"):
            continue
        if _host(shown) != _host(target):
            found.append((shown, target))
    return found


def template_warnings(
    *,
    html: str,
    text: str,
    has_text_part: bool,
) -> list[str]:
    """Deliverability warnings for one rendered template (its HTML with links as sent)."""
    warnings = []
    if not has_text_part:
        warnings.append(
            "no text part (NAME.txt): one is derived from the HTML, but a text version written for "
            "reading looks less like bulk mail"
        )
    images = len(_IMG.findall(html))
    length = len(visible_text(html))
    if images and length <= OPEN_PIXEL_MIN_TEXT:
        warnings.append(
            f"image-heavy HTML: {images} image(s) with {length} characters of text; spam filters score "
            f"images in HTML with up to {OPEN_PIXEL_MIN_TEXT} characters of text (SpamAssassin HTML_IMAGE_ONLY)"
        )
    for shown, target in misleading_links(html):
        warnings.append(
            f"link text shows {shown!r} but the link goes to {_host(target) or target!r}: "
            "write what the link is about instead of an address"
        )
    return warnings


def check_template(
    store: TemplateStore, name: str, base_url: str, sender: Mapping[str, str] | None = None
) -> list[Diagnostic]:
    """Deliverability warnings for template `name` of `store`, rendered as it would be sent
    (every link tracked through `base_url`) for a lead with no field set. A template that does
    not render is left to the template checks, which report why."""
    links = Links(base_url, "validate", 0, 0)
    tracker = LinkTracker(links.click, base_url)
    context = {
        "lead": Record({}),
        "score": Record({}),
        "scenario": name,
        "unsubscribe_url": links.unsubscribe(),
        "link": tracker.tracked_named,
        "full_name": "",
        "now": datetime(2026, 1, 5, 9, 0, tzinfo=UTC),
        "sender": dict(sender or {"name": "", "postal_address": "", "contact": ""}),
    }
    try:
        rendered = store.render(name, "", context)
    except TemplateError:
        return []
    path = store.root / f"{name}.html"
    try:
        source_lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError):
        source_lines = []
    has_text = (store.root / f"{name}.txt").is_file()
    problems = []
    html = tracker.html(rendered.html)
    for warning in template_warnings(html=html, text=rendered.text, has_text_part=has_text):
        line = 1
        shown = re.match(r"link text shows '(.*?)' but", warning)
        if shown:
            line = next((i for i, text in enumerate(source_lines, 1) if shown.group(1) in text), 1)
        problems.append(Diagnostic(str(path), line, warning))
    return problems
