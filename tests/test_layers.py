"""ARCHITECTURE.md's layering, checked on every import (also the ones inside functions):
storage and catalog import none of ingest/archive_export/compliance/liuhen; archive_export
does not import ingest; compliance does not import ingest, archive_export or liuhen;
formats imports nothing of the project but config, config nothing at all; nothing
imports liuhen. And the rules shared across those walls are defined once."""

from __future__ import annotations

import ast
from datetime import timedelta
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
FORBIDDEN = {
    "storage": {"catalog", "ingest", "archive_export", "compliance", "liuhen", "api", "web"},
    "catalog": {"ingest", "archive_export", "compliance", "liuhen", "access", "api", "web"},
    "archive_export": {"ingest", "compliance", "liuhen", "api", "web"},
    "compliance": {"ingest", "archive_export", "liuhen", "api", "web"},
    "ingest": {"archive_export", "compliance", "liuhen", "api", "web"},
    "formats": {
        "storage",
        "catalog",
        "ingest",
        "archive_export",
        "compliance",
        "liuhen",
        "api",
        "web",
    },
    # accounts and the policy (issue 15): on config, catalog and storage only, so that
    # the CLI and the HTTP API both stand on it
    "access": {"ingest", "archive_export", "compliance", "liuhen", "api", "web"},
    # the HTTP API stands on the same functions as the command line, never on its modules
    "api": {"liuhen", "web"},
    # the pages stand on the API and the same functions, never on the command line
    "web": {"liuhen"},
    "config": {
        "storage",
        "catalog",
        "ingest",
        "archive_export",
        "compliance",
        "liuhen",
        "formats",
        "api",
        "web",
    },
}


def _imports(path: Path) -> set[str]:
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module.split(".")[0])
    return found


@pytest.mark.parametrize("package", sorted(FORBIDDEN))
def test_layering(package: str) -> None:
    bad = [
        f"{p.relative_to(ROOT)} imports {m}"
        for p in sorted((ROOT / package).rglob("*.py"))
        for m in sorted(_imports(p) & FORBIDDEN[package])
    ]
    assert bad == []


def test_china_standard_time_is_defined_once() -> None:
    # Recorder clocks and a unit's calendar days are UTC+8: one definition, in config,
    # that every package may import.
    import catalog.case_import
    import compliance.periods
    import config.settings
    import ingest.identity
    import ingest.synthetic

    cst = config.settings.CHINA_STANDARD_TIME
    assert cst.utcoffset(None) == timedelta(hours=8)
    assert catalog.case_import.CHINA_STANDARD_TIME is cst
    assert compliance.periods.CST is cst
    assert ingest.identity.CHINA_STANDARD_TIME is cst
    assert ingest.synthetic.CHINA_STANDARD_TIME is cst


def test_safe_to_clear_is_one_rule_for_station_and_district_check() -> None:
    # The station clears a recorder by DockingState.is_safe_to_clear; the district check
    # (which may not import ingest) must judge dockings by that same rule, not a copy.
    from archive_export import district_check
    from catalog.states import DockingState
    from ingest import journal

    assert journal.DockingState is DockingState
    safe = {s for s in DockingState if s.is_safe_to_clear}
    assert set(district_check.SAFE_DOCKING_STATES) == safe
    assert {s.value for s in safe} == {"SAFE_TO_CLEAR", "CLEARED"}
    assert not DockingState.NO_FILES.is_safe_to_clear
