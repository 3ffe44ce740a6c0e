"""The protocol diagram in docs/protocol.md is rendered from the transition tables, not drawn."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from protocols._transitions import (
    CLIENT_TRANSITIONS,
    PAILLIER_CLIENT_TRANSITIONS,
    PAILLIER_SERVER_TRANSITIONS,
    SERVER_ACCEPTS,
    SERVER_ROUND_INDEX,
    SERVER_TRANSITIONS,
)

DOC = Path(__file__).resolve().parents[2] / "docs" / "protocol.md"
BEGIN, END = "<!-- transitions:begin -->", "<!-- transitions:end -->"


def _event_label(event: type) -> str:
    return str(getattr(event, "verb", event.__name__))


def _diagram(title: str, table: Mapping[Any, Mapping[type, Any]]) -> list[str]:
    lines = [f"**{title}**", "", "```mermaid", "stateDiagram-v2"]
    for phase, moves in table.items():
        for event, target in moves.items():
            if target is not phase:
                lines.append(f"    {phase.name} --> {target.name}: {_event_label(event)}")
    return [*lines, "```", ""]


def render_transitions() -> str:
    """Mermaid state diagrams of every machine's table, and the masking server's rounds."""
    lines = _diagram("Masking client", CLIENT_TRANSITIONS)
    lines += _diagram("Masking server", SERVER_TRANSITIONS)
    lines.append("| server phase | protocol round | collects |")
    lines.append("|---|---|---|")
    for phase, message in SERVER_ACCEPTS.items():
        lines.append(f"| `{phase.name}` | {SERVER_ROUND_INDEX[phase]} | `{message.__name__}` |")
    lines.append("")
    lines += _diagram("Paillier client", PAILLIER_CLIENT_TRANSITIONS)
    lines += _diagram("Paillier server", PAILLIER_SERVER_TRANSITIONS)
    return "\n".join(lines).strip()


def test_transitions_diagram_matches_the_tables() -> None:
    text = DOC.read_text(encoding="utf-8")
    rendered = text.split(BEGIN, 1)[1].split(END, 1)[0].strip()
    assert rendered == render_transitions(), (
        "docs/protocol.md is stale: paste the output of render_transitions() between the markers"
    )
