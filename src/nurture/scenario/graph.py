"""The journey as a graph: edges of each step, reachability, loops, Mermaid and DOT."""

from __future__ import annotations

from collections.abc import Sequence

from nurture.scenario.model import (
    Branch,
    Exit,
    Goto,
    NotifySales,
    Scenario,
    SendEmail,
    Split,
    Step,
    Update,
    Wait,
    WaitFor,
)

END = "__end__"
WAITING = (Wait, WaitFor)


def step_targets(step: Step) -> list[tuple[str, str]]:
    """(key, target) for every step the step names explicitly."""
    targets: list[tuple[str, str]] = []
    if step.next is not None:
        targets.append(("next", step.next))
    if isinstance(step, WaitFor):
        targets += [("on_event", step.on_event), ("on_timeout", step.on_timeout)]
    elif isinstance(step, Branch):
        targets += [("cases", c.goto) for c in step.cases] + [("else", step.else_)]
    elif isinstance(step, Split):
        targets += [("variants", v.goto) for v in step.variants if v.goto]
    elif isinstance(step, Goto):
        targets.append(("target", step.target))
    return targets


def edges(steps: Sequence[Step]) -> list[tuple[str, str, str]]:
    """(source, label, target) for the whole journey, falling through to the next step."""
    result: list[tuple[str, str, str]] = []
    for index, step in enumerate(steps):
        following = steps[index + 1].id if index + 1 < len(steps) else END
        if isinstance(step, WaitFor):
            result += [(step.id, "event", step.on_event), (step.id, "timeout", step.on_timeout)]
        elif isinstance(step, Branch):
            result += [(step.id, f"if {c.if_}", c.goto) for c in step.cases]
            result.append((step.id, "else", step.else_))
        elif isinstance(step, Split):
            result += split_edges(step, step.next or following)
        elif isinstance(step, Goto):
            result.append((step.id, "", step.target))
        elif isinstance(step, Exit):
            result.append((step.id, step.reason, END))
        else:
            result.append((step.id, "", step.next or following))
    return result


def split_edges(step: Split, following: str) -> list[tuple[str, str, str]]:
    """A split's arms as edges: a path arm to its step, a holdout to the end, the others on."""
    total = sum(v.weight for v in step.variants)
    result = []
    for name, variant in zip(step.arm_names(), step.variants, strict=True):
        label = f"{name} {variant.weight / total:.0%}"
        if variant.holdout:
            result.append((step.id, f"{label} holdout", END))
            continue
        changes = [f"template {variant.template}" if variant.template else "", "subject" if variant.subject else ""]
        if any(changes):
            label += f" ({', '.join(c for c in changes if c)})"
        result.append((step.id, label, variant.goto or following))
    return result


def describe_experiment(step: Split) -> str:
    """One line on what an experiment measures and how it decides, for graphs and reports."""
    experiment = step.experiment
    if experiment is None:
        return ""
    goal = experiment.goal
    goal_text = goal if isinstance(goal, str) else goal.event + (f" where {goal.where}" if goal.where else "")
    if experiment.method == "msprt":
        rule = f"mSPRT α={experiment.alpha:g}"
    else:
        rule = f"Bayesian P(best)≥{experiment.threshold:g}"
    limits = f"≥{experiment.min_per_arm}/arm, ≤{experiment.max_duration}"
    return f"experiment: {goal_text} within {experiment.within}, {rule}, {limits}"


def unreachable(steps: Sequence[Step]) -> list[str]:
    if not steps:
        return []
    adjacency: dict[str, list[str]] = {}
    for source, _, target in edges(steps):
        adjacency.setdefault(source, []).append(target)
    seen = {steps[0].id}
    frontier = [steps[0].id]
    while frontier:
        for target in adjacency.get(frontier.pop(), []):
            if target not in seen:
                seen.add(target)
                frontier.append(target)
    return [s.id for s in steps if s.id not in seen]


def waitless_loops(steps: Sequence[Step]) -> list[set[str]]:
    """Cycles made only of steps that never wait (Tarjan's SCC on the non-waiting subgraph)."""
    waiting = {s.id for s in steps if isinstance(s, WAITING)}
    adjacency: dict[str, list[str]] = {s.id: [] for s in steps if s.id not in waiting}
    for source, _, target in edges(steps):
        if source in adjacency and target in adjacency:
            adjacency[source].append(target)
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    loops: list[set[str]] = []
    counter = 0

    def visit(node: str) -> None:
        nonlocal counter
        index[node] = low[node] = counter
        counter += 1
        stack.append(node)
        on_stack.add(node)
        for target in adjacency[node]:
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = set()
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.add(member)
                if member == node:
                    break
            if len(component) > 1 or node in adjacency[node]:
                loops.append(component)

    for node in adjacency:
        if node not in index:
            visit(node)
    return loops


def _kind(step: Step) -> str:
    return step.type


