"""`export`, `export list/show`, `verify` and `four-properties` as their users read them:
in Chinese by default, in English with --lang en; the hand-over list opens in Excel on a
Chinese Windows desktop; mistakes (not a bag, a missing --html folder, empty recommended
fields) are said plainly; at 80 columns nothing a person compares is cut."""

from __future__ import annotations

import csv
import io
import json
import os
import re
import shutil
import sys
import tempfile
from collections.abc import Iterator
from html import unescape
from pathlib import Path

import pytest

from config import i18n
from tests.cli_helpers import Result, run_cli
from tests.i18n_helpers import assert_chinese
from tests.test_export import CASE, dock_and_derive, make_case
from tests.tmux_helpers import assert_whole, screen


@pytest.fixture
def chinese(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setenv("LIUHEN_LANG", "zh")
    i18n.set_language(None)
    yield
    monkeypatch.setenv("LIUHEN_LANG", "en")
    i18n.set_language(None)


def _station(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, *, case: bool = True) -> Path:
    """A docked recorder (two audio recordings), optionally in a case; the CLI's home."""
    catalog_url = f"sqlite:///{tmp_path / 'catalog.sqlite3'}"
    d = dock_and_derive(
        tmp_path,
        catalog_url=catalog_url,
        h264=0,
        h265=0,
        wav=2,
        jpeg=0,
        truncated=0,
        segments=0,
        with_device_info=False,
    )
    if case:
        make_case(d.app)
    monkeypatch.setenv("LIUHEN_HOME", str(tmp_path / "data"))
    monkeypatch.setenv("LIUHEN_CATALOG_URL", catalog_url)
    return tmp_path


def _ok(r: Result) -> Result:
    assert r.code == 0, r.out + r.err
    return r


def test_export_and_verify_speak_chinese_by_default(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    chinese: None,
) -> None:
    _station(tmp_path, monkeypatch)
    bag = tmp_path / "out" / "bag"
    r = _ok(run_cli(capsys, "export", "--case", CASE, "--out", str(bag)))
    assert "导出" in r.out and "四性检测通过" in r.out
    assert_chinese(r.out + r.err)

    r = _ok(run_cli(capsys, "export", "list"))
    assert "经办人" in r.out and "+08:00" in r.out and CASE in r.out
    assert_chinese(r.out)
    uid = json.loads(run_cli(capsys, "export", "list", "--json").out)[0]["export"]
    r = _ok(run_cli(capsys, "export", "show", uid[:8]))
    assert "移交回执" in r.out and "签名摘要" in r.out
    assert_chinese(r.out)

    r = _ok(run_cli(capsys, "verify", str(bag)))
    assert "有效" in r.out and "签名：有效" in r.out
    assert_chinese(r.out)
    r = _ok(run_cli(capsys, "four-properties", str(bag)))
    assert "真实性" in r.out and "完整性" in r.out
    assert_chinese(r.out)

    r = _ok(run_cli(capsys, "verify", "--store"))
    assert "存储固定性核验" in r.out
    assert_chinese(r.out)
    original = next((bag / "data" / "originals").rglob("*.WAV"))
    r = _ok(run_cli(capsys, "verify", str(original)))
    assert "音视频记录" in r.out and "拍摄时间" in r.out and "+08:00" in r.out
    assert_chinese(r.out)

    # A damaged payload file: the finding is told in Chinese, the bag named whole.
    victim = next((bag / "data" / "originals").rglob("*.*"))
    victim.write_bytes(victim.read_bytes()[:-1] + b"\0")
    r = run_cli(capsys, "verify", str(bag))
    assert r.code == 1
    assert "无效" in r.out and "checksum-mismatch" in r.out and str(bag) in r.out
    assert_chinese(r.out)
    # Programs read the same finding in English whatever the language.
    report = json.loads(run_cli(capsys, "verify", str(bag), "--json").out)
    assert any("says" in f["message"] for f in report["errors"] + report.get("findings", []))


def test_english_on_request(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    _station(tmp_path, monkeypatch)
    bag = tmp_path / "out" / "bag"
    r = _ok(run_cli(capsys, "--lang", "en", "export", "--case", CASE, "--out", str(bag)))
    assert "recordings" in r.out and "four-properties check pass" in r.out
    r = _ok(run_cli(capsys, "--lang", "en", "export", "list"))
    assert "signed digest" in r.out and "+08:00" in r.out
    r = _ok(run_cli(capsys, "--lang", "en", "verify", str(bag)))
    assert "valid:" in r.out and "signature: valid" in r.out


def test_the_hand_over_list_opens_in_excel(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    _station(tmp_path, monkeypatch)
    bag = tmp_path / "out" / "bag"
    _ok(run_cli(capsys, "export", "--case", CASE, "--out", str(bag)))
    raw = (bag / "data" / "metadata" / "handover.csv").read_bytes()
    # Excel on a Chinese Windows reads UTF-8 only after a byte-order mark; CRLF lines.
    assert raw.startswith(b"\xef\xbb\xbf")
    assert raw.count(b"\r\n") == raw.count(b"\n") > 2
    rows = list(csv.reader(io.StringIO(raw.decode("utf-8-sig"), newline="")))
    assert rows[0] == ["文件路径", "字节数", "SHA-256", "SM3"]
    assert rows[-1][0] == "合计" and int(rows[-1][2]) == len(rows) - 2
    assert all(r[0].startswith("data/") and int(r[1]) > 0 for r in rows[1:-1])
    # The list is payload: its manifests name these very bytes, and the bag verifies.
    _ok(run_cli(capsys, "verify", str(bag)))
    _ok(run_cli(capsys, "four-properties", str(bag)))


def test_four_properties_mistakes_are_cheap(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    chinese: None,
) -> None:
    _station(tmp_path, monkeypatch, case=False)
    # Not a bag: said so, exit 2 as `verify` does, for a plain file and a plain folder.
    plain = tmp_path / "notes.txt"
    plain.write_text("not a bag")
    for target in (plain, tmp_path / "dock"):
        r = run_cli(capsys, "four-properties", str(target))
        assert r.code == 2 and "不是数据包" in r.err and str(target) in r.err, r.err
    assert run_cli(capsys, "verify", str(tmp_path / "dock")).code == 2

    # Recordings in no case: place and security class are empty. A warning naming the
    # records and what fills the field, not a failure.
    bag = tmp_path / "out" / "range"
    r = run_cli(
        capsys,
        "export",
        *("--from", "2000-01-01", "--to", "2100-01-01", "--retention", "10年"),
        *("--out", str(bag)),
    )
    assert r.code == 0, r.err
    # Exported by a Chinese reader: the bag's machine-readable report stays English, its
    # HTML report (for people) is bilingual, as it would be from an English reader.
    inside = json.loads((bag / "data/metadata/four-properties.json").read_text("utf-8"))
    problems = [
        p for prop in inside["properties"].values() for c in prop["checks"] for p in c["problems"]
    ]
    assert any(p.startswith("recommended field 'place' is empty") for p in problems)
    assert not any("建议项" in p for p in problems)
    inside_html = unescape((bag / "data/metadata/four-properties.html").read_text("utf-8"))
    assert "建议项 'place'" in inside_html and "recommended field 'place'" in inside_html
    html = tmp_path / "reports" / "new" / "four-properties.html"
    r = run_cli(capsys, "four-properties", str(bag), "--html", str(html))
    assert r.code == 0, r.out
    assert "建议项 'security-class'" in r.out and "liuhen export --security-class" in r.out
    # Each record named by its number and its original's file name.
    assert "[警告]" in r.out and re.search(r"\b1 \(A123456_\S+\.WAV\)", r.out)
    assert_chinese(r.out)
    # --html into a folder that did not exist: created; the report is bilingual.
    page = unescape(html.read_text("utf-8"))
    assert "建议项 'security-class'" in page and "recommended field 'security-class'" in page
    assert "+08:00" in page
    r = run_cli(capsys, "--lang", "en", "four-properties", str(bag))
    assert "recommended field 'security-class' is empty" in r.out and "[warning]" in r.out


def test_views_at_80_columns(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    _station(tmp_path, monkeypatch)
    short = Path(tempfile.mkdtemp(prefix="lh", dir="/tmp"))
    try:
        bag = short / "移交" / "bag"
        bag.parent.mkdir()
        _ok(run_cli(capsys, "export", "--case", CASE, "--out", str(bag)))
        receipt = json.loads(run_cli(capsys, "export", "list", "--json").out)[0]
        shown = json.loads(run_cli(capsys, "export", "show", receipt["export"], "--json").out)
        env = {k: os.environ[k] for k in ("LIUHEN_HOME", "LIUHEN_CATALOG_URL")}
        env["LIUHEN_LANG"] = "zh"
        liuhen = [sys.executable, "-m", "liuhen"]
        digest = receipt["bags"][0]["signed_digest"]
        text = screen([*liuhen, "export", "list"], width=80, env=env)
        assert_whole(text, receipt["export"], str(bag), digest, CASE)
        text = screen([*liuhen, "export", "show", receipt["export"]], width=80, env=env)
        names = [i["name"] for i in shown["items"]] + [i["path"] for i in shown["items"]]
        assert_whole(text, str(bag), digest, shown["event"]["event_hash"], *names)
        text = screen([*liuhen, "verify", str(bag)], width=80, env=env)
        assert_whole(text, str(bag), "有效")
    finally:
        shutil.rmtree(short)
