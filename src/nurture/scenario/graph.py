"""The journey as a graph: edges of each step, reachability, loops, Mermaid and DOT."""

from __future__ import annotations

from collections.abc import Sequence

from nurture.scenario.model import Branch, Exit, Goto, Split, Step, Wait, WaitFor

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
        targets += [("variants", v.goto) for v in step.variants]
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
            total = sum(v.weight for v in step.variants)
            result += [
                (step.id, f"{v.name or chr(97 + i)} {v.weight / total:.0%}", v.goto)
                for i, v in enumerate(step.variants)
            ]
        elif isinstance(step, Goto):
            result.append((step.id, "", step.target))
        elif isinstance(step, Exit):
            result.append((step.id, step.reason, END))
        else:
            result.append((step.id, "", step.next or following))
    return result


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


def to_mermaid(steps: Sequence[Step], title: str = "") -> str:
    lines = ["flowchart TD"]
    if title:
        lines.insert(0, f"%% {title}")
    shapes = {"branch": ("{", "}"), "split": ("{", "}"), "wait": ("([", "])"), "wait_for": ("([", "])")}
    for step in steps:
        left, right = shapes.get(_kind(step), ("[", "]"))
        lines.append(f'    {step.id}{left}"{step.id}<br/><i>{_kind(step)}</i>"{right}')
    lines.append(f"    {END}((end))")
    for source, label, target in edges(steps):
        text = label.replace('"', "'")
        lines.append(f'    {source} -->|"{text}"| {target}' if text else f"    {source} --> {target}")
    return "\n".join(lines) + "\n"


def to_dot(steps: Sequence[Step], title: str = "journey") -> str:
    shapes = {"branch": "diamond", "split": "diamond", "wait": "ellipse", "wait_for": "ellipse"}
    lines = [f'digraph "{title}" {{', "    rankdir=TB;"]
    for step in steps:
        lines.append(f'    {step.id} [label="{step.id}\\n({_kind(step)})", shape={shapes.get(_kind(step), "box")}];')
    lines.append(f'    {END} [label="end", shape=doublecircle];')
    for source, label, target in edges(steps):
        text = label.replace('"', '\\"')
        lines.append(f'    {source} -> {target} [label="{text}"];')
    lines.append("}")
    return "\n".join(lines) + "\n"
