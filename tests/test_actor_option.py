"""``--actor`` is checked where the user types it: a name the catalog cannot record (longer
than its actor columns, or holding a NUL) is a usage error naming --actor, on SQLite (which
would silently keep it) and on PostgreSQL (which refused it with DataError, exit 70).

Since user accounts (issue 15), ``--actor`` is free text only while the catalog has no
accounts (these tests make none); with accounts the actor is the logged-in principal and
``--actor`` may only repeat it (tests/test_access_cli.py)."""

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


def test_the_actor_defaults_to_the_principal_not_a_guess(
    app: Any, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    # No --actor: the principal's name (without accounts, the OS user), filled in by the
    # permission hook rather than by the option's default.
    import getpass

    option = next(
        p
        for p in cli.get_command(click.Context(cli), "device").commands["add"].params  # type: ignore[union-attr]
        if "--actor" in getattr(p, "opts", [])
    )
    assert option.default is None
    assert run_cli(capsys, "device", "add", "A123456").code == 0
    with app.catalog.session() as s:
        actor = s.scalars(
            select(CustodyEvent.actor).where(CustodyEvent.action == "device-registered")
        ).one()
    assert actor == getpass.getuser()


def test_with_accounts_another_actor_is_refused(
    app: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    from access.accounts import create_user, principal_of
    from access.roles import Role
    from access.sessions import open_session
    from config.settings import AccessSettings
    from liuhen.actor import write_session_secret

    cheap = AccessSettings(argon2_time_cost=1, argon2_memory_kib=1024, argon2_parallelism=1)
    with app.catalog.transaction() as s:
        user, _pw = create_user(
            s,
            login="root",
            roles=[Role.SYSTEM_ADMIN],
            actor="test",
            policy=cheap,
            password="Correct-Horse-9",
        )
        user.totp_enabled = True
        secret = open_session(s, principal_of(s, user, via="session", policy=cheap))
    write_session_secret(app.settings, secret)
    r = run_cli(capsys, "device", "add", "A123456", "--actor", "admin")
    assert r.code == 2 and "Invalid value for '--actor'" in r.err and "root" in r.err, r.err
    # A name the catalog cannot hold is still refused as such, before anything else.
    r = run_cli(capsys, "device", "add", "A123456", "--actor", "警" * 201)
    assert r.code == 2 and "201 characters" in r.err
    assert run_cli(capsys, "device", "add", "A123456", "--actor", "root").code == 0
