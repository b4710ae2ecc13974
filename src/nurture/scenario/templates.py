"""Email templates: sandboxed Jinja2 files in `email_templates/`, HTML plus a text part.

`NAME.html` is required; `NAME.txt` is the plain-text alternative and is derived from
the HTML when absent. The same environment renders subjects.
"""

from __future__ import annotations

import html
import os
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from jinja2 import FileSystemLoader, StrictUndefined, Template, TemplateSyntaxError, nodes, select_autoescape
from jinja2.sandbox import SandboxedEnvironment

from nurture.errors import Diagnostic, NurtureError
from nurture.hints import did_you_mean, hint_with
from nurture.sandbox import GuardedSandbox, RenderLimitExceeded, budget, render_guarded, static_problems

TEMPLATE_NAMES = ("lead", "score", "scenario", "unsubscribe_url", "link", "full_name", "now", "sender")
_LANGUAGE = re.compile(r"^[a-z]{2,3}(?:[-_][A-Za-z0-9]{2,8})?$")
_UNSUBSCRIBE_MARK = "https://unsubscribe.invalid/nurture-check"
RENDER_SECONDS = 2.0  # one message's subject, HTML and text together
RENDER_MAX_OUTPUT = 1_000_000  # characters of one rendered part


class TemplateError(NurtureError):
    """A template could not be rendered for one message (the marketer's to fix)."""


class TemplateLimitError(TemplateError):
    """A render went over the sandbox's bounds (output size, time, values too large, recursion
    too deep). The same template and lead would do it again, so the send fails at once rather
    than being retried, each retry costing another render up to the time limit."""


@dataclass(frozen=True)
class RenderedEmail:
    subject: str
    html: str
    text: str


def _environment(root: Path | None) -> SandboxedEnvironment:
    env = GuardedSandbox(
        loader=FileSystemLoader(str(root)) if root else None,
        # Freshness is checked once per batch (TemplateStore.refresh), not by a file check in
        # every render: `{% extends %}` looks its parent up each time a message renders.
        auto_reload=False,
        autoescape=select_autoescape(enabled_extensions=("html",), default_for_string=False),
        undefined=StrictUndefined,
        keep_trailing_newline=True,
    )
    return env


_TAG = re.compile(r"<[^>]+>")
_BLOCK_END = re.compile(r"</(p|div|h[1-6]|li|tr|table)>|<br\s*/?>", re.I)
_LINK = re.compile(r"""<a\s[^>]*href\s*=\s*(?:"([^"]+)"|'([^']+)')[^>]*>(.*?)</a>""", re.I | re.S)


def html_to_text(markup: str) -> str:
    """A readable plain-text version of an email's HTML, for clients that want text."""
    body = re.sub(r"(?is)<(head|style|script)\b.*?</\1>", "", markup)
    body = _LINK.sub(lambda m: f"{_TAG.sub('', m[3]).strip()} ({m[1] or m[2]})", body)
    body = _BLOCK_END.sub("\n", body)
    body = html.unescape(_TAG.sub("", body))
    lines = [line.strip() for line in body.splitlines()]
    return re.sub(r"\n{3,}", "\n\n", "\n".join(lines)).strip() + "\n"


def lead_fields_used(tree: nodes.Node) -> list[tuple[str, int]]:
    """(field, line) for every `lead.X` / `lead['X']` in a template or expression tree."""
    found = []
    for node in tree.find_all((nodes.Getattr, nodes.Getitem)):
        target: Any = node
        if isinstance(target.node, nodes.Name) and target.node.name == "lead":
            if isinstance(target, nodes.Getattr):
                found.append((target.attr, target.lineno))
            elif isinstance(target.arg, nodes.Const) and isinstance(target.arg.value, str):
                found.append((target.arg.value, target.lineno))
    return found


