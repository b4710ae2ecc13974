"""Jinja2's sandbox with bounds on size and time, for templates and expressions.

Jinja's sandbox stops attribute tricks, not arithmetic or loops: `{{ "x" * 10**9 }}`,
`10 ** 10 ** 9` or three nested loops run for minutes or take gigabytes. CPython cannot
interrupt one long C operation (a huge multiplication or repetition) from Python code, and
a signal alarm works only in a main thread, so the bounds are checked *before* each
operation that could blow up, and the time limit is checked at the places every long
render must pass through again and again:

* operators `*`, `**`, `+` and `%` refuse results over `MAX_SIZE` items or `MAX_INT_BITS` bits;
* every call and filter refuses integer arguments beyond `MAX_ARGUMENT` (`"x"|center(10**9)`)
  and results over `MAX_SIZE`; `str.format` is refused (its widths hide in the text);
* every `{% for %}` iterates through a guard, every call, attribute and item lookup checks
  the deadline, and the output is checked for time and size as it is produced.

Limits apply while a `budget` is active (the renderer opens one per message); outside one
only the size bounds hold. Pure: no I/O.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any

from jinja2 import nodes
from jinja2.exceptions import SecurityError
from jinja2.runtime import markup_join
from jinja2.sandbox import MAX_RANGE, SandboxedEnvironment

from nurture.errors import NurtureError

MAX_SIZE = 100_000  # characters of a string or items of a list built inside a template
MAX_INT_BITS = 4_096  # about 1,200 decimal digits
MAX_ARGUMENT = 100_000  # largest integer a call or filter may be given (widths, counts)
MAX_POWER = 64
CHECK_EVERY = 256  # loop iterations between clock reads
CHUNKS_PER_CHECK = 16  # output chunks between clock reads


class RenderLimitExceeded(NurtureError, SecurityError):
    """A template or expression went over a size or time bound."""


@dataclass
class Budget:
    deadline: float
    max_output: int
    seconds: float

    def check(self) -> None:
        if time.monotonic() > self.deadline:
            raise RenderLimitExceeded(f"rendering took longer than {self.seconds:g}s")


_BUDGET: ContextVar[Budget | None] = ContextVar("render_budget", default=None)


@contextmanager
def budget(seconds: float, max_output: int) -> Iterator[Budget]:
    """Bound the renders and evaluations inside the block to `seconds` and `max_output` characters."""
    active = Budget(time.monotonic() + seconds, max_output, seconds)
    token = _BUDGET.set(active)
    try:
        yield active
    finally:
        _BUDGET.reset(token)


def tick() -> None:
    active = _BUDGET.get()
    if active is not None:
        active.check()


def _size(value: Any) -> int | None:
    return len(value) if isinstance(value, str | bytes | list | tuple) else None


def _check_result(value: Any) -> Any:
    size = _size(value)
    if size is not None and size > MAX_SIZE:
        raise RenderLimitExceeded(f"a value of {size} items is over the limit of {MAX_SIZE}")
    return value


def _check_arguments(args: Iterable[Any]) -> None:
    for value in args:
        if isinstance(value, int) and not isinstance(value, bool) and abs(value) > MAX_ARGUMENT:
            raise RenderLimitExceeded(f"argument {value} is over the limit of {MAX_ARGUMENT}")


def _check_callable(fn: Any, args: Iterable[Any], kwargs: dict[str, Any]) -> None:
    if getattr(fn, "__name__", None) in ("format", "format_map") and isinstance(getattr(fn, "__self__", None), str):
        raise RenderLimitExceeded("str.format is not available here; use the format filter")
    _check_arguments(args)
    _check_arguments(kwargs.values())


def check_call(fn: Any, args: list[Any], kwargs: dict[str, Any]) -> Any:
    """Call `fn` (already found safe by the sandbox) within the bounds."""
    tick()
    _check_callable(fn, args, kwargs)
    return _check_result(fn(*args, **kwargs))


_PERCENT_WIDTH = re.compile(r"%[-+ #0]*(\*|\d+)?(?:\.(\*|\d+))?")


def check_binop(operator_name: str, left: Any, right: Any) -> None:
    """Refuse an operation whose result would be over the bounds, before computing it."""
    if operator_name == "**":
        if isinstance(right, int | float) and abs(right) > MAX_POWER:
            raise RenderLimitExceeded(f"exponent {right} is over the limit of {MAX_POWER}")
        if isinstance(left, int) and isinstance(right, int) and left.bit_length() * abs(right) > MAX_INT_BITS:
            bits = left.bit_length()
            raise RenderLimitExceeded(f"a power of a {bits}-bit number is over the limit of {MAX_INT_BITS} bits")
    elif operator_name == "*":
        for seq, count in ((left, right), (right, left)):
            size = _size(seq)
            if size is not None and isinstance(count, int) and size * count > MAX_SIZE:
                raise RenderLimitExceeded(f"repeating {size} items {count} times is over the limit of {MAX_SIZE}")
        if isinstance(left, int) and isinstance(right, int) and left.bit_length() + right.bit_length() > MAX_INT_BITS:
            raise RenderLimitExceeded(f"a product is over the limit of {MAX_INT_BITS} bits")
    elif operator_name == "+":
        a, b = _size(left), _size(right)
        if a is not None and b is not None and a + b > MAX_SIZE:
            raise RenderLimitExceeded(f"joining {a} and {b} items is over the limit of {MAX_SIZE}")
    elif operator_name == "%" and isinstance(left, str):
        for width, precision in _PERCENT_WIDTH.findall(left):
            for part in (width, precision):
                if part == "*" or (part and int(part) > MAX_ARGUMENT):
                    raise RenderLimitExceeded("a %-format width over the limit")


class GuardedSandbox(SandboxedEnvironment):
    """A sandbox that bounds size always and time while a `budget` is active."""

    intercepted_binops = frozenset(["**", "*", "+", "%"])

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.globals["range"] = guarded_range
        self.globals["_nurture_iter"] = guarded_iter
        self.globals["_nurture_concat"] = guarded_concat
        for name, fn in list(self.filters.items()):
            self.filters[name] = _guarded_filter(fn)

    def call_binop(self, context: Any, operator_name: str, left: Any, right: Any) -> Any:
        check_binop(operator_name, left, right)
        return _check_result(super().call_binop(context, operator_name, left, right))

    def call(__self, __context: Any, __obj: Any, *args: Any, **kwargs: Any) -> Any:
        tick()
        _check_callable(__obj, args, kwargs)
        return _check_result(super().call(__context, __obj, *args, **kwargs))

    def getattr(self, obj: Any, attribute: str) -> Any:
        tick()
        if isinstance(obj, str) and attribute in ("format", "format_map"):
            raise RenderLimitExceeded("str.format is not available here; use the format filter")
        return super().getattr(obj, attribute)

    def getitem(self, obj: Any, argument: Any) -> Any:
        tick()
        return super().getitem(obj, argument)

    def _generate(
        self, source: nodes.Template, name: str | None, filename: str | None, defer_init: bool = False
    ) -> str:
        """Route every loop's iterable and every `~` through the guards before compiling."""
        for loop in source.find_all(nodes.For):
            loop.iter = nodes.Call(nodes.Name("_nurture_iter", "load"), [loop.iter], [], None, None)
        for concat in list(source.find_all(nodes.Concat)):
            call = nodes.Call(nodes.Name("_nurture_concat", "load"), list(concat.nodes), [], None, None)
            _replace(source, concat, call)
        return super()._generate(source, name, filename, defer_init)


