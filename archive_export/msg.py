"""Messages that stay English where programs read them and are translated where people do.

A finding of ``liuhen verify`` or a problem of the four-properties check is kept in
reports a program reads (``--json``, ``data/metadata/four-properties.json`` inside a
bag) in English, whatever the reader's language, so that a bag's own files never change
with who made it; the same finding is shown to a person in their language. A
:class:`Msg` is both: a ``str`` holding the English text, remembering its catalog
template and fields so :func:`shown` (the reader's language) and :func:`in_chinese`
(the Chinese half of the bilingual HTML report in a bag) can translate it later::

    Finding("unreadable", rel, Msg(N_("cannot read: {error}"), error=exc))
"""

from __future__ import annotations

import gettext as _gettext
from collections.abc import Callable
from typing import Any

from config.i18n import N_, _, load_catalog


class Msg(str):
    """English text (the ``str`` value) that knows its catalog template and fields."""

    template: str
    fields: dict[str, Any]
    level: str  # set by whoever files it as a problem ("fail", "warn")

    def __new__(cls, template: str, /, **fields: Any) -> Msg:
        self = super().__new__(cls, template.format(**fields) if fields else template)
        self.template = template
        self.fields = fields
        return self

    def translated(self, gettext: Callable[[str], str]) -> str:
        # Fields that are themselves messages are translated too ("… : {problem}").
        inner = {
            k: (v.translated(gettext) if isinstance(v, Msg) else v) for k, v in self.fields.items()
        }
        return gettext(self.template).format(**inner) if inner else gettext(self.template)


def joined(items: list[str]) -> str:
    """``a; b; c``, each part translated when shown (English where stored)."""
    if len(items) == 1:
        return items[0]
    return Msg(N_("{first}; {rest}"), first=items[0], rest=joined(items[1:]))


def shown(text: str) -> str:
    """``text`` in the reader's language (a plain string is shown as it is)."""
    return text.translated(_) if isinstance(text, Msg) else text


_zh: _gettext.NullTranslations | None = None


def in_chinese(text: str) -> str:
    """``text`` in Chinese whatever the reader's language (bilingual reports in a bag)."""
    global _zh
    if not isinstance(text, Msg):
        return text
    if _zh is None:
        _zh = load_catalog()
    return text.translated(_zh.gettext)
