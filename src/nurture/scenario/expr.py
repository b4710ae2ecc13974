"""The one expression language of nurture, built on Jinja2's sandbox (never Python eval).

Conditions in scenarios look like::

    lead.company_size >= 100 and lead.industry in ["SaaS", "Manufacturing"]
    score.engagement >= 40
    events.count("page_view", within="7d", url="*pricing*") >= 3

Expressions are parsed once and analysed statically (which names, lead fields and event
types they use) so that `nurture validate` can point at mistakes before anything runs.
"""

from __future__ import annotations

import fnmatch
import operator
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from jinja2 import StrictUndefined, TemplateSyntaxError, Undefined, nodes
from jinja2.exceptions import SecurityError, UndefinedError
from jinja2.parser import Parser
from jinja2.sandbox import SandboxedEnvironment

from nurture.errors import DurationError, ExpressionError
from nurture.timeutil import parse_duration

EVENT_TYPES = (
    "open",
    "click",
    "page_view",
    "download",
    "form_fill",
    "webinar_registered",
    "webinar_attended",
    "reply",
    "inquiry",
    "unsubscribe",
    "bounce",
    "custom",
)
SCORE_FIELDS = ("fit", "engagement", "total", "grade")
EVENTS_METHODS = ("count", "any", "last", "days_since")
BASE_NAMES = ("lead", "score", "events", "lifecycle", "now")

_MAX_POWER = 64
_MAX_SEQUENCE = 10_000


class _Sandbox(SandboxedEnvironment):
    """A sandbox that also refuses runaway arithmetic (`10 ** 10 ** 10`, `"x" * 10**9`)."""

    intercepted_binops = frozenset(["**", "*"])

    def call_binop(self, context: Any, operator_name: str, left: Any, right: Any) -> Any:
        if operator_name == "**":
            if isinstance(right, int | float) and abs(right) > _MAX_POWER:
                raise SecurityError(f"exponent {right} is too large")
            return left**right
        for seq, count in ((left, right), (right, left)):
            if (
                isinstance(seq, str | list | tuple)
                and isinstance(count, int)
                and len(seq) * count > _MAX_SEQUENCE
            ):
                raise SecurityError("repetition is too large")
        return operator.mul(left, right)


def make_environment() -> SandboxedEnvironment:
    env = _Sandbox(undefined=StrictUndefined, autoescape=False)
    env.globals.clear()
    return env


_ENV = make_environment()


class Record:
    """Read-only attribute access to a mapping, for use inside expressions and templates.

    Only item lookup is exposed, so a field called `items` or `keys` cannot collide
    with a method, and the sandbox blocks everything starting with an underscore.
    A field the record lacks reads as None: validation has already rejected names no
    lead can have, so a missing value here is a lead that simply has none.
    """

    __slots__ = ("_data",)

    def __init__(self, data: Mapping[str, Any]) -> None:
        self._data = data

    def __getitem__(self, key: str) -> Any:
        return self._data.get(key)

    def __contains__(self, key: object) -> bool:
        return key in self._data

    def __iter__(self) -> Iterator[str]:
        return iter(self._data)

    def __repr__(self) -> str:
        return f"Record({dict(self._data)!r})"


@dataclass(frozen=True)
class EventRecord:
    """One behavioural event as the runtime sees it."""

    type: str
    at: datetime
    props: Mapping[str, Any] = field(default_factory=dict)
    id: str = ""

    def as_record(self) -> Record:
        return Record({"type": self.type, "at": self.at, **self.props})


def _matches(event: EventRecord, type_: str, where: Mapping[str, Any]) -> bool:
    if type_ not in ("*", event.type):
        return False
    for key, wanted in where.items():
        value = event.props.get(key)
        if isinstance(wanted, str) and any(c in wanted for c in "*?["):
            if value is None or not fnmatch.fnmatchcase(str(value), wanted):
                return False
        elif value != wanted:
            return False
    return True


