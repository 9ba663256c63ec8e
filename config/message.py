"""Messages that stay English where programs read them and are translated where people do.

A text that is kept (a finding of ``liuhen verify``, a problem of the four-properties
check in a bag, an identity flag of a docking, a time-evidence flag of a recording) is
written once, by whichever process found it, and read later by people of either
language and by programs. Translating it when it is made would store the language of
that process (a station runs in Chinese by default): an English reader would see
Chinese and ``--json`` would carry whichever it was. A :class:`Msg` is both: a ``str``
holding the English text, remembering its catalog template and fields, so that
:func:`shown` (the reader's language) and :func:`in_chinese` (the Chinese half of a
bilingual report) translate it when it is read::

    Msg(N_("cannot read: {error}"), error=exc)

Where it is stored in a JSON column or file, :func:`stored` keeps it as data::

    {"text": "<English>", "msg": "<English template>", "fields": {...}}

and :func:`from_stored` makes it a :class:`Msg` again. A field that is a point in time (an
aware ``datetime``) is kept as that instant, ``{"instant": "<ISO 8601 UTC>"}``, and shown
in the station's time (``+08:00``, config.timetext) wherever the message is read: its
English text too, so what the API and ``--json`` carry reads as people read times.
``text`` is what programs read (``--json``, the API: :func:`english`); a row written
before messages were kept this way holds a plain string, which is shown as it is.
Where only a text column holds it (a quarantine reason in the station's journal and the
catalog), it is kept as its English text, and :func:`recognised` reads the template
and fields back out of it.
"""

from __future__ import annotations

import gettext as _gettext
import re
import string
from collections.abc import Callable, Iterable
from datetime import UTC, datetime, tzinfo
from functools import cache
from typing import Any, cast

from config.i18n import N_, _, load_catalog
from config.settings import CHINA_STANDARD_TIME
from config.timetext import show_time

__all__ = [
    "Msg",
    "english",
    "from_stored",
    "in_chinese",
    "is_message",
    "joined",
    "recognised",
    "shown",
    "stored",
]


class Msg(str):
    """English text (the ``str`` value) that knows its catalog template and fields."""

    template: str
    fields: dict[str, Any]
    level: str  # set by whoever files it as a problem ("fail", "warn")

    def __new__(cls, template: str, /, **fields: Any) -> Msg:
        text = template.format(**_times_shown(fields, None)) if fields else template
        self = super().__new__(cls, text)
        self.template = template
        self.fields = fields
        return self

    def translated(self, gettext: Callable[[str], str], zone: tzinfo | None = None) -> str:
        """In the language of ``gettext``; times in ``zone`` (the station's, +08:00 when
        not given)."""
        # Fields that are themselves messages are translated too ("… : {problem}").
        inner = {
            k: (v.translated(gettext, zone) if isinstance(v, Msg) else v)
            for k, v in _times_shown(self.fields, zone).items()
        }
        return gettext(self.template).format(**inner) if inner else gettext(self.template)


def _times_shown(fields: dict[str, Any], zone: tzinfo | None) -> dict[str, Any]:
    """``fields`` with each point in time as a person reads it in ``zone``."""
    return {
        k: show_time(v, zone or CHINA_STANDARD_TIME) if isinstance(v, datetime) else v
        for k, v in fields.items()
    }


def _instant(value: datetime) -> dict[str, str]:
    """A point in time as :func:`stored` keeps it: UTC, ISO 8601."""
    return {"instant": value.astimezone(UTC).isoformat().replace("+00:00", "Z")}


def _field_from_stored(value: Any) -> Any:
    if isinstance(value, dict) and isinstance(value.get("instant"), str):
        return datetime.fromisoformat(value["instant"].replace("Z", "+00:00"))
    return from_stored(value) if isinstance(value, dict) else value


def joined(items: list[str]) -> str:
    """``a; b; c``, each part translated when shown (English where stored)."""
    if len(items) == 1:
        return items[0]
    return Msg(N_("{first}; {rest}"), first=items[0], rest=joined(items[1:]))


def stored(text: str) -> Any:
    """``text`` as JSON data: a :class:`Msg` as ``{"text", "msg", "fields"}`` (its fields
    made plain JSON values), any other string as it is."""
    if not isinstance(text, Msg):
        return text
    fields = {
        k: stored(v)
        if isinstance(v, Msg)
        else _instant(v)
        if isinstance(v, datetime)
        else (v if _plain(v) else str(v))
        for k, v in text.fields.items()
    }
    return {"text": str(text), "msg": text.template, "fields": fields}


def _plain(value: Any) -> bool:
    return value is None or isinstance(value, str | int | float | bool)


def is_message(value: Any) -> bool:
    """Whether ``value`` is a message (a :class:`Msg`, or one :func:`stored` kept)."""
    return isinstance(value, Msg) or (isinstance(value, dict) and isinstance(value.get("msg"), str))


def from_stored(value: Any) -> Any:
    """What :func:`stored` kept, as a :class:`Msg` again; anything else (a plain string
    of an older row) as it is."""
    if isinstance(value, dict) and is_message(value):
        raw = value.get("fields") or {}
        fields = {k: _field_from_stored(v) for k, v in raw.items()}
        try:
            return Msg(value["msg"], **fields)
        except (KeyError, IndexError, ValueError):  # a template and fields that disagree
            return str(value.get("text") or value["msg"])
    return value


def recognised(text: str, templates: Iterable[str]) -> str:
    """``text``, kept as English text only (a text column), as the :class:`Msg` of the
    first of ``templates`` it was made from, its fields read back out of it (a field that
    is itself made from one of ``templates`` as its Msg); else ``text`` as it is (written
    in another language, or by no such template)."""
    templates = tuple(templates)
    for template in templates:
        pattern = _pattern(template)
        found = pattern.fullmatch(text) if pattern is not None else None
        if found is not None:
            inner = {
                k: recognised(v, templates) if v != text else v
                for k, v in found.groupdict().items()
            }
            return Msg(template, **inner) if inner else Msg(template)
    return text


@cache
def _pattern(template: str) -> re.Pattern[str] | None:
    """What ``template`` formats to; None for a template whose fields have a format of
    their own (read back they would not format again)."""
    regex, seen = "", set()
    for literal, name, spec, conversion in string.Formatter().parse(template):
        regex += re.escape(literal)
        if name is None:
            continue
        if spec or conversion or not name.isidentifier():
            return None
        regex += f"(?P={name})" if name in seen else f"(?P<{name}>.+?)"
        seen.add(name)
    return re.compile(regex, re.DOTALL)


def english(value: Any) -> str:
    """The English text of a stored message (what ``--json`` and the API carry)."""
    return str(from_stored(value))


def shown(text: Any, zone: tzinfo | None = None) -> str:
    """``text`` (a :class:`Msg`, or what :func:`stored` kept) in the reader's language,
    its times in ``zone`` (the station's; +08:00 when not given); a plain string is shown
    as it is."""
    kept = from_stored(text)
    return kept.translated(_, zone) if isinstance(kept, Msg) else cast(str, kept)


_zh: _gettext.NullTranslations | None = None


def in_chinese(text: Any, zone: tzinfo | None = None) -> str:
    """``text`` in Chinese whatever the reader's language (bilingual reports in a bag)."""
    global _zh
    kept = from_stored(text)
    if not isinstance(kept, Msg):
        return cast(str, kept)
    if _zh is None:
        _zh = load_catalog()
    return kept.translated(_zh.gettext, zone)
