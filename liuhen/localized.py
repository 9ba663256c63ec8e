"""Click commands whose help is shown in the reader's language.

Help texts stay in English in the source (command docstrings, ``help=`` of options) and
are looked up in the catalog when help is printed, after ``--lang`` has been read; the
catalog's msgid for a docstring is the docstring as click cleans it
(:func:`inspect.cleandoc`), which is also what ``scripts/i18n.py`` extracts.
"""

from __future__ import annotations

import inspect
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import click

from config.i18n import _


def translated_doc(text: str | None) -> str | None:
    """A command's help in the reader's language; the part after ``\\f`` is dropped."""
    if not text:
        return text
    cleaned = inspect.cleandoc(text).partition("\f")[0].strip()
    return _(cleaned)


@contextmanager
def _reader_language(command: click.Command) -> Iterator[None]:
    """The command's and its options' help translated while click formats it (an
    option's ``show_default`` text too, e.g. the --actor default "OS user")."""
    saved_command = (command.help, command.short_help, command.epilog)
    saved_params = [
        (p, getattr(p, "help", None), getattr(p, "show_default", None)) for p in command.params
    ]
    command.help = translated_doc(command.help)
    command.short_help = translated_doc(command.short_help)
    command.epilog = translated_doc(command.epilog)
    for param, text, default in saved_params:
        if text:
            param.help = _(text)
        if isinstance(default, str) and default:
            param.show_default = _(default)  # type: ignore[attr-defined]
    try:
        yield
    finally:
        command.help, command.short_help, command.epilog = saved_command
        for param, text, default in saved_params:
            if text:
                param.help = text
            if isinstance(default, str) and default:
                param.show_default = default  # type: ignore[attr-defined]


def _help_option_in_reader_language(option: click.Option | None) -> click.Option | None:
    """Click makes the --help option once per command and keeps it, its help already
    translated: said again in the language of this moment (a process that switches
    language, as the tests do, would otherwise keep the first one)."""
    if option is not None:
        option.help = _("Show this message and exit.")
    return option


def short_help(command: click.Command, limit: int) -> str:
    """The one-line summary in a command list: the first sentence of the translated help,
    ended at "。" as well as ". ", and cut by screen columns (a Chinese character takes
    two), not characters as click counts them."""
    from liuhen.screen_table import clip

    with _reader_language(command):
        text = command.short_help or command.help or ""
    first = " ".join(text.split("\n\n")[0].split())
    for stop in ("。", ". "):
        head, found, _rest = first.partition(stop)
        if found:
            first = head if stop == "。" else head + "."
    return clip(first, limit)


def _checked(ctx: click.Context) -> None:
    """The permission check of every command (liuhen/command_permissions.py), after its
    arguments are parsed and before it runs."""
    from liuhen.command_permissions import check_invocation

    check_invocation(ctx)


class _InReaderLanguage(click.Command):
    """Help, its --help option and the one-line summary in the reader's language: the
    same for a command and a group."""

    def get_help_option(self, ctx: click.Context) -> click.Option | None:
        return _help_option_in_reader_language(super().get_help_option(ctx))

    def format_help(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        with _reader_language(self):
            super().format_help(ctx, formatter)

    def get_short_help_str(self, limit: int = 45) -> str:
        return short_help(self, limit)


class LocalizedCommand(_InReaderLanguage):
    def invoke(self, ctx: click.Context) -> Any:
        _checked(ctx)
        return super().invoke(ctx)


class LocalizedGroup(_InReaderLanguage, click.Group):
    command_class = LocalizedCommand
    group_class: type[click.Group] | type[type] = type  # subgroups: LocalizedGroups too

    def invoke(self, ctx: click.Context) -> Any:
        from liuhen.command_permissions import group_runs_itself

        if group_runs_itself(ctx):  # `liuhen export --out ...`: the group is the command
            _checked(ctx)
        return super().invoke(ctx)