def describe(step: Step) -> str:
    """What a step does, in a few words a marketer reads in a diagram."""
    if isinstance(step, SendEmail):
        subject = step.subject if isinstance(step.subject, str) else next(iter(step.subject.values()), "")
        more = (
            f" (+{len(step.subject) - 1} languages)" if isinstance(step.subject, dict) and len(step.subject) > 1 else ""
        )
        when = " · at each lead's best hour" if step.send_time == "optimal" else ""
        return f"✉ {step.template}: “{_short(subject, 48)}”{more}{when}"
    if isinstance(step, Wait):
        return f"⏱ wait {step.duration}" if step.duration else f"⏱ wait until {step.until}"
    if isinstance(step, WaitFor):
        where = f" where {_short(step.where, 40)}" if step.where else ""
        return f"⌛ wait up to {step.timeout} for {step.event}{where}"
    if isinstance(step, Branch):
        return "◇ which case?"
    if isinstance(step, Split):
        if step.experiment is not None:
            return f"◇ {describe_experiment(step)}"
        return f"◇ A/B split ({len(step.variants)} variants)"
    if isinstance(step, Update):
        parts = [f"{k}={v}" for k, v in step.set.items()] + [f"+{t}" for t in step.add_tags]
        parts += [f"-{t}" for t in step.remove_tags] + ([f"score {step.adjust_score:+d}"] if step.adjust_score else [])
        return "✎ " + _short(", ".join(parts) or "update", 48)
    if isinstance(step, NotifySales):
        return f"☎ hand to sales: {_short(step.message, 40)}"
    if isinstance(step, Exit):
        return f"■ exit: {step.reason}"
    return f"→ go to {step.target}" if isinstance(step, Goto) else step.type


def _short(text: str, width: int) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= width else text[: width - 1] + "…"


def journey_edges(steps: Sequence[Step]) -> list[tuple[str, str, str]]:
    """`edges` with labels in the author's words: what a wait_for waited for, and for how long."""
    by_id = {s.id: s for s in steps}
    result = []
    for source, label, target in edges(steps):
        step = by_id[source]
        if isinstance(step, WaitFor):
            label = step.event if label == "event" else f"no {step.event} in {step.timeout}"
        elif isinstance(step, Exit):
            label = ""
        result.append((source, label, target))
    return result


def _mermaid_text(text: str) -> str:
    """Text safe inside a quoted Mermaid label (quotes and angle brackets as entities)."""
    return text.replace('"', "#quot;").replace("<", "#lt;").replace(">", "#gt;")


def _node(step_id: str) -> str:
    """A Mermaid node id no step id can break: `end`, `graph`, `click` are Mermaid words."""
    return f"s_{step_id}" if step_id != END else "s__end"


def to_mermaid(steps: Sequence[Step], title: str = "", scenario: Scenario | None = None) -> str:
    """The journey as a Mermaid flowchart: what each step does, the waits and what they wait
    for, the branch conditions, and (with `scenario`) who enters and what makes a lead leave."""
    lines = [f"---\ntitle: {_mermaid_text(title)}\n---"] if title else []
    lines.append("flowchart TD")
    shapes = {"branch": ("{", "}"), "split": ("{", "}"), "wait": ("([", "])"), "wait_for": ("([", "])")}
    if scenario is not None:
        lines.append(f'    s__entry[/"{_mermaid_text(entry_text(scenario))}"/]')
        lines.append(f"    s__entry --> {_node(steps[0].id)}")
        lines.append(f'    s__exits>"{_mermaid_text(exit_text(scenario))}"]')
    for step in steps:
        left, right = shapes.get(_kind(step), ("[", "]"))
        label = f"<b>{_mermaid_text(step.id)}</b><br/>{_mermaid_text(describe(step))}"
        lines.append(f'    {_node(step.id)}{left}"{label}"{right}')
    lines.append(f"    {_node(END)}((end))")
    for source, label, target in journey_edges(steps):
        text = _mermaid_text(label)
        arrow = f' -->|"{text}"| ' if text else " --> "
        lines.append(f"    {_node(source)}{arrow}{_node(target)}")
    return "\n".join(lines) + "\n"


def entry_text(scenario: Scenario) -> str:
    entry = scenario.entry
    parts = []
    if entry.when:
        parts.append(f"when {entry.when}")
    if entry.source:
        parts.append("source: " + ", ".join(entry.source))
    if entry.lists:
        parts.append("on list " + " or ".join(entry.lists))
    if entry.not_lists:
        parts.append("not on " + ", ".join(entry.not_lists))
    if scenario.exclusive_with or scenario.group:
        parts.append(
            "not while in "
            + ", ".join([*scenario.exclusive_with, *([f"group {scenario.group}"] if scenario.group else [])])
        )
    return "Enters: " + ("; ".join(parts) if parts else "every lead") + f" (re-entry: {scenario.reentry.policy})"


def exit_text(scenario: Scenario) -> str:
    return "Leaves when: " + ", ".join(scenario.exit_when) if scenario.exit_when else "Leaves only at the end"


