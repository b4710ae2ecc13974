"""Every link in an email is tracked: plain `<a href="https://...">` links and bare URLs in
the text part are rewritten into signed click links at render time.

A link keeps its target (with the scenario's UTM parameters added) and gets a name: the
anchor's `data-link="..."` attribute, else its host and path. `data-notrack` on an anchor
leaves that link untouched in both parts (for example a link to a third party's privacy
page). Links that already point at nurture (`link()`, the unsubscribe page) stay as they are.
"""

from __future__ import annotations

import html
import re
from collections.abc import Callable, Mapping
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

ClickMaker = Callable[[str, str], str]

_ANCHOR = re.compile(r"<a\b[^>]*>", re.I | re.S)
_HREF = re.compile(r"""(\bhref\s*=\s*)(?:"([^"]*)"|'([^']*)')""", re.I)
_ATTR = r"""\s+{name}(?:\s*=\s*(?:"[^"]*"|'[^']*'|[^\s>]+))?"""
_NOTRACK = re.compile(_ATTR.format(name="data-notrack"), re.I)
_NAME = re.compile(r"""\s+data-link\s*=\s*(?:"([^"]*)"|'([^']*)')""", re.I)
_URL = re.compile(r"""https?://[^\s<>"'`]+""")
_TRAILING = ".,;:!?)]}>。、）」』"
UTM_KEYS = ("source", "medium", "campaign", "term", "content")


def with_utm(url: str, utm: Mapping[str, str]) -> str:
    """`url` with `utm_*` parameters added; parameters the link already has are kept."""
    if not utm:
        return url
    parts = urlsplit(url)
    query = parse_qsl(parts.query, keep_blank_values=True)
    present = {key for key, _ in query}
    for key, value in utm.items():
        name = key if key.startswith("utm_") else f"utm_{key}"
        if name not in present and value:
            query.append((name, value))
    return urlunsplit(parts._replace(query=urlencode(query, safe="/:@{}")))


def link_name(url: str) -> str:
    """A readable name for a link without `data-link`: host and path, e.g. 'acme.example/pricing'."""
    parts = urlsplit(url)
    host = parts.netloc.removeprefix("www.")
    path = parts.path.rstrip("/")
    name = f"{host}{path}"
    return name if len(name) <= 80 else name[:79] + "…"


class LinkTracker:
    """Rewrites the links of one email; built per message, with its click-link maker."""

    def __init__(self, click: ClickMaker, own_base: str, utm: Mapping[str, str] | None = None) -> None:
        self.click = click
        self.own_base = own_base.rstrip("/")
        self.utm = dict(utm or {})
        self.untracked: set[str] = set()
        self.names: dict[str, str] = {}  # the HTML part's link names, reused for the same URL in the text part

    def _trackable(self, url: str) -> bool:
        return url.startswith(("http://", "https://")) and not url.startswith(self.own_base + "/")

    def tracked(self, url: str, name: str | None = None) -> str:
        target = with_utm(url, self.utm)
        return self.click(name or link_name(url), target)

    def tracked_named(self, name: str, url: str) -> str:
        """The template helper `link('pricing', 'https://...')`: a named tracked link, with UTM."""
        return self.click(name, with_utm(url, self.utm))

    def html(self, markup: str) -> str:
        return _ANCHOR.sub(self._anchor, markup)

    def _anchor(self, match: re.Match[str]) -> str:
        tag = match[0]
        href = _HREF.search(tag)
        if href is None:
            return tag
        url = html.unescape(href[2] if href[2] is not None else href[3]).strip()
        if _NOTRACK.search(tag):
            self.untracked.add(url)
            return _NOTRACK.sub("", tag)
        if not self._trackable(url):
            return tag
        named = _NAME.search(tag)
        name = (named[1] if named[1] is not None else named[2]) if named else None
        if name:
            self.names.setdefault(url, html.unescape(name))
        new = html.escape(self.tracked(url, self.names.get(url)), quote=True)
        tag = tag[: href.start()] + f'{href[1]}"{new}"' + tag[href.end() :]
        return _NAME.sub("", tag)

    def text(self, body: str) -> str:
        """Bare URLs of the text part; those the HTML part marked `data-notrack` stay as they are."""
        return _URL.sub(self._bare, body)

    def _bare(self, match: re.Match[str]) -> str:
        found = match[0]
        if ")" in found and "(" not in found:  # "(https://...)" as a derived text part writes links
            found = found[: found.index(")")]
        url = found.rstrip(_TRAILING)
        tail = found[len(url) :]
        if url in self.untracked or not self._trackable(url):
            return match[0]
        return self.tracked(url, self.names.get(url)) + tail + match[0][len(found) :]
