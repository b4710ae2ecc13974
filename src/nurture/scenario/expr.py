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
import re
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from jinja2 import StrictUndefined, TemplateSyntaxError, Undefined, nodes
from jinja2.exceptions import SecurityError, UndefinedError
from jinja2.parser import Parser
from jinja2.sandbox import SandboxedEnvironment

from nurture.errors import DurationError, ExpressionError
from nurture.sandbox import GuardedSandbox, check_binop, check_call, guarded_concat, static_problems
from nurture.timeutil import parse_duration

SCORE_FIELDS = ("fit", "engagement", "total", "grade")
EVENTS_METHODS = ("count", "any", "last", "days_since")
BASE_NAMES = ("lead", "score", "events", "lifecycle", "now")


def make_environment() -> SandboxedEnvironment:
    """The sandbox with size bounds on operators, calls and filters (`nurture.sandbox`)."""
    env = GuardedSandbox(undefined=StrictUndefined, autoescape=False)
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


@dataclass(slots=True)  # a value; not frozen because many are made per batch
class EventRecord:
    """One behavioural event as the runtime sees it."""

    type: str
    at: datetime
    props: Mapping[str, Any] = field(default_factory=dict)
    id: str = ""

    def as_record(self) -> Record:
        return Record({"type": self.type, "at": self.at, **self.props})


def event_is(event: EventRecord, type_: str) -> bool:
    """Whether `event` is of type `type_`; a declared custom event (`login`) also arrives as
    type `custom` with the property `name: login`."""
    return type_ == event.type or (event.type == "custom" and event.props.get("name") == type_)


def _matches(event: EventRecord, type_: str, where: Mapping[str, Any]) -> bool:
    if type_ != "*" and not event_is(event, type_):
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
    comparisons: tuple[Comparison, ...] = ()
    event_fields: frozenset[str] = frozenset()  # `event.X` inside a wait_for's `where`


@dataclass(frozen=True)
class Comparison:
    """`lead.company_size >= "100名"`: a field (`lead.company_size`) compared with a constant."""

    term: str
    op: str
    value: Any

    @property
    def ordering(self) -> bool:
        return self.op in ("gt", "gteq", "lt", "lteq")

    def describe(self) -> str:
        symbols = {"eq": "==", "ne": "!=", "gt": ">", "gteq": ">=", "lt": "<", "lteq": "<="}
        return f"{self.term} {symbols.get(self.op, self.op)} {self.value!r}"


class Expression:
    """A parsed, sandboxed expression; evaluate it with a context of plain objects.

    The syntax tree is compiled once into nested Python closures (about a microsecond per
    evaluation, against tens for rendering a Jinja template), with the sandbox's own
    attribute, call, filter and operator checks at each step.
    """

    __slots__ = ("_fields_read", "_run", "source", "usage")

    def __init__(self, source: str) -> None:
        self.source = source
        tree = _parse(source)
        for _, problem in static_problems(tree):
            raise ExpressionError(f"{source!r}: would go over a limit when evaluated: {problem}")
        self.usage = _analyse(tree)
        self._fields_read = _fields_read(tree)
        self._run: Compiled = _compile(tree)

    def fields_read(self, name: str) -> frozenset[str] | None:
        """The fields of the record `name` that this expression's value depends on, when it
        reads that record only as `name.field` or `name["field"]`: two records equal in those
        fields give the same value. None when the whole record may matter (the record passed
        to a filter, a key worked out at run time)."""
        return self._fields_read.get(name, frozenset())

    def evaluate(self, context: Mapping[str, Any]) -> Any:
        try:
            result = self._run(context)
            if isinstance(result, Undefined):
                result._fail_with_undefined_error()
            return result
        except (
            UndefinedError,
            SecurityError,
            TypeError,
            ZeroDivisionError,
            ValueError,
            OverflowError,
        ) as exc:
            raise ExpressionError(f"{self.source!r}: {exc}") from exc

    def test(self, context: Mapping[str, Any]) -> bool:
        return bool(self.evaluate(context))

    def __repr__(self) -> str:
        return f"Expression({self.source!r})"


Compiled = Callable[[Mapping[str, Any]], Any]

