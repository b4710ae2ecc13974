"""A lead's name written the way the lead writes it: family name first for Japanese leads.

`山田 太郎` in Japan, `Ann Smith` elsewhere. The order comes from the lead's own
`name_order` field when it has one (`family_first` / `given_first`), else from the
project's `name_order` setting; `auto` puts the family name first for leads whose
language is Japanese or whose country is Japan.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

FAMILY_FIRST_COUNTRIES = frozenset({"JP", "JPN", "JAPAN", "日本", "CN", "KR", "HU"})
FAMILY_FIRST_LANGUAGES = frozenset({"ja", "zh", "ko", "hu"})


def family_first(fields: Mapping[str, Any], setting: str = "auto") -> bool:
    own = str(fields.get("name_order") or "").strip().lower()
    choice = own if own in ("family_first", "given_first") else setting
    if choice == "family_first":
        return True
    if choice == "given_first":
        return False
    language = str(fields.get("language") or "").strip().lower().split("-")[0].split("_")[0]
    if language:
        return language in FAMILY_FIRST_LANGUAGES
    return str(fields.get("country") or "").strip().upper() in FAMILY_FIRST_COUNTRIES


def full_name(fields: Mapping[str, Any], setting: str = "auto") -> str:
    """The lead's full name in its order; empty when the lead has no name."""
    first = str(fields.get("first_name") or "").strip()
    last = str(fields.get("last_name") or "").strip()
    parts = (last, first) if family_first(fields, setting) else (first, last)
    return " ".join(p for p in parts if p)
