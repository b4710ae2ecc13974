"""The built-in confirmation email and the pages of the consent flows, rendered from the
templates shipped inside the package (so they work from an installed wheel)."""

from __future__ import annotations

from datetime import datetime
from functools import lru_cache
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from jinja2 import Environment, FileSystemLoader, StrictUndefined, select_autoescape

from nurture.mail.footer import SenderIdentity
from nurture.scenario.templates import RenderedEmail, html_to_text

TEMPLATES = Path(__file__).parent / "templates"

CONFIRMATION_SUBJECTS = {
    "en": "Please confirm: emails about {topic} from {sender}",
    "ja": "【{sender}】メール配信のご確認（{topic}）",
}
LANGUAGES = tuple(CONFIRMATION_SUBJECTS)


@lru_cache(maxsize=1)
def _env() -> Environment:
    return Environment(
        loader=FileSystemLoader(str(TEMPLATES)),
        autoescape=select_autoescape(enabled_extensions=("html",), default_for_string=False),
        undefined=StrictUndefined,
        keep_trailing_newline=True,
    )


def topic_label(topic: str) -> str:
    """How a topic reads on a page: 'product-news' → 'Product news'."""
    text = topic.replace("-", " ").replace("_", " ").strip()
    return text[:1].upper() + text[1:]


def language_for(country: str | None) -> str:
    return "ja" if (country or "").upper() == "JP" else "en"


def render_confirmation_email(
    *,
    sender: SenderIdentity,
    email: str,
    first_name: str | None,
    last_name: str | None,
    country: str | None,
    topic: str,
    confirm_url: str,
    preferences_url: str,
    expires_at: datetime,
    timezone: str | None = None,
) -> RenderedEmail:
    """The double opt-in email, in Japanese for leads in Japan and in English otherwise."""
    lang = language_for(country)
    zone = ZoneInfo(timezone) if timezone else ZoneInfo("Asia/Tokyo" if lang == "ja" else "UTC")
    local = expires_at.astimezone(zone)
    expires = local.strftime("%Y年%m月%d日 %H:%M %Z") if lang == "ja" else local.strftime("%d %B %Y, %H:%M %Z")
    context: dict[str, Any] = {
        "sender": sender.as_context(),
        "email": email,
        "first_name": first_name,
        "last_name": last_name,
        "topic_label": topic_label(topic),
        "confirm_url": confirm_url,
        "preferences_url": preferences_url,
        "expires": expires,
    }
    html = _env().get_template(f"confirm_email.{lang}.html").render(context)
    text_path = TEMPLATES / f"confirm_email.{lang}.txt"
    text = _env().get_template(text_path.name).render(context) if text_path.is_file() else html_to_text(html)
    subject = CONFIRMATION_SUBJECTS[lang].format(topic=topic_label(topic), sender=sender.name)
    return RenderedEmail(subject, html, text)


def render_page(name: str, *, sender: SenderIdentity | None, lang: str = "en", **context: Any) -> str:
    """One of the consent pages: preferences, confirm, confirmed, link_problem."""
    identity = sender or SenderIdentity("", "")
    return _env().get_template(f"{name}.html").render(sender=identity.as_context(), lang=lang, **context)