_COMPARE: dict[str, Callable[[Any, Any], Any]] = {
    "eq": operator.eq,
    "ne": operator.ne,
    "gt": operator.gt,
    "gteq": operator.ge,
    "lt": operator.lt,
    "lteq": operator.le,
    "in": lambda a, b: a in b,
    "notin": lambda a, b: a not in b,
}
_BINARY: dict[type[nodes.Node], Callable[[Any, Any], Any]] = {
    nodes.Add: operator.add,
    nodes.Sub: operator.sub,
    nodes.Div: operator.truediv,
    nodes.FloorDiv: operator.floordiv,
    nodes.Mod: operator.mod,
}


_MISSING = object()


def _getattr(obj: Any, name: str) -> Any:
    if type(obj) is Record and not name.startswith("_"):
        return obj._data.get(name)
    return _ENV.getattr(obj, name)


def _getitem(obj: Any, key: Any) -> Any:
    if type(obj) is Record:
        return obj._data.get(key)
    return _ENV.getitem(obj, key)


def _call(fn: Any, args: list[Any], kwargs: dict[str, Any]) -> Any:
    if isinstance(fn, Undefined):
        fn._fail_with_undefined_error()
    if not callable(fn) or not _ENV.is_safe_callable(fn):
        raise SecurityError(f"{fn!r} is not safely callable")
    return check_call(fn, args, kwargs)


def _compile(node: nodes.Node) -> Compiled:
    """Closures that evaluate a Jinja expression tree under the sandbox's rules."""
    if isinstance(node, nodes.Const):
        value = node.value
        return lambda ctx: value
    if isinstance(node, nodes.Name):
        name = node.name

        def load(ctx: Mapping[str, Any]) -> Any:
            try:
                return ctx[name]
            except KeyError:
                return _ENV.undefined(name=name)

        return load
    if isinstance(node, nodes.Getattr):
        attr = node.attr
        if isinstance(node.node, nodes.Name) and not attr.startswith("_"):
            # `lead.industry` and the like, the commonest term: one closure, not two.
            name = node.node.name

            def field(ctx: Mapping[str, Any]) -> Any:
                obj = ctx.get(name, _MISSING)
                if type(obj) is Record:
                    return obj._data.get(attr)
                return _getattr(_ENV.undefined(name=name) if obj is _MISSING else obj, attr)

            return field
        base = _compile(node.node)
        return lambda ctx: _getattr(base(ctx), attr)
    if isinstance(node, nodes.Getitem):
        base, key = _compile(node.node), _compile(node.arg)
        return lambda ctx: _getitem(base(ctx), key(ctx))
    if isinstance(node, nodes.List | nodes.Tuple):
        kind = list if isinstance(node, nodes.List) else tuple
        consts = [item for item in node.items if isinstance(item, nodes.Const)]
        if len(consts) == len(node.items):
            constant = tuple(item.value for item in consts)  # built once; a list is copied on use
            return (lambda ctx: list(constant)) if kind is list else (lambda ctx: constant)
        items = [_compile(item) for item in node.items]
        return lambda ctx: kind(item(ctx) for item in items)
    if isinstance(node, nodes.Dict):
        pairs = [(_compile(p.key), _compile(p.value)) for p in node.items]
        return lambda ctx: {k(ctx): v(ctx) for k, v in pairs}
    if isinstance(node, nodes.And):
        left, right = _compile(node.left), _compile(node.right)
        return lambda ctx: left(ctx) and right(ctx)
    if isinstance(node, nodes.Or):
        left, right = _compile(node.left), _compile(node.right)
        return lambda ctx: left(ctx) or right(ctx)
    if isinstance(node, nodes.Not):
        inner = _compile(node.node)
        return lambda ctx: not inner(ctx)
    if isinstance(node, nodes.Neg):
        inner = _compile(node.node)
        return lambda ctx: -inner(ctx)
    if isinstance(node, nodes.Pos):
        inner = _compile(node.node)
        return lambda ctx: +inner(ctx)
    if isinstance(node, nodes.Compare):
        return _compare(node)
    if isinstance(node, nodes.Mul | nodes.Pow):
        left, right, symbol = _compile(node.left), _compile(node.right), node.operator
        return lambda ctx: _ENV.call_binop(None, symbol, left(ctx), right(ctx))  # type: ignore[arg-type]
    if type(node) in _BINARY:
        fn, symbol = _BINARY[type(node)], node.operator  # type: ignore[attr-defined]
        left, right = _compile(node.left), _compile(node.right)  # type: ignore[attr-defined]
        if symbol in ("+", "%"):

            def bounded(ctx: Mapping[str, Any]) -> Any:
                a, b = left(ctx), right(ctx)
                check_binop(symbol, a, b)
                return fn(a, b)

            return bounded
        return lambda ctx: fn(left(ctx), right(ctx))
    if isinstance(node, nodes.Concat):
        parts = [_compile(part) for part in node.nodes]
        return lambda ctx: guarded_concat(*(part(ctx) for part in parts))
    if isinstance(node, nodes.CondExpr):
        test, yes = _compile(node.test), _compile(node.expr1)
        no = _compile(node.expr2) if node.expr2 is not None else (lambda ctx: None)
        return lambda ctx: yes(ctx) if test(ctx) else no(ctx)
    if isinstance(node, nodes.Call | nodes.Filter | nodes.Test):
        return _callable(node)
    raise ExpressionError(f"'{type(node).__name__}' is not supported in expressions")