def _dot_text(text: str) -> str:
    return text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def to_dot(steps: Sequence[Step], title: str = "journey", scenario: Scenario | None = None) -> str:
    shapes = {"branch": "diamond", "split": "diamond", "wait": "ellipse", "wait_for": "ellipse"}
    lines = [f'digraph "{_dot_text(title)}" {{', "    rankdir=TB;", f'    label="{_dot_text(title)}"; labelloc=t;']
    if scenario is not None:
        lines.append(f'    "__entry" [label="{_dot_text(entry_text(scenario))}", shape=parallelogram];')
        lines.append(f'    "__entry" -> "{steps[0].id}";')
        lines.append(f'    "__exits" [label="{_dot_text(exit_text(scenario))}", shape=note];')
    for step in steps:
        label = _dot_text(f"{step.id}\n{describe(step)}")
        lines.append(f'    "{step.id}" [label="{label}", shape={shapes.get(_kind(step), "box")}];')
    lines.append(f'    "{END}" [label="end", shape=doublecircle];')
    for source, label, target in journey_edges(steps):
        lines.append(f'    "{source}" -> "{target}" [label="{_dot_text(label)}"];')
    lines.append("}")
    return "\n".join(lines) + "\n"


def to_svg(steps: Sequence[Step], counts: dict[str, str] | None = None) -> str:
    """The journey as an SVG drawing (no JavaScript, no external tools): steps top to
    bottom in file order, falling through straight down, jumps as labelled arcs on the right.
    `counts` adds a note (e.g. a funnel figure) to each step's box."""
    counts = counts or {}
    order = [s.id for s in steps] + [END]
    row, box_w, box_h, left, top = 56, 300, 38, 20, 16
    y = {name: top + i * row for i, name in enumerate(order)}
    fills = {"send_email": "#e8f0fe", "wait": "#f1f3f4", "wait_for": "#fef7e0", "branch": "#fce8e6", "split": "#fce8e6"}
    jumps = [(s, label, t) for s, label, t in edges(steps) if order.index(t) != order.index(s) + 1 or label]
    width = left + box_w + 60 + 26 * len(jumps) + 200
    height = top + len(order) * row
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" font-family="sans-serif" '
        'font-size="12" role="img" aria-label="journey">',
        '<defs><marker id="arrow" viewBox="0 0 10 10" refX="9" refY="5" markerWidth="7" markerHeight="7" '
        'orient="auto-start-reverse"><path d="M0,0 L10,5 L0,10 z" fill="#5f6368"/></marker></defs>',
    ]
    for index, step in enumerate(steps):
        top_y = y[step.id]
        following = order[index + 1]
        falls = any(s == step.id and t == following and not label for s, label, t in edges(steps))
        if falls:
            parts.append(
                f'<line x1="{left + box_w / 2}" y1="{top_y + box_h}" x2="{left + box_w / 2}" y2="{y[following] - 2}" '
                'stroke="#5f6368" marker-end="url(#arrow)"/>'
            )
        note = counts.get(step.id, "")
        parts.append(
            f'<rect x="{left}" y="{top_y}" width="{box_w}" height="{box_h}" rx="6" '
            f'fill="{fills.get(_kind(step), "#ffffff")}" stroke="#9aa0a6"/>'
            f'<text x="{left + 10}" y="{top_y + 16}" font-weight="bold">{_xml(step.id)}</text>'
            f'<text x="{left + 10}" y="{top_y + 31}" fill="#5f6368">{_xml(_kind(step))}</text>'
            f'<text x="{left + box_w - 10}" y="{top_y + 24}" text-anchor="end">{_xml(note)}</text>'
        )
    end_y = y[END]
    parts.append(
        f'<circle cx="{left + box_w / 2}" cy="{end_y + box_h / 2}" r="14" fill="#fff" stroke="#5f6368"/>'
        f'<text x="{left + box_w / 2}" y="{end_y + box_h / 2 + 4}" text-anchor="middle">end</text>'
    )
    right = left + box_w
    starts: dict[str, int] = {}
    for lane, (source, label, target) in enumerate(jumps):
        x = right + 30 + 26 * lane
        nth = starts[source] = starts.get(source, -1) + 1
        y1, y2 = y[source] + 8 + 7 * nth, y[target] + box_h / 2 + 6
        end_x = right if target != END else left + box_w / 2 + 14
        parts.append(
            f'<path d="M{right},{y1} C{x},{y1} {x},{y2} {end_x},{y2}" fill="none" stroke="#1a73e8" '
            f'stroke-width="1.3" marker-end="url(#arrow)"/>'
        )
        if label:
            # At the arc's outermost point (3/4 of the way to its control points), halfway down.
            label_x, label_y = right + 0.75 * (x - right) + 4, (y1 + y2) / 2 + 4
            text = label if len(label) <= 32 else label[:31] + "…"
            parts.append(f'<text x="{label_x:.0f}" y="{label_y:.0f}" fill="#1a73e8">{_xml(text)}</text>')
    parts.append("</svg>")
    return "\n".join(parts) + "\n"


def _xml(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;").replace('"', "&quot;")
