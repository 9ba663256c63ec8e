"""The `--actor` option every command that records who acted shares: one type, one check.

Kept apart from the command modules so that `liuhen/cli.py` can use it without loading
the catalog at start-up; the check itself (catalog.fields, which reads the column lengths
from the models) is imported only when a value is converted.
"""

from __future__ import annotations

import getpass
from collections.abc import Callable
from typing import Any

import click

from config.i18n import N_, _


class ActorType(click.ParamType):  # type: ignore[type-arg]
    """Who acts: refused here, naming --actor, when the catalog could not record it (too
    long for its columns, a NUL), rather than by PostgreSQL mid-command (SQLite would
    silently keep it)."""

    name = "actor"

    def convert(self, value: Any, param: Any, ctx: Any) -> str:
        from catalog.fields import actor_problems

        problems = actor_problems(str(value))
        if problems:
            self.fail(
                _("{problems} (give a shorter name: a user name or 警号)").format(
                    problems="; ".join(problems)
                ),
                param,
                ctx,
            )
        return str(value)


ACTOR = ActorType()


def actor_option(f: Callable[..., Any]) -> Callable[..., Any]:
    return click.option(
        "--actor",
        type=ACTOR,
        default=lambda: getpass.getuser(),
        show_default=N_("OS user"),  # translated when help is shown (liuhen.localized)
        help="Who does this (recorded in the custody log).",
    )(f)