class TemplateStore:
    """Loads, checks and renders the templates of one `email_templates/` folder."""

    def __init__(self, root: Path, *, seconds: float = RENDER_SECONDS, max_output: int = RENDER_MAX_OUTPUT) -> None:
        self.root = root
        self.seconds = seconds
        self.max_output = max_output
        self.env = _environment(root)
        self._strings = _environment(None)
        self._globals = dict(self.env.globals)  # both environments have Jinja's default globals
        self._compiled: dict[str, Template] = {}
        self._pairs: dict[str, tuple[Template, Template | None]] = {}
        self._seen: tuple[tuple[str, int, int], ...] = ()

    def refresh(self) -> None:
        """Pick up edited, added or removed template files (the send job calls this once per
        batch, instead of a file check per message)."""
        try:
            seen = tuple(sorted((e.name, e.stat().st_mtime_ns, e.stat().st_size) for e in os.scandir(self.root)))
        except OSError:
            seen = ()
        if seen != self._seen:
            self._seen = seen
            self._pairs.clear()
            if self.env.cache is not None:
                self.env.cache.clear()

    def _pair(self, name: str) -> tuple[Template, Template | None]:
        pair = self._pairs.get(name)
        if pair is None:
            text = self.env.get_template(f"{name}.txt") if (self.root / f"{name}.txt").is_file() else None
            pair = self._pairs[name] = (self.env.get_template(f"{name}.html"), text)
        return pair

    def exists(self, name: str) -> bool:
        return (self.root / f"{name}.html").is_file()

    def variants(self, name: str) -> dict[str, str]:
        """The language variants of template `name`: {'ja': 'welcome.ja', 'en': 'welcome.en'}."""
        if not self.root.is_dir():
            return {}
        found = {}
        for path in self.root.glob(f"{name}.*.html"):
            language = path.name[len(name) + 1 : -len(".html")]
            if _LANGUAGE.match(language):
                found[language.lower().replace("_", "-")] = f"{name}.{language}"
        return dict(sorted(found.items()))

    def links_unsubscribe(self, name: str) -> bool | None:
        """Whether the email `name` renders contains the unsubscribe link (with its layout and
        blocks), or None when a sample render is not possible."""
        sample = {
            "lead": _Blank(),
            "score": _Blank(),
            "scenario": "",
            "unsubscribe_url": _UNSUBSCRIBE_MARK,
            "link": lambda _name, url: url,
            "full_name": "",
            "now": None,
            "sender": _Blank(),
        }
        try:
            with budget(self.seconds, self.max_output):  # a hostile template must not hang validate
                html_template, text_template = self._pair(name)
                body = _render(html_template, {**self._globals, **sample})
                if text_template is not None:
                    body += _render(text_template, {**self._globals, **sample})
        except Exception:  # a sample lead cannot render every template; then we cannot tell
            return None
        return _UNSUBSCRIBE_MARK in body

    def check(self, name: str, lead_fields: Iterable[str]) -> list[Diagnostic]:
        """Problems in template `name`: missing file, syntax, unknown variables."""
        known = set(lead_fields)
        problems: list[Diagnostic] = []
        for suffix in (".html", ".txt"):
            path = self.root / f"{name}{suffix}"
            if not path.is_file():
                continue
            try:
                source = path.read_text(encoding="utf-8")
            except UnicodeDecodeError as exc:
                problems.append(Diagnostic(str(path), 1, f"template is not UTF-8: {exc.reason}"))
                continue
            problems += check_template_source(source, str(path), known)
        return problems

    def render(self, name: str, subject: str, context: Mapping[str, Any]) -> RenderedEmail:
        # The template globals (range, namespace, ...) joined with the context once for the
        # three renders, rather than by Jinja at each of them.
        variables = {**self._globals, **context}
        try:
            with budget(self.seconds, self.max_output):
                return self._render(name, subject, variables)
        except (RenderLimitExceeded, RecursionError) as exc:
            raise TemplateLimitError(f"template '{name}': {exc}") from exc
        except Exception as exc:  # any template failure is the marketer's to fix
            raise TemplateError(f"template '{name}': {exc}") from exc

    def _render(self, name: str, subject: str, variables: dict[str, Any]) -> RenderedEmail:
        html_template, text_template = self._pair(name)
        html_body = _render(html_template, variables)
        text_body = _render(text_template, variables) if text_template else html_to_text(html_body)
        subject_text = _render(self._string(subject), variables) if "{" in subject else subject
        return RenderedEmail(" ".join(subject_text.split()), html_body, text_body)

    def render_string(self, source: str, context: Mapping[str, Any]) -> str:
        with budget(self.seconds, self.max_output):
            return self._string(source).render(context)

    def _string(self, source: str) -> Template:
        """Inline templates (subjects) are compiled once per distinct text."""
        template = self._compiled.get(source)
        if template is None:
            if len(self._compiled) > 1000:
                self._compiled.clear()
            template = self._compiled[source] = self._strings.from_string(source)
        return template


