"""YAML parsing that remembers where every key and item came from.

PyYAML drops positions once it builds Python objects; marketers need `file:line`
messages, so mappings and sequences here carry the line of each key and item.
"""

from __future__ import annotations

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


class _Loader(yaml.SafeLoader):
    duplicates: list[tuple[int, str]]


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


def parse_yaml(text: str, filename: str) -> tuple[Any, list[Diagnostic]]:
    """Parse one YAML document; syntax problems and duplicate keys become diagnostics."""
    loader = _Loader(text)
    loader.duplicates = []
    try:
        data = loader.get_single_data()
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark else 1
        problem = exc.problem or "invalid YAML"
        return None, [
            Diagnostic(
                filename,
                line,
                f"YAML syntax error: {problem}",
                "check indentation and quoting around this line",
            )
        ]
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
