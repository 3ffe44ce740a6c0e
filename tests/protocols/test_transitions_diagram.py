"""The protocol diagram in docs/protocol.md is rendered from the transition tables, not drawn."""

from __future__ import annotations

from pathlib import Path

from protocols._transitions import CLIENT_TRANSITIONS, SERVER_ACCEPTS, SERVER_ROUND_INDEX

DOC = Path(__file__).resolve().parents[2] / "docs" / "protocol.md"
BEGIN, END = "<!-- transitions:begin -->", "<!-- transitions:end -->"


def render_transitions() -> str:
    """Mermaid state diagrams of the client table and the server's collecting phases."""
    lines = ["```mermaid", "stateDiagram-v2"]
    for phase, moves in CLIENT_TRANSITIONS.items():
        for message, target in moves.items():
            lines.append(f"    {phase.name} --> {target.name}: {message.__name__}")
    lines.append("    AWAIT_INPUT --> AWAIT_UNMASK_REQUEST: submit_input()")
    lines.append("```")
    lines.append("")
    lines.append("| server phase | protocol round | collects |")
    lines.append("|---|---|---|")
    for phase, message in SERVER_ACCEPTS.items():
        lines.append(f"| `{phase.name}` | {SERVER_ROUND_INDEX[phase]} | `{message.__name__}` |")
    return "\n".join(lines)


def test_transitions_diagram_matches_the_tables() -> None:
    text = DOC.read_text(encoding="utf-8")
    rendered = text.split(BEGIN, 1)[1].split(END, 1)[0].strip()
    assert rendered == render_transitions(), (
        "docs/protocol.md is stale: paste the output of render_transitions() between the markers"
    )