def _compare(node: nodes.Compare) -> Compiled:
    first = _compile(node.expr)
    ops = [(_COMPARE[op.op], _compile(op.expr)) for op in node.ops]

    def compare(ctx: Mapping[str, Any]) -> bool:
        left = first(ctx)
        for test, operand in ops:
            right = operand(ctx)
            if not test(left, right):
                return False
            left = right
        return True

    return compare


def _callable(node: nodes.Call | nodes.Filter | nodes.Test) -> Compiled:
    if node.dyn_args is not None or node.dyn_kwargs is not None:
        raise ExpressionError("*args and **kwargs are not supported in expressions")
    args = [_compile(a) for a in node.args]
    kwargs = [(str(kw.key), _compile(kw.value)) for kw in node.kwargs]
    if isinstance(node, nodes.Call):
        target = _compile(node.node)
        return lambda ctx: _call(target(ctx), [a(ctx) for a in args], {k: v(ctx) for k, v in kwargs})
    is_filter = isinstance(node, nodes.Filter)
    registry, name = (_ENV.filters if is_filter else _ENV.tests), node.name
    if name not in registry:
        raise ExpressionError(f"unknown {'filter' if is_filter else 'test'} '{name}'")
    value = _compile(node.node) if node.node is not None else (lambda ctx: None)
    apply = _ENV.call_filter if is_filter else _ENV.call_test
    return lambda ctx: apply(name, value(ctx), [a(ctx) for a in args], {k: v(ctx) for k, v in kwargs})


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


def _field_reads(tree: nodes.Node) -> Iterator[tuple[nodes.Name, str]]:
    """Each `name.field` and `name["field"]` of the tree: the name's node and the field."""
    for node in tree.find_all((nodes.Getattr, nodes.Getitem)):
        base = node.node  # type: ignore[attr-defined]
        if not isinstance(base, nodes.Name):
            continue
        key = node.attr if isinstance(node, nodes.Getattr) else _const_str(node.arg)  # type: ignore[attr-defined]
        if key is not None:
            yield base, key


def _analyse(tree: nodes.Node) -> Usage:
    names = {n.name for n in tree.find_all(nodes.Name)}
    lead_fields: set[str] = set()
    score_fields: set[str] = set()
    methods: set[str] = set()
    types: set[str] = set()
    event_fields: set[str] = set()
    for base, key in _field_reads(tree):
        {"lead": lead_fields, "score": score_fields, "events": methods, "event": event_fields}.get(
            base.name, set()
        ).add(key)
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
        tuple(_comparisons(tree)),
        frozenset(event_fields),
    )


