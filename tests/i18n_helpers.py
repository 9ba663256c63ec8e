"""Checks that what a person reads is in their language.

:func:`english_leftovers` finds lines of output that still read as English prose (three
or more English words in a row) in output that should be Chinese: a message someone
forgot to pass through the catalog. Identifiers (serials, file names, hashes, options,
standard names such as SHA-256, BagIt, JSON) are not prose and are ignored."""

from __future__ import annotations

import re

# Words that stay as they are in Chinese text: names of standards, formats and tools.
KEPT = {
    "bagit",
    "json",
    "csv",
    "sha",
    "sm3",
    "sha-256",
    "sha256",
    "sha512",
    "pdf",
    "html",
    "mp4",
    "mov",
    "jpeg",
    "heif",
    "heic",
    "wav",
    "ffmpeg",
    "ffprobe",
    "liuhen",
    "utc",
    "cst",
    "iso",
    "s3",
    "ceph",
    "rgw",
    "postgresql",
    "sqlite",
    "tar",
    "xxh3",
    "ok",
    "id",
    "url",
    "tmux",
    "da/t",
    "gb/t",
    "totp",
    "api",
    "http",
    "https",
}
_WORD = re.compile(r"(?<![\w./\\-])[A-Za-z]{2,}(?![\w./\\-])")
_CODE = re.compile(r"`[^`]*`|'[^']*'|\"[^\"]*\"|--[a-z][a-z-]*|\S+[/\\.]\S+|\b[a-z]+_[a-z_]+\b")


def english_leftovers(text: str, *, run: int = 3) -> list[str]:
    """Lines with ``run`` or more consecutive English words outside quotes and paths."""
    bad: list[str] = []
    for line in text.splitlines():
        stripped = _CODE.sub(" ", line)
        words = [w for w in _WORD.findall(stripped) if w.lower() not in KEPT]
        if len(words) < run:
            continue
        # consecutive: separated only by spaces and light punctuation
        if re.search(rf"(?:[A-Za-z]{{2,}}[ ,;:()]+){{{run - 1}}}[A-Za-z]{{2,}}", stripped):
            bad.append(line)
    return bad


def assert_chinese(text: str) -> None:
    leftovers = english_leftovers(text)
    assert not leftovers, "untranslated English in Chinese output:\n" + "\n".join(leftovers)