def _replace(tree: nodes.Node, old: nodes.Node, new: nodes.Node) -> None:
    for node in tree.find_all(nodes.Node):
        for field in node.fields:
            value = getattr(node, field, None)
            if value is old:
                setattr(node, field, new)
            elif isinstance(value, list):
                for index, item in enumerate(value):
                    if item is old:
                        value[index] = new


def guarded_iter(iterable: Any) -> Iterator[Any]:
    """Iterate, reading the clock every `CHECK_EVERY` items."""
    for index, item in enumerate(iterable):
        if index % CHECK_EVERY == 0:
            tick()
        yield item


def guarded_range(*args: int) -> Iterator[int]:
    numbers = range(*args)
    if len(numbers) > MAX_RANGE:
        raise RenderLimitExceeded(f"range of {len(numbers)} numbers is over the limit of {MAX_RANGE}")
    return guarded_iter(numbers)


def guarded_concat(*parts: Any) -> str:
    total = sum(len(str(part)) for part in parts)
    if total > MAX_SIZE:
        raise RenderLimitExceeded(f"joining {total} characters is over the limit of {MAX_SIZE}")
    return markup_join(parts)


def _guarded_filter(fn: Any) -> Any:
    skip = 2 if hasattr(fn, "jinja_pass_arg") else 1  # the value filtered, after the context if passed

    def guarded(*args: Any, **kwargs: Any) -> Any:
        tick()
        _check_arguments(args[skip:])
        _check_arguments(kwargs.values())
        return _check_result(fn(*args, **kwargs))

    for attribute in ("jinja_pass_arg", "__name__", "__doc__"):
        if hasattr(fn, attribute):
            setattr(guarded, attribute, getattr(fn, attribute))
    return guarded


def render_guarded(chunks: Iterable[str]) -> str:
    """Join a template's output chunks, checking time and size as they come."""
    active = _BUDGET.get()
    if active is None:
        return "".join(chunks)
    out: list[str] = []
    size, limit = 0, active.max_output
    for index, chunk in enumerate(chunks):
        size += len(chunk)
        if size > limit:
            raise RenderLimitExceeded(f"output is over the limit of {limit} characters")
        out.append(chunk)
        if not index % CHUNKS_PER_CHECK:  # what makes one chunk slow (calls, loops) reads the clock itself
            active.check()
    return "".join(out)


def static_problems(tree: nodes.Node) -> list[tuple[int, str]]:
    """(line, problem) for constant arithmetic in a template or expression that would go
    over the bounds when it runs: `"x" * 10**9`, `10 ** 100000`."""
    problems: list[tuple[int, str]] = []
    arithmetic = (nodes.Mul, nodes.Pow, nodes.Add)
    for node in [tree, *tree.find_all(arithmetic)] if isinstance(tree, arithmetic) else tree.find_all(arithmetic):
        try:
            _fold(node)
        except RenderLimitExceeded as exc:
            problems.append((node.lineno, str(exc)))
        except (_NotConstant, TypeError, ValueError, OverflowError, ArithmeticError):
            continue
    return problems


class _NotConstant(Exception):
    pass


def _fold(node: nodes.Node) -> Any:
    if isinstance(node, nodes.Const):
        return node.value
    if isinstance(node, nodes.Neg):
        return -_fold(node.node)
    if isinstance(node, nodes.Mul | nodes.Pow | nodes.Add):
        left, right = _fold(node.left), _fold(node.right)
        check_binop(node.operator, left, right)
        if node.operator == "*":
            return left * right
        return left**right if node.operator == "**" else left + right
    raise _NotConstant
