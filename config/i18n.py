"""The language people read: Simplified Chinese by default, English on request.

Messages are written in English in the source and looked up in gettext catalogs at the
moment they are shown::

    from config.i18n import _, N_
    err.print(_("file {name} is not a bag").format(name=path))
    HEADERS = (N_("Device"), N_("Officer"))   # marked at import, translated when shown

The Chinese catalog is split by area (``locale/zh_CN/LC_MESSAGES/<area>.po``: one file
per area of the code, so that the people who change one area do not edit the same file);
all areas form one catalog, and a message translated in two areas must say the same.
A ``.po`` is compiled to its ``.mo`` beside it the first time it is needed after a change
(Babel's compiler); where the package folder is read-only the catalog is compiled in
memory instead.

The language is chosen once per process: ``--lang`` (which calls :func:`set_language`),
else ``LIUHEN_LANG``, else Chinese. Click's own messages ("Usage:", "Missing option") are
translated too (:func:`translate_click`). A server answering people who read different
languages chooses it per request (:func:`language_for`, a context variable: each request,
each thread or task, has its own, and none leaks into another).
"""

from __future__ import annotations

import gettext as _gettext
import os
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from pathlib import Path
from typing import Final

LOCALE_DIR: Final = Path(__file__).parent / "locale"
DOMAIN_DIR: Final = LOCALE_DIR / "zh_CN" / "LC_MESSAGES"
LANGUAGES: Final = ("zh", "en")
DEFAULT_LANGUAGE: Final = "zh"
# The web application remembers a reader's choice of language in this cookie; the API
# answers that reader in it too (api/language.py).
LANG_COOKIE: Final = "liuhen_lang"
_ALIASES: Final = {
    "zh": "zh",
    "zh_cn": "zh",
    "zh-cn": "zh",
    "zh_hans": "zh",
    "zh-hans": "zh",
    "cn": "zh",
    "中文": "zh",
    "en": "en",
    "en_us": "en",
    "en-us": "en",
    "en_gb": "en",
    "english": "en",
}

_language: str | None = None
_catalog: _gettext.NullTranslations | None = None
# The language of the request being answered (None: the process's), set by language_for.
_request_language: ContextVar[str | None] = ContextVar("liuhen_language", default=None)


def normalise_language(name: str) -> str:
    """``zh``/``en`` for the spellings people use; ValueError naming what is accepted."""
    key = name.strip().lower().split(".")[0]
    if key in _ALIASES:
        return _ALIASES[key]
    raise ValueError(f"unknown language {name!r}: use zh (中文) or en (English)")


def set_language(name: str | None) -> str:
    """Choose the language for this process (None: ``LIUHEN_LANG``, else Chinese)."""
    global _language, _catalog
    if name is None:
        env = os.environ.get("LIUHEN_LANG", "").strip()
        try:
            _language = normalise_language(env) if env else DEFAULT_LANGUAGE
        except ValueError:
            _language = DEFAULT_LANGUAGE  # a bad variable must not stop every command
    else:
        _language = normalise_language(name)
    _catalog = None
    return _language


def language() -> str:
    """The language of the request being answered, else of this process: ``zh`` or
    ``en``."""
    chosen = _request_language.get()
    if chosen is not None:
        return chosen
    return _language if _language is not None else set_language(None)


@contextmanager
def language_for(name: str | None) -> Iterator[str]:
    """Messages in ``name`` (``zh``/``en``; None: the process's language) inside the
    block, for this context only (one request of a server); yields the language."""
    token = _request_language.set(normalise_language(name) if name else None)
    try:
        yield language()
    finally:
        _request_language.reset(token)


def _(message: str) -> str:
    """``message`` in the reader's language."""
    return _translations().gettext(message)


def ngettext(singular: str, plural: str, n: int) -> str:
    """The singular or plural form for ``n`` in the reader's language (Chinese has one)."""
    return _translations().ngettext(singular, plural, n)


def N_(message: str) -> str:
    """Marks ``message`` for the catalog without translating it (for constants defined at
    import time, before the language is chosen); translate it with ``_`` when shown."""
    return message


def _translations() -> _gettext.NullTranslations:
    global _catalog
    if language() == "en":
        return _ENGLISH
    if _catalog is None:
        _catalog = load_catalog()
    return _catalog


_ENGLISH: Final = _gettext.NullTranslations()  # the messages as written


def catalog_parts() -> list[Path]:
    """The Chinese catalog's ``.po`` files, one per area, in a stable order."""
    return sorted(DOMAIN_DIR.glob("*.po"))


def load_catalog() -> _gettext.NullTranslations:
    """All areas of the Chinese catalog as one chain of translations."""
    chain: _gettext.NullTranslations = _gettext.NullTranslations()
    head: _gettext.NullTranslations | None = None
    for po in catalog_parts():
        part = _load_part(po)
        if head is None:
            head = chain = part
        else:
            chain.add_fallback(part)
    return head or chain


def _load_part(po: Path) -> _gettext.NullTranslations:
    mo = po.with_suffix(".mo")
    try:
        fresh = mo.stat().st_mtime_ns >= po.stat().st_mtime_ns
    except FileNotFoundError:
        fresh = False
    if not fresh:
        data = compile_po(po)
        try:
            tmp = mo.with_name(f".{mo.name}.{os.getpid()}.tmp")
            tmp.write_bytes(data)
            os.replace(tmp, mo)
        except OSError:  # a read-only install: use the catalog compiled in memory
            import io

            return _gettext.GNUTranslations(io.BytesIO(data))
    with mo.open("rb") as fh:
        return _gettext.GNUTranslations(fh)


def compile_po(po: Path) -> bytes:
    """The ``.mo`` bytes of one ``.po`` (Babel); fuzzy entries are left out, as gettext's
    ``msgfmt`` does, so an unchecked translation never reaches a reader."""
    import io

    from babel.messages.mofile import write_mo
    from babel.messages.pofile import read_po

    with po.open("rb") as fh:
        catalog = read_po(fh, locale="zh_CN", domain=po.stem)
    buffer = io.BytesIO()
    write_mo(buffer, catalog, use_fuzzy=False)
    return buffer.getvalue()


def translate_click() -> None:
    """Route click's own messages ("Usage:", "Error: Missing option …") through ours.

    Click binds ``gettext.gettext`` into each of its modules at import; rebinding those
    names is the only way short of setting LANGUAGE for the whole process (which would
    reach every child process and library using gettext)."""
    import click

    for name in (
        "core",
        "decorators",
        "exceptions",
        "formatting",
        "parser",
        "termui",
        "types",
        "utils",
        "_termui_impl",
        "shell_completion",
    ):
        module = getattr(click, name, None)
        if module is None:
            continue
        if hasattr(module, "_"):
            module._ = _
        if hasattr(module, "ngettext"):
            module.ngettext = ngettext
