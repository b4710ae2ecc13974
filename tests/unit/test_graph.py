"""`nurture graph` reads like the journey, and no step id can break the diagram."""

from __future__ import annotations

from collections.abc import Callable

from nurture.scenario.compiler import CompiledScenario
from nurture.scenario.graph import to_dot, to_mermaid

JOURNEY = """
id: trial
name: Trial "Pro" onboarding
entry:
  when: 'lead.company_size >= 50'
  source: [trial]
exit_when: [became_hot, unsubscribed]
steps:
  - id: graph
    type: send_email
    template: hello
    subject: "Welcome to <Pro>, {{ lead.first_name }}"
  - id: click
    type: wait_for
    event: click
    timeout: 3d
    on_event: end
    on_timeout: subgraph
  - id: subgraph
    type: wait
    duration: 2d
  - id: end
    type: exit
    reason: done
"""


def test_mermaid_shows_title_subjects_waits_events_timeouts_entry_and_exit(
    compile_text: Callable[..., CompiledScenario],
) -> None:
    compiled = compile_text(JOURNEY)
    chart = to_mermaid(compiled.scenario.steps, compiled.scenario.name, compiled.scenario)
    assert chart.startswith("---\ntitle: Trial #quot;Pro#quot; onboarding\n---\nflowchart TD\n")
    assert "✉ hello: “Welcome to #lt;Pro#gt;, {{ lead.first_name }}”" in chart
    assert "⌛ wait up to 3d for click" in chart and "⏱ wait 2d" in chart
    assert 's_click -->|"click"| s_end' in chart and 's_click -->|"no click in 3d"| s_subgraph' in chart
    assert "Enters: when lead.company_size #gt;= 50; source: trial (re-entry: never)" in chart
    assert "Leaves when: became_hot, unsubscribed" in chart


def test_step_ids_that_are_mermaid_or_dot_words_are_safe_node_ids(
    compile_text: Callable[..., CompiledScenario],
) -> None:
    compiled = compile_text(JOURNEY)
    chart = to_mermaid(compiled.scenario.steps, compiled.scenario.name, compiled.scenario)
    node_lines = [line.strip() for line in chart.splitlines()[4:]]
    for line in node_lines:
        first = line.split("[")[0].split("(")[0].split("{")[0].split(" ")[0]
        assert first.startswith("s_"), f"a node id that is not prefixed: {line}"
    dot = to_dot(compiled.scenario.steps, compiled.scenario.name, compiled.scenario)
    assert '"graph" [label="graph\\n✉ hello: “Welcome to <Pro>, {{ lead.first_name }}”"' in dot
    assert 'digraph "Trial \\"Pro\\" onboarding"' in dot
