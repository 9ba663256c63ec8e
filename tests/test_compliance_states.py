"""Compliance names recording states through catalog.states.RecordingState, never by a
literal of its own: a state renamed or added there cannot leave a stale copy here."""

from __future__ import annotations

import ast
from pathlib import Path

from catalog.states import RecordingState

ROOT = Path(__file__).resolve().parents[1]
STATES = {state.value for state in RecordingState}


def test_compliance_spells_no_recording_state_itself() -> None:
    found = [
        f"{path.relative_to(ROOT)}:{node.lineno} {node.value!r}"
        for path in sorted(
            [*(ROOT / "compliance").glob("*.py"), ROOT / "liuhen/compliance_cmds.py"]
        )
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8")))
        if isinstance(node, ast.Constant) and node.value in STATES
    ]
    assert found == []
