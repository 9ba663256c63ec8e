"""Every message a person reads has its Chinese translation, and the translations keep
what the program fills in: a missing translation, a lost ``{name}`` or a lost markup tag
fails here, naming the message and where the code uses it."""

from __future__ import annotations

import importlib.util
import re
import subprocess
import sys
from pathlib import Path

import pytest

from config.i18n import catalog_parts, compile_po

ROOT = Path(__file__).resolve().parent.parent
_spec = importlib.util.spec_from_file_location("i18n_tool", ROOT / "scripts" / "i18n.py")
assert _spec and _spec.loader
i18n_tool = importlib.util.module_from_spec(_spec)
sys.modules["i18n_tool"] = i18n_tool  # dataclasses look their module up there
_spec.loader.exec_module(i18n_tool)

_FIELD = re.compile(r"\{[^{}]*\}|%\([a-z_]+\)[sdr]|%[sdr]")
_MARKUP = re.compile(r"\[/?[a-z ]+\]")


def test_every_message_has_a_chinese_translation() -> None:
    missing = i18n_tool.missing()
    listing = "\n".join(f"  {m.where}: {m.msgid!r}" for m in missing[:60])
    assert not missing, (
        f"{len(missing)} message(s) have no Chinese translation (add them with "
        f"`python scripts/i18n.py add-missing AREA FILE` and fill in msgstr):\n{listing}"
    )


def test_translations_keep_fields_and_markup() -> None:
    problems = []
    for msgid, (area, strings) in i18n_tool.translations().items():
        for text in strings:
            if sorted(_FIELD.findall(msgid)) != sorted(_FIELD.findall(text)):
                problems.append(f"{area}.po {msgid!r}: fields {_FIELD.findall(text)}")
            if sorted(_MARKUP.findall(msgid)) != sorted(_MARKUP.findall(text)):
                problems.append(f"{area}.po {msgid!r}: markup {_MARKUP.findall(text)}")
    assert not problems, "\n".join(problems)


def test_one_translation_per_message_across_areas() -> None:
    from babel.messages.pofile import read_po

    seen: dict[str, tuple[str, str]] = {}
    clashes = []
    for po in catalog_parts():
        with po.open("rb") as fh:
            for entry in read_po(fh, locale="zh_CN"):
                if not entry.id or not isinstance(entry.id, str) or not entry.string:
                    continue
                if entry.id in seen and seen[entry.id][1] != entry.string:
                    clashes.append(f"{entry.id!r}: {seen[entry.id][0]} and {po.stem} differ")
                seen.setdefault(entry.id, (po.stem, str(entry.string)))
    assert not clashes, "\n".join(clashes)


@pytest.mark.parametrize("po", catalog_parts(), ids=lambda p: p.stem)
def test_each_area_compiles(po: Path) -> None:
    assert compile_po(po)


def test_help_is_chinese_by_default_and_english_on_request() -> None:
    def run(*args: str, env: dict[str, str] | None = None) -> str:
        import os

        full = {k: v for k, v in os.environ.items() if k != "LIUHEN_LANG"} | (env or {})
        result = subprocess.run(
            [sys.executable, "-m", "liuhen", *args], capture_output=True, text=True, env=full
        )
        assert result.returncode == 0, result.stderr
        return result.stdout

    zh = run("--help")
    assert "用法" in zh or "选项" in zh
    en = run("--lang", "en", "--help")
    assert "Usage:" in en and "Options:" in en
    assert run("--help", env={"LIUHEN_LANG": "en"}) == en
