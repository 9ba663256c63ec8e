"""The message catalog's tool: which messages the code shows, and which lack Chinese.

    python scripts/i18n.py missing [PATH ...]        messages without a translation
    python scripts/i18n.py add-missing AREA PATH ...  append them, untranslated, to AREA.po
    python scripts/i18n.py compile                     compile every .po to its .mo
    python scripts/i18n.py check                       what tests/test_translations.py checks

A message is: the first argument of ``_``/``N_`` and the two of ``ngettext`` when they are
string literals; the docstring of a click command or group (as click cleans it); the
``help=`` string of any call (click options); and click's own messages, which 留痕 shows
through its catalog (area ``click``).
"""

from __future__ import annotations

import ast
import inspect
import sys
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

# The packages whose messages people read (tests, bench and scripts are for developers).
SOURCE_PACKAGES = (
    "access",
    "api",
    "archive_export",
    "catalog",
    "compliance",
    "config",
    "formats",
    "ingest",
    "liuhen",
    "storage",
    "web",
)
COMMAND_DECORATORS = {"command", "group"}


@dataclass(frozen=True)
class Message:
    msgid: str
    plural: str | None
    where: str  # "liuhen/cli.py:120"


def project_sources() -> list[Path]:
    files: list[Path] = []
    for package in SOURCE_PACKAGES:
        folder = ROOT / package
        if folder.is_dir():
            files += [p for p in sorted(folder.rglob("*.py")) if "migrations" not in p.parts]
    return files


def extract_file(path: Path) -> Iterator[Message]:
    tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
    where = str(path.relative_to(ROOT)) if path.is_relative_to(ROOT) else str(path)
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            yield from _from_call(node, where)
        elif isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and _is_command(node):
            doc = ast.get_docstring(node, clean=False)
            if doc:
                text = inspect.cleandoc(doc).partition("\f")[0].strip()
                if text:
                    yield Message(text, None, f"{where}:{node.lineno}")


def _from_call(node: ast.Call, where: str) -> Iterator[Message]:
    name = (
        node.func.id
        if isinstance(node.func, ast.Name)
        else (node.func.attr if isinstance(node.func, ast.Attribute) else "")
    )
    at = f"{where}:{node.lineno}"
    literal = [
        a.value if isinstance(a, ast.Constant) and isinstance(a.value, str) else None
        for a in node.args
    ]
    if name in {"_", "N_", "gettext"} and literal and literal[0]:
        yield Message(literal[0], None, at)
    elif name == "ngettext" and len(literal) >= 2 and literal[0] and literal[1]:
        yield Message(literal[0], literal[1], at)
    for kw in node.keywords:
        value = kw.value.value if isinstance(kw.value, ast.Constant) else None
        if kw.arg in {"help", "short_help", "epilog"} and isinstance(value, str) and value.strip():
            yield Message(value, None, at)


def _is_command(node: ast.FunctionDef | ast.AsyncFunctionDef) -> bool:
    for deco in node.decorator_list:
        target = deco.func if isinstance(deco, ast.Call) else deco
        if isinstance(target, ast.Attribute) and target.attr in COMMAND_DECORATORS:
            return True
    return False


def click_messages() -> list[Message]:
    """Click's own messages (``_("Usage:")`` and friends) from the installed click."""
    import click

    folder = Path(click.__file__).parent
    found: list[Message] = []
    for path in sorted(folder.glob("*.py")):
        for m in extract_file(path):
            found.append(
                Message(m.msgid, m.plural, f"click/{path.name}:{m.where.rsplit(':', 1)[1]}")
            )
    return found


def all_messages(paths: Iterable[Path] | None = None) -> dict[str, Message]:
    """Every message by msgid (the first place it is used)."""
    messages: dict[str, Message] = {}
    sources = list(paths) if paths is not None else project_sources()
    for path in sources:
        for m in extract_file(path):
            messages.setdefault(m.msgid, m)
    if paths is None:
        for m in click_messages():
            messages.setdefault(m.msgid, m)
    return messages


def translations() -> dict[str, tuple[str, list[str]]]:
    """msgid → (area, translations) over every area of the Chinese catalog (fuzzy and
    empty translations count as missing)."""
    from babel.messages.pofile import read_po

    from config.i18n import catalog_parts

    found: dict[str, tuple[str, list[str]]] = {}
    for po in catalog_parts():
        with po.open("rb") as fh:
            catalog = read_po(fh, locale="zh_CN")
        for entry in catalog:
            if not entry.id or entry.fuzzy:
                continue
            msgid = entry.id if isinstance(entry.id, str) else entry.id[0]
            strings = [entry.string] if isinstance(entry.string, str) else list(entry.string)
            if all(s for s in strings):
                found.setdefault(msgid, (po.stem, strings))
    return found


def missing(paths: Iterable[Path] | None = None) -> list[Message]:
    have = translations()
    return [m for m in all_messages(paths).values() if m.msgid not in have]


def add_missing(area: str, paths: list[Path]) -> int:
    from babel.messages.catalog import Catalog
    from babel.messages.pofile import read_po, write_po

    from config.i18n import DOMAIN_DIR

    po = DOMAIN_DIR / f"{area}.po"
    if po.exists():
        with po.open("rb") as fh:
            catalog = read_po(fh, locale="zh_CN")
    else:
        DOMAIN_DIR.mkdir(parents=True, exist_ok=True)
        catalog = Catalog(locale="zh_CN", domain=area, project="liuhen")
    todo = missing(paths)
    for m in todo:
        if m.msgid in catalog:
            continue
        file, line = m.where.rsplit(":", 1)
        msgid: str | tuple[str, str] = (m.msgid, m.plural) if m.plural else m.msgid
        catalog.add(msgid, string=("", "") if m.plural else "", locations=[(file, int(line))])
    with po.open("wb") as fh:
        write_po(fh, catalog, width=100, omit_header=False, sort_output=False)
    return len(todo)


def compile_all() -> None:
    from config.i18n import catalog_parts, compile_po

    for po in catalog_parts():
        po.with_suffix(".mo").write_bytes(compile_po(po))


def main(argv: list[str]) -> int:
    if not argv:
        print(__doc__)
        return 2
    command, args = argv[0], argv[1:]
    if command == "missing":
        todo = missing([Path(a).resolve() for a in args] if args else None)
        for m in todo:
            print(f"{m.where}: {m.msgid!r}")
        print(f"{len(todo)} message(s) without a Chinese translation", file=sys.stderr)
        return 1 if todo else 0
    if command == "add-missing" and len(args) >= 2:
        n = add_missing(args[0], [Path(a).resolve() for a in args[1:]])
        print(f"{n} message(s) added to {args[0]}.po; translate them (msgstr)")
        return 0
    if command == "compile":
        compile_all()
        return 0
    if command == "check":
        todo = missing()
        for m in todo:
            print(f"{m.where}: {m.msgid!r}")
        return 1 if todo else 0
    print(__doc__)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