def _fields_read(tree: nodes.Node) -> dict[str, frozenset[str] | None]:
    """For each name: the constant fields read from it, or None where it is used otherwise.
    (Expressions draw nothing at random: Jinja's `random` filter needs a template's context.)"""
    fields: dict[str, set[str]] = {}
    plain: set[int] = set()
    for base, key in _field_reads(tree):
        fields.setdefault(base.name, set()).add(key)
        plain.add(id(base))
    found: dict[str, frozenset[str] | None] = {name: frozenset(keys) for name, keys in fields.items()}
    for name in tree.find_all(nodes.Name):
        if id(name) not in plain:
            found[name.name] = None
    return found


def _term(node: nodes.Node) -> str | None:
    """`lead.company_size` for a field of a named record, else None."""
    if isinstance(node, nodes.Getattr) and isinstance(node.node, nodes.Name):
        return f"{node.node.name}.{node.attr}"
    if isinstance(node, nodes.Getitem) and isinstance(node.node, nodes.Name):
        key = _const_str(node.arg)
        return f"{node.node.name}.{key}" if key is not None else None
    return None


_MIRRORED = {"gt": "lt", "gteq": "lteq", "lt": "gt", "lteq": "gteq", "eq": "eq", "ne": "ne"}


def _comparisons(tree: nodes.Node) -> Iterator[Comparison]:
    compares = [tree] if isinstance(tree, nodes.Compare) else []
    for compare in [*compares, *tree.find_all(nodes.Compare)]:
        operands = [compare.expr, *(op.expr for op in compare.ops)]
        for index, op in enumerate(compare.ops):
            left, right = operands[index], operands[index + 1]
            if op.op not in _MIRRORED:
                continue
            if (term := _term(left)) is not None and isinstance(right, nodes.Const):
                yield Comparison(term, op.op, right.value)
            elif (term := _term(right)) is not None and isinstance(left, nodes.Const):
                yield Comparison(term, _MIRRORED[op.op], left.value)


def explain_false(source: str, context: Mapping[str, Any]) -> list[str]:
    """Why a condition does not hold, part by part: for `a and b`, each part that is false,
    with the values it compared (`lead.company_size >= 100 is false: lead.company_size is 40`).
    Empty when the condition holds."""
    expression = Expression(source)
    try:
        if expression.test(context):
            return []
    except ExpressionError as exc:
        return [f"{source} could not be evaluated ({exc}); treated as false"]
    tree = _parse(source)
    parts = list(_conjuncts(tree)) if isinstance(tree, nodes.And) else [tree]
    if len(re.split(r"\band\b", source)) == len(parts):
        for index, part in enumerate(parts):
            part._nurture_index = index  # type: ignore[attr-defined]
    lines = []
    for part in parts:
        text = _source_of(part, source) if len(parts) > 1 else source
        try:
            holds = bool(_compile(part)(context))
        except Exception as exc:  # the part alone may not evaluate; say so rather than guess
            lines.append(f"{text} could not be evaluated ({exc})")
            continue
        if holds:
            continue
        values: list[str] = []
        for node in [part, *part.find_all((nodes.Call, nodes.Getattr, nodes.Getitem))]:
            if isinstance(node, nodes.Call):
                target = _term(node.node)
                term = f"{target}(…)" if target is not None else None
            else:
                term = _term(node)
            if term is None or any(term == v.split(" is ")[0] for v in values):
                continue
            try:
                value = _compile(node)(context)
            except Exception:
                continue
            if not callable(value):
                values.append(f"{term} is {value!r}")
        lines.append(f"{text} is false" + (f" ({', '.join(values)})" if values else ""))
    return lines or [f"{source} is false"]


def _conjuncts(node: nodes.Node) -> Iterator[nodes.Node]:
    if isinstance(node, nodes.And):
        yield from _conjuncts(node.left)
        yield from _conjuncts(node.right)
    else:
        yield node


def _source_of(node: nodes.Node, source: str) -> str:
    """The text of one part of an `and`: Jinja keeps no columns, so split the source on `and`
    where it splits into as many parts as the tree has, else describe the part."""
    pieces = [p.strip() for p in re.split(r"\band\b", source)]
    index = getattr(node, "_nurture_index", None)
    if isinstance(index, int) and len(pieces) > index:
        return pieces[index]
    return type(node).__name__


def compile_expression(source: str) -> Expression:
    return Expression(source)