class _Blank:
    """A sample record for checking templates: every field reads as empty."""

    def __getattr__(self, name: str) -> str:
        return ""

    def __getitem__(self, name: str) -> str:
        return ""


def _render(template: Template, variables: dict[str, Any]) -> str:
    """`template.render(variables)` for variables that already include the globals: Jinja
    would copy them and its globals into a new dict at every call."""
    context = template.new_context(variables, shared=True)
    try:
        return render_guarded(template.root_render_func(context))
    except Exception:
        template.environment.handle_exception()


def check_template_source(source: str, filename: str, lead_fields: set[str], line: int = 0) -> list[Diagnostic]:
    """Syntax and variable problems of one template text (`line` offsets inline strings)."""
    env = _environment(None)
    try:
        tree = env.parse(source)
    except TemplateSyntaxError as exc:
        return [_syntax_diagnostic(exc, source, filename, line)]
    problems = [
        Diagnostic(filename, line + at, f"template would go over a limit when sent: {problem}")
        for at, problem in static_problems(tree)
    ]
    for field, at in lead_fields_used(tree):
        if field not in lead_fields:
            problems.append(
                Diagnostic(
                    filename,
                    line + at,
                    f"template uses lead.{field}, which no lead field provides",
                    hint_with(did_you_mean(field, lead_fields), "(custom fields go in the scenario's lead_fields)"),
                )
            )
    assigned = {n.name for n in tree.find_all(nodes.Name) if n.ctx in ("store", "param")}
    for name_node in tree.find_all(nodes.Name):
        if name_node.ctx == "load" and name_node.name not in TEMPLATE_NAMES and name_node.name not in assigned:
            problems.append(
                Diagnostic(
                    filename,
                    line + name_node.lineno,
                    f"template uses unknown variable '{name_node.name}'",
                    did_you_mean(name_node.name, TEMPLATE_NAMES),
                )
            )
    return problems


def _syntax_diagnostic(exc: TemplateSyntaxError, source: str, filename: str, line: int) -> Diagnostic:
    """A template syntax error in the author's terms: an unclosed `{{` says so, on its line."""
    message = exc.message or "syntax error"
    opened = _unclosed(source, "{{", "}}")
    if opened is not None:
        return Diagnostic(
            filename,
            line + opened,
            "template syntax error: '{{' is never closed",
            "end the variable with '}}', e.g. {{ lead.first_name }}",
        )
    opened = _unclosed(source, "{%", "%}")
    if opened is not None:
        return Diagnostic(
            filename, line + opened, "template syntax error: '{%' is never closed", "end the tag with '%}'"
        )
    if "Jinja was looking for the following tags" in message:
        wanted = message.split("following tags:", 1)[1].split(".")[0].strip()
        return Diagnostic(
            filename, line + (exc.lineno or 1), "template syntax error: a block is never closed", f"add {wanted}"
        )
    return Diagnostic(filename, line + (exc.lineno or 1), f"template syntax error: {message}")


def _unclosed(source: str, opening: str, closing: str) -> int | None:
    """The line of the first `opening` with no `closing` after it (before the next opening)."""
    position = 0
    while (start := source.find(opening, position)) >= 0:
        end = source.find(closing, start + len(opening))
        following = source.find(opening, start + len(opening))
        if end < 0 or (0 <= following < end):
            return source.count("\n", 0, start) + 1
        position = end + len(closing)
    return None


LinkMaker = Callable[[str, str], str]
