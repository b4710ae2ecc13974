"""YAML parsing that remembers where every key and item came from.

PyYAML drops positions once it builds Python objects; marketers need `file:line`
messages, so mappings and sequences here carry the line of each key and item.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Sequence
from typing import Any

import yaml

from nurture.errors import Diagnostic


class LineDict(dict[Any, Any]):
    line: int = 0
    key_lines: dict[Any, int]


class LineList(list[Any]):
    line: int = 0
    item_lines: list[int]


MAX_BYTES = 1_000_000  # a scenario or scoring file; real ones are a few kilobytes
MAX_ALIASES = 100  # `*name` references: a few are handy, thousands build exponential documents


class _Loader(yaml.SafeLoader):
    duplicates: list[tuple[int, str]]
    aliases = 0

    def compose_node(self, parent: Any, index: Any) -> Any:
        if self.check_event(yaml.AliasEvent):
            self.aliases += 1
            if self.aliases > MAX_ALIASES:
                event = self.peek_event()  # type: ignore[no-untyped-call]
                raise yaml.composer.ComposerError(
                    None, None, f"more than {MAX_ALIASES} aliases (*name references)", event.start_mark
                )
        return super().compose_node(parent, index)


def _mapping(loader: _Loader, node: yaml.MappingNode) -> LineDict:
    loader.flatten_mapping(node)
    result = LineDict()
    result.line = node.start_mark.line + 1
    result.key_lines = {}
    for key_node, value_node in node.value:
        key = loader.construct_object(key_node, deep=True)
        if key in result:
            loader.duplicates.append((key_node.start_mark.line + 1, str(key)))
        result[key] = loader.construct_object(value_node, deep=True)
        result.key_lines[key] = key_node.start_mark.line + 1
    return result


def _sequence(loader: _Loader, node: yaml.SequenceNode) -> LineList:
    result = LineList(loader.construct_object(child, deep=True) for child in node.value)
    result.line = node.start_mark.line + 1
    result.item_lines = [child.start_mark.line + 1 for child in node.value]
    return result


_Loader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _mapping)
_Loader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_SEQUENCE_TAG, _sequence)


def too_large(size: int, filename: str) -> Diagnostic | None:
    """A diagnostic when a file of `size` bytes is over the limit, checked before parsing."""
    if size <= MAX_BYTES:
        return None
    return Diagnostic(
        filename,
        1,
        f"the file is {size / 1_000_000:.1f} MB, over the limit of {MAX_BYTES / 1_000_000:g} MB",
        "a scenario is a few kilobytes; split a very large one into several files",
    )


def parse_yaml(text: str, filename: str) -> tuple[Any, list[Diagnostic]]:
    """Parse one YAML document; syntax problems, duplicate keys and a text over the size
    limit become diagnostics."""
    oversized = too_large(len(text.encode("utf-8", "replace")) if len(text) > MAX_BYTES // 4 else 0, filename)
    if oversized:
        return None, [oversized]
    width = full_width_problems(text, filename)
    if width:
        return None, width
    loader = _Loader(text)
    loader.duplicates = []
    try:
        data = loader.get_single_data()
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark else 1
        problem = exc.problem or "invalid YAML"
        return None, [Diagnostic(filename, line, f"YAML syntax error: {problem}", _syntax_hint(text, line))]
    except yaml.YAMLError as exc:
        return None, [Diagnostic(filename, 1, f"YAML error: {exc}")]
    finally:
        loader.dispose()
    diagnostics = [
        Diagnostic(filename, line, f"duplicate key '{key}'", "the later value would silently win")
        for line, key in loader.duplicates
    ]
    return data, diagnostics


def line_of(data: Any, loc: Sequence[Any]) -> int:
    """The line of the deepest part of `loc` (a path of keys and indexes) found in `data`."""
    line = getattr(data, "line", 1) or 1
    current = data
    for part in loc:
        if isinstance(current, LineDict) and part in current:
            line = current.key_lines.get(part, line)
            current = current[part]
        elif isinstance(current, LineList) and isinstance(part, int) and 0 <= part < len(current):
            line = current.item_lines[part]
            current = current[part]
    return line


_KEY_WITH_WIDE_COLON = re.compile(r"^\s*(?:-\s+)?([A-Za-z_][A-Za-z0-9_]*)\s*：")
_WIDE_ASCII = re.compile(r"[\uff01-\uff5e]")


def full_width_problems(text: str, filename: str) -> list[Diagnostic]:
    """Full-width spaces and characters where YAML needs ASCII, each on its own line.

    Japanese input methods type `　` (U+3000) and `：` easily; YAML then reads a different
    structure, or none, and its own message points elsewhere. Full-width text inside values
    is fine and left alone.
    """
    problems: list[Diagnostic] = []
    for number, line in enumerate(text.splitlines(), start=1):
        stripped = line.lstrip(" \t\u3000")
        indent = line[: len(line) - len(stripped)]
        if "\u3000" in indent:
            problems.append(
                Diagnostic(
                    filename,
                    number,
                    f"full-width space (U+3000) in the indentation at column {indent.index(chr(0x3000)) + 1}",
                    "indent with ordinary half-width spaces (turn the input method off)",
                )
            )
            continue
        if stripped.startswith("#"):
            continue
        match = _KEY_WITH_WIDE_COLON.match(line)
        if match:
            problems.append(
                Diagnostic(
                    filename,
                    number,
                    f"full-width colon '：' after '{match[1]}'",
                    f"write '{match[1]}:' with a half-width colon and a space",
                )
            )
            continue
        key, colon, rest = stripped.partition(":")
        if colon and rest.startswith("\u3000") and " " not in key and not key.startswith(("'", '"')):
            problems.append(
                Diagnostic(
                    filename,
                    number,
                    f"full-width space (U+3000) after '{key.lstrip('- ')}:'",
                    "put a half-width space after the colon",
                )
            )
            continue
        if colon and " " not in key.lstrip("- ") and _WIDE_ASCII.search(key):
            plain = unicodedata.normalize("NFKC", key.lstrip("- "))
            problems.append(
                Diagnostic(
                    filename,
                    number,
                    f"key '{key.lstrip('- ')}' is written in full-width characters",
                    f"write it in half-width characters: '{plain}'",
                )
            )
    return problems


def _syntax_hint(text: str, line: int) -> str:
    """A hint for a YAML syntax error: the common marketer mistakes first."""
    lines = text.splitlines()
    nearby = lines[max(0, line - 2) : line + 1]
    for candidate in nearby:
        _, colon, value = candidate.partition(":")
        if colon and value.strip().startswith("{{"):
            return "a value that starts with '{{' must be quoted: subject: \"{{ lead.first_name }} ...\""
        if colon and value.strip().startswith(("@", "`", "%")):
            return "a value that starts with '@', '`' or '%' must be quoted"
    return "check indentation and quoting around this line"
