"""Each bag is judged by the rules of the BagIt version it declares.

The drafts before RFC 8493 (0.93–0.97, draft-kunze-bagit-00 … -13) allowed what 1.0 no
longer does: "a label, a colon, and a value, each separated by optional whitespace",
every metadata element "MAY be repeated", an asterisk before a manifest path, and (the
later 0.97 drafts) percent-encoded line breaks in paths. Such bags must pass; the same
lines in a 1.0 bag are errors. A byte-order mark in bagit.txt is an error in every
version. Names that clash on Windows or macOS are warned about.
"""

from __future__ import annotations

import codecs
import hashlib
from pathlib import Path

import pytest

from archive_export.bagverify import BagReport, verify_bag
from tests.cli_helpers import run_cli

FILES = {"data/one.txt": b"one\n", "data/dir/two 2.txt": b"two\n"}


def _bag(
    root: Path,
    version: str,
    files: dict[str, bytes],
    *,
    info: str,
    manifest: list[str] | None = None,
    declaration: bytes | None = None,
    newline: str = "\n",
) -> Path:
    root.mkdir()
    (root / "bagit.txt").write_bytes(
        declaration
        if declaration is not None
        else f"BagIt-Version: {version}\nTag-File-Character-Encoding: UTF-8\n".encode()
    )
    for rel, data in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_bytes(data)
    info_name = "package-info.txt" if version in {"0.93", "0.94", "0.95"} else "bag-info.txt"
    (root / info_name).write_bytes(info.replace("\n", newline).encode())
    lines = (
        manifest
        if manifest is not None
        else [f"{hashlib.md5(d).hexdigest()}  {rel}" for rel, d in files.items()]
    )
    (root / "manifest-md5.txt").write_bytes("".join(x + newline for x in lines).encode())
    return root


def _oxum(files: dict[str, bytes]) -> str:
    return f"{sum(len(d) for d in files.values())}.{len(files)}"


def _described(report: BagReport) -> list[str]:
    return [f.describe() for f in report.findings]


LOOSE_INFO = (
    "Source-Organization:Somewhere\n"  # no space after the colon
    "Contact-Name : A. Person\n"  # whitespace before the colon
    "Payload-Oxum: {oxum}\n"
    "Payload-Oxum:\t{oxum}\n"  # repeated (a tab after the colon)
    "Bagging-Date: 2009-06-24\n"
)


@pytest.mark.parametrize("version", ["0.93", "0.95", "0.96", "0.97"])
@pytest.mark.parametrize("newline", ["\n", "\r\n", "\r"])
def test_what_old_drafts_allowed_passes(tmp_path: Path, version: str, newline: str) -> None:
    manifest = [
        f"{hashlib.md5(FILES['data/one.txt']).hexdigest()} *data/one.txt",  # md5sum -b
        f"{hashlib.md5(FILES['data/dir/two 2.txt']).hexdigest()}\tdata/dir/two 2.txt",
    ]
    root = _bag(
        tmp_path / "b",
        version,
        FILES,
        info=LOOSE_INFO.format(oxum=_oxum(FILES)),
        manifest=manifest,
        newline=newline,
        declaration=f"BagIt-Version:{version}\nTag-File-Character-Encoding:  UTF-8\n".encode(),
    )
    report = verify_bag(root)
    assert report.ok and not report.warnings, _described(report)
    assert report.version == version


def test_the_same_lines_are_errors_in_1_0(tmp_path: Path) -> None:
    root = _bag(
        tmp_path / "b",
        "1.0",
        FILES,
        info=LOOSE_INFO.format(oxum=_oxum(FILES)),
        declaration=b"BagIt-Version:1.0\nTag-File-Character-Encoding: UTF-8\n",
    )
    report = verify_bag(root)
    details = [f.detail for f in report.errors]
    assert {f.kind for f in report.errors} == {"bag-info", "bagit-txt"}, _described(report)
    assert any("'Contact-Name '" in d for d in details)
    assert any("'payload-oxum' appears 2 times" in d for d in details)
    assert any("one space after the colon" in d for d in details)


def test_old_bag_with_two_different_oxums_is_checked_against_both(tmp_path: Path) -> None:
    info = f"Payload-Oxum: {_oxum(FILES)}\nPayload-Oxum: 999.9\n"
    report = verify_bag(_bag(tmp_path / "b", "0.97", FILES, info=info))
    assert [(f.kind, f.path) for f in report.errors] == [("oxum-mismatch", "bag-info.txt")]
    assert any("different values" in f.detail for f in report.warnings)


def test_0_97_paths_percent_encoded_or_literal(tmp_path: Path) -> None:
    """The later 0.97 drafts percent-encoded CR and LF in paths; the earlier wrote names
    as they were: both kinds of 0.97 bag pass, and 0.96 keeps '%0A' literal."""
    files = {"data/line\nbreak.txt": b"a", "data/100%25 literal.txt": b"b"}
    manifest = [
        f"{hashlib.md5(b'a').hexdigest()}  data/line%0Abreak.txt",
        f"{hashlib.md5(b'b').hexdigest()}  data/100%25 literal.txt",
    ]
    report = verify_bag(_bag(tmp_path / "v97", "0.97", files, info="", manifest=manifest))
    assert report.ok and not report.warnings, _described(report)
    old = verify_bag(_bag(tmp_path / "v96", "0.96", files, info="", manifest=manifest))
    assert ("missing-file", "data/line%0Abreak.txt") in {(f.kind, f.path) for f in old.errors}


@pytest.mark.parametrize("version", ["0.93", "0.96", "0.97", "1.0"])
def test_byte_order_mark_in_bagit_txt_is_an_error_in_every_version(
    tmp_path: Path, version: str, capsys: pytest.CaptureFixture[str]
) -> None:
    declaration = (
        codecs.BOM_UTF8
        + (f"BagIt-Version: {version}\nTag-File-Character-Encoding: UTF-8\n").encode()
    )
    root = _bag(
        tmp_path / "b",
        version,
        FILES,
        info=f"Payload-Oxum: {_oxum(FILES)}\n",
        declaration=declaration,
    )
    report = verify_bag(root)
    (bom,) = [f for f in report.errors if f.path == "bagit.txt"]
    assert bom.kind == "bagit-txt" and "byte-order mark" in bom.detail
    result = run_cli(capsys, "verify", str(root))
    assert result.code == 1 and "byte-order mark" in result.out


def test_names_that_clash_on_windows_are_warned_about(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    files = {
        "data/Report.txt": b"1",
        "data/report.TXT": b"2",
        "data/back\\slash.txt": b"3",
        "data/Caf\u00e9.txt": b"4",
        "data/cafe\u0301.TXT": b"5",
    }
    root = _bag(tmp_path / "b", "1.0", files, info=f"Payload-Oxum: {_oxum(files)}\n")
    report = verify_bag(root)
    assert report.ok, _described(report)
    warned = {(f.kind, f.path) for f in report.warnings}
    assert {("case-clash", "data/report.TXT"), ("case-clash", "data/Report.txt")} & warned
    assert ("backslash-name", "data/back\\slash.txt") in warned
    # Case and Unicode normalisation together: 'Café.txt' and 'cafe\u0301.TXT'.
    assert sum(k == "case-clash" for k, _ in warned) == 2, warned
    result = run_cli(capsys, "verify", str(root))
    assert result.code == 0
    assert "letter case" in result.out and "backslash" in result.out