class EventsView:
    """What expressions may ask about a lead's past behaviour, relative to `now`."""

    def __init__(self, events: Sequence[EventRecord], now: datetime) -> None:
        self._events = events
        self._now = now

    def _select(self, type_: str, within: str | None, where: Mapping[str, Any]) -> Iterable[EventRecord]:
        since = None
        if within is not None:
            try:
                since = self._now - parse_duration(within)
            except DurationError as exc:
                raise ExpressionError(str(exc)) from exc
        for event in self._events:
            if event.at > self._now or (since is not None and event.at < since):
                continue
            if _matches(event, type_, where):
                yield event

    def count(self, type: str = "*", within: str | None = None, **where: Any) -> int:
        return sum(1 for _ in self._select(type, within, where))

    def any(self, type: str = "*", within: str | None = None, **where: Any) -> bool:
        return next(iter(self._select(type, within, where)), None) is not None

    def last(self, type: str = "*", **where: Any) -> Record | None:
        found = max(self._select(type, None, where), key=lambda e: e.at, default=None)
        return found.as_record() if found else None

    def days_since(self, type: str = "*", **where: Any) -> float | None:
        found = max(self._select(type, None, where), key=lambda e: e.at, default=None)
        return None if found is None else (self._now - found.at).total_seconds() / 86400


@dataclass(frozen=True)
class Usage:
    """What an expression refers to, found by walking its syntax tree."""

    names: frozenset[str]
    lead_fields: frozenset[str]
    score_fields: frozenset[str]
    event_methods: frozenset[str]
    event_types: frozenset[str]


class Expression:
    """A parsed, sandboxed expression; evaluate it with a context of plain objects."""

    __slots__ = ("_run", "source", "usage")

    def __init__(self, source: str) -> None:
        self.source = source
        tree = _parse(source)
        self.usage = _analyse(tree)
        tree.set_environment(_ENV)
        body = [nodes.Assign(nodes.Name("result", "store"), tree, lineno=1)]
        template = _ENV.from_string(nodes.Template(body, lineno=1))
        self._run: Callable[[Mapping[str, Any]], Any] = _runner(template)

    def evaluate(self, context: Mapping[str, Any]) -> Any:
        try:
            result = self._run(context)
            if isinstance(result, Undefined):
                result._fail_with_undefined_error()
            return result
        except (UndefinedError, SecurityError, TypeError, ZeroDivisionError, ValueError) as exc:
            raise ExpressionError(f"{self.source!r}: {exc}") from exc

    def test(self, context: Mapping[str, Any]) -> bool:
        return bool(self.evaluate(context))

    def __repr__(self) -> str:
        return f"Expression({self.source!r})"


def _runner(template: Any) -> Callable[[Mapping[str, Any]], Any]:
    def run(context: Mapping[str, Any]) -> Any:
        ctx = template.new_context(dict(context))
        for _ in template.root_render_func(ctx):
            pass
        return ctx.vars["result"]

    return run


def _parse(source: str) -> nodes.Expr:
    if not isinstance(source, str) or not source.strip():
        raise ExpressionError("empty expression")
    try:
        parser = Parser(_ENV, source, state="variable")
        tree = parser.parse_expression()
        if not parser.stream.eos:
            raise ExpressionError(f"{source!r}: unexpected text after the expression")
    except TemplateSyntaxError as exc:
        raise ExpressionError(f"{source!r}: {exc.message}") from exc
    return tree


def _const_str(node: nodes.Node) -> str | None:
    return node.value if isinstance(node, nodes.Const) and isinstance(node.value, str) else None


def _analyse(tree: nodes.Node) -> Usage:
    names = {n.name for n in tree.find_all(nodes.Name)}
    lead_fields: set[str] = set()
    score_fields: set[str] = set()
    methods: set[str] = set()
    types: set[str] = set()
    for node in tree.find_all((nodes.Getattr, nodes.Getitem)):
        base = node.node
        if not isinstance(base, nodes.Name):
            continue
        key = node.attr if isinstance(node, nodes.Getattr) else _const_str(node.arg)
        if key is None:
            continue
        {"lead": lead_fields, "score": score_fields, "events": methods}.get(base.name, set()).add(key)
    for call in tree.find_all(nodes.Call):
        target = call.node
        if isinstance(target, nodes.Getattr) and isinstance(target.node, nodes.Name):
            if target.node.name == "events" and call.args:
                literal = _const_str(call.args[0])
                if literal is not None:
                    types.add(literal)
            for kw in call.kwargs:
                if kw.key == "type" and (literal := _const_str(kw.value)) is not None:
                    types.add(literal)
    return Usage(
        frozenset(names),
        frozenset(lead_fields),
        frozenset(score_fields),
        frozenset(methods),
        frozenset(types - {"*"}),
    )


def compile_expression(source: str) -> Expression:
    return Expression(source)
