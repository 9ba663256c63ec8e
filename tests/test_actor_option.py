"""``--actor`` is checked where the user types it: a name the catalog cannot record (longer
than its actor columns, or holding a NUL) is a usage error naming --actor, on SQLite (which
would silently keep it) and on PostgreSQL (which refused it with DataError, exit 70)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import click
import pytest
from sqlalchemy import func, select

from catalog.fields import actor_length
from catalog.models import CaseRecording, CustodyEvent, Device, LegalHold
from liuhen.actor import ACTOR
from liuhen.cli import cli
from tests.cli_helpers import run_cli


def _commands(group: click.Group, prefix: str = "") -> Iterator[tuple[str, click.Command]]:
    ctx = click.Context(group)
    for name in group.list_commands(ctx):  # loads the lazily registered command modules
        command = group.get_command(ctx, name)
        assert command is not None
        if isinstance(command, click.Group):
            yield from _commands(command, f"{prefix}{name} ")
        else:
            yield f"{prefix}{name}", command


def test_every_command_taking_actor_checks_it() -> None:
    taking = {
        name: param
        for name, command in _commands(cli)
        for param in command.params
        if "--actor" in getattr(param, "opts", [])
    }
    assert "device add" in taking and "case attach" in taking  # the walk found them
    unchecked = sorted(name for name, param in taking.items() if param.type is not ACTOR)
    assert unchecked == []


def test_the_limit_is_the_schemas() -> None:
    # Every column an actor goes into: a changed width changes the check with it.
    widths = {
        c.property.columns[0].type.length
        for c in (
            CustodyEvent.actor,
            CaseRecording.actor,
            CaseRecording.detached_by,
            LegalHold.placed_by,
        )
    }
    assert actor_length() == min(widths) == 200


def _events(app: Any) -> int:
    with app.catalog.session() as s:
        return int(s.scalar(select(func.count()).select_from(CustodyEvent)) or 0)


@pytest.mark.parametrize(
    ("actor", "reason"),
    [
        ("警" * 201, "the actor is 201 characters long, more than the 200 it may have"),
        ("admin\x00root", "the actor contains a NUL character"),
    ],
)
def test_an_actor_the_catalog_cannot_hold_is_a_usage_error_naming_actor(
    app: Any,
    capsys: pytest.CaptureFixture[str],
    actor: str,
    reason: str,
) -> None:
    before = _events(app)
    r = run_cli(capsys, "device", "add", "A123456", "--actor", actor)
    assert r.code == 2, r.out + r.err
    assert "Invalid value for '--actor'" in r.err and reason in r.err, r.err
    assert "Traceback" not in r.err and "DataError" not in r.err
    # Nothing half-done: no device, no custody event.
    with app.catalog.session() as s:
        assert s.scalars(select(Device)).all() == []
    assert _events(app) == before
    # Every command that takes --actor refuses it the same way (here: before it even
    # looks for the case or the recording).
    r = run_cli(
        capsys, "case", "attach", "沪徐市监罚〔2026〕1号", "1", "--reason", "test", "--actor", actor
    )
    assert r.code == 2 and "Invalid value for '--actor'" in r.err and reason in r.err, r.err


def test_an_actor_as_long_as_the_column_is_recorded(
    app: Any,
    capsys: pytest.CaptureFixture[str],
) -> None:
    r = run_cli(capsys, "device", "add", "A123456", "--actor", "警" * 200)
    assert r.code == 0, r.out + r.err
    with app.catalog.session() as s:
        actor = s.scalars(
            select(CustodyEvent.actor).where(CustodyEvent.action == "device-registered")
        ).one()
    assert actor == "警" * 200
