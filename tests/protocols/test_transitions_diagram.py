"""The protocol diagram in docs/protocol.md is rendered from the transition tables, not drawn."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from protocols._transitions import (
    ACTIVE_CLIENT_TRANSITIONS,
    ACTIVE_SERVER_TRANSITIONS,
    CLIENT_TRANSITIONS,
    PAILLIER_CLIENT_TRANSITIONS,
    PAILLIER_SERVER_TRANSITIONS,
    SERVER_ACCEPTS,
    SERVER_ROUND_INDEX,
    SERVER_TRANSITIONS,
)
from protocols.messages import Abort

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


def _collected(table: Mapping[Any, Mapping[type, Any]]) -> dict[Any, type]:
    """Each collecting phase of a server table -> the client message it collects (the one
    move, besides a client's Abort, that keeps the phase)."""
    return {
        phase: next(e for e, target in moves.items() if target is phase and e is not Abort)
        for phase, moves in table.items()
        if phase in SERVER_ROUND_INDEX
    }


def render_transitions() -> str:
    """Mermaid state diagrams of every machine's table, and the masking server's rounds."""
    lines = _diagram("Masking client, semi-honest", CLIENT_TRANSITIONS)
    lines += _diagram(
        "Masking client, active (adds the consistency round)", ACTIVE_CLIENT_TRANSITIONS
    )
    lines += _diagram("Masking server, semi-honest", SERVER_TRANSITIONS)
    lines += _diagram("Masking server, active", ACTIVE_SERVER_TRANSITIONS)
    lines.append("| server phase | protocol round | collects | semi-honest | active |")
    lines.append("|---|---|---|---|---|")
    semi_honest = _collected(SERVER_TRANSITIONS)
    rounds = sorted(
        _collected(ACTIVE_SERVER_TRANSITIONS).items(), key=lambda r: SERVER_ROUND_INDEX[r[0]]
    )
    for phase, message in rounds:
        modes = f"{'yes' if phase in semi_honest else 'no'} | yes"
        lines.append(
            f"| `{phase.name}` | {SERVER_ROUND_INDEX[phase]} | `{message.__name__}` | {modes} |"
        )
    lines.append("")
    lines += _diagram("Paillier client", PAILLIER_CLIENT_TRANSITIONS)
    lines += _diagram("Paillier server", PAILLIER_SERVER_TRANSITIONS)
    return "\n".join(lines).strip()


def test_server_tables_collect_what_server_accepts_names() -> None:
    """The round table is drawn from the server tables; they agree with ``SERVER_ACCEPTS``
    (the semi-honest server's), and the active server only adds the consistency round."""
    assert _collected(SERVER_TRANSITIONS) == SERVER_ACCEPTS
    active = _collected(ACTIVE_SERVER_TRANSITIONS)
    assert set(active) == set(SERVER_ROUND_INDEX)
    extra = {phase: message for phase, message in active.items() if phase not in SERVER_ACCEPTS}
    assert [SERVER_ROUND_INDEX[phase] for phase in extra] == [3]
    assert {p: m for p, m in active.items() if p in SERVER_ACCEPTS} == SERVER_ACCEPTS


def test_transitions_diagram_matches_the_tables() -> None:
    text = DOC.read_text(encoding="utf-8")
    rendered = text.split(BEGIN, 1)[1].split(END, 1)[0].strip()
    assert rendered == render_transitions(), (
        "docs/protocol.md is stale: paste the output of render_transitions() between the markers"
    )
