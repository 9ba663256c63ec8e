"""Messages that stay English where programs read them and are translated where people do.

A finding of ``liuhen verify`` or a problem of the four-properties check is kept in
reports a program reads (``--json``, ``data/metadata/four-properties.json`` inside a
bag) in English, whatever the reader's language, so that a bag's own files never change
with who made it; the same finding is shown to a person in their language::

    Finding("unreadable", rel, Msg(N_("cannot read: {error}"), error=exc))

The one implementation is :mod:`config.message` (ingest keeps its stored flags the same
way); this module keeps the names archive_export's modules import.
"""

from __future__ import annotations

from config.message import Msg, in_chinese, joined, shown

__all__ = ["Msg", "in_chinese", "joined", "shown"]
