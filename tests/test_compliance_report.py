"""The self-inspection report: HTML and PDF in Chinese with charts, the survey, the review
and its rectifications; the PDF renders (pdftoppm) with its CJK text (pdftotext); a
flipped byte in any signed file fails `liuhen verify`."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from config.i18n import set_language
from tests.cli_helpers import run_cli
from tests.compliance_helpers import World, at
from tests.conftest import service_missing

UNIT = "徐汇区市场监督管理局"
DAY = 86400


def fill(app: Any) -> None:
    with app.catalog.transaction() as s:
        w = World(s, unit=UNIT)
        w.officer("010203", "张三")
        w.officer("040506", "李四")
        w.assign("D1", "010203", at(-30 * DAY))
        w.assign("D2", "040506", at(-30 * DAY))
        w.recording("D1", at(0), at(3600))
        w.action("A-1", ["010203"], at(0), at(3600))
        w.recording("D2", at(DAY), at(DAY + 1200))
        w.action("A-2", ["040506"], at(DAY), at(DAY + 3600))
        w.action("A-3", ["040506"], at(2 * DAY), at(2 * DAY + 600))
        w.docking("D1", at(DAY), clock_offset_s=400, bytes_total=3_000_000_000)


def reader_language(monkeypatch: pytest.MonkeyPatch, lang: str) -> None:
    monkeypatch.setenv("LIUHEN_LANG", lang)
    set_language(None)


def tool(name: str) -> str:
    found = shutil.which(name)
    if found is None:  # fails under CI=true: scripts/setup.sh installs poppler-utils
        service_missing(f"{name} (poppler-utils)")
    assert found is not None
    return found


def make_report(app: Any, capsys: pytest.CaptureFixture[str], out: Path) -> dict[str, Any]:
    fill(app)
    r = run_cli(
        capsys,
        "review",
        "sample",
        "--unit",
        UNIT,
        "--period",
        "2026-11",
        "--count",
        "2",
        "--seed",
        "s",
        "--actor",
        "评查员甲",
        "--json",
    )
    assert r.code == 0, r.err
    first = json.loads(r.out)["actions"][0]["external_id"]
    r = run_cli(
        capsys,
        "review",
        "verdict",
        "1",
        first,
        "--verdict",
        "不完整",
        "--check",
        "全程记录=否",
    )
    assert r.code == 0, r.err
    r = run_cli(capsys, "review", "rectify", "1", "--what", "补录情况说明")
    assert r.code == 0, r.err
    r = run_cli(
        capsys,
        "report",
        "self-inspection",
        "--unit",
        UNIT,
        "--year",
        "2026",
        "--out",
        str(out),
        "--json",
    )
    assert r.code == 0, r.err
    result: dict[str, Any] = json.loads(r.out)
    return result


@pytest.mark.parametrize("catalog_url", ["sqlite"], indirect=True)
def test_report_renders_in_chinese_and_verifies(
    app: Any,
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    reader_language(monkeypatch, "zh")  # the language of the report, as of its messages
    result = make_report(app, capsys, tmp_path / "out")
    files = {k: Path(v) for k, v in result["written"].items()}
    html = files["html"].read_text(encoding="utf-8")
    assert "自查报告" in html and "<svg" in html and "各月执法活动记录情况" in html
    assert "补录情况说明" in html and "音像记录设备摸底" in html and "指标定义" in html
    data = json.loads(files["json"].read_text(encoding="utf-8"))
    assert data["summary"]["units"][0]["actions"] == 3
    assert data["reviews"][0]["actions"][0]["rectification"] == "补录情况说明"

    text = subprocess.run(
        [tool("pdftotext"), str(files["pdf"]), "-"], capture_output=True, check=True
    ).stdout.decode("utf-8")
    assert "执法全过程音像记录自查报告" in text
    assert "音像记录设备摸底" in text and "张三" in text
    png = tmp_path / "page"
    subprocess.run(
        [tool("pdftoppm"), "-png", "-r", "40", "-f", "1", "-l", "1", str(files["pdf"]), str(png)],
        check=True,
    )
    page = next(tmp_path.glob("page*.png"))
    assert _non_blank(page)

    reader_language(monkeypatch, "en")
    r = run_cli(capsys, "verify", str(files["signature"]))
    assert r.code == 0, r.out + r.err
    assert "self-declared" in r.out  # no key ring given: whose key it is stays unproven
    ring = tmp_path / "ring.txt"
    ring.write_text(f"{app.signer.station_id} {app.signer.key_id}\n", encoding="utf-8")
    r = run_cli(capsys, "verify", str(files["signature"]), "--trust", str(ring))
    assert r.code == 0, r.out + r.err
    assert "trusted" in r.out and "verifies" in r.out

    # One flipped byte in the PDF, then in the data JSON: each fails, naming the file.
    for name in ("pdf", "json"):
        original = files[name].read_bytes()
        flipped = bytearray(original)
        flipped[len(flipped) // 2] ^= 0x01
        files[name].write_bytes(bytes(flipped))
        r = run_cli(capsys, "verify", str(files["signature"]), "--json")
        assert r.code == 1
        problems = json.loads(r.out)["problems"]
        assert problems == [
            f"{files[name].name}: content differs from the signed SHA-256 (altered)"
        ]
        files[name].write_bytes(original)
    # An edited signature file (another hash written in) fails its signature.
    sig = json.loads(files["signature"].read_text())
    sig["files"][files["pdf"].name]["size"] += 1
    files["signature"].write_text(json.dumps(sig))
    r = run_cli(capsys, "verify", str(files["signature"]))
    assert r.code == 1 and "signature does not verify" in r.out


def _non_blank(png: Path) -> bool:
    """The page has ink: a PNG decoded with zlib alone (no imaging library needed)."""
    import struct
    import zlib

    data = png.read_bytes()
    pos, idat = 8, b""
    width = height = 0
    while pos < len(data):
        length, kind = struct.unpack(">I4s", data[pos : pos + 8])
        chunk = data[pos + 8 : pos + 8 + length]
        if kind == b"IHDR":
            width, height = struct.unpack(">II", chunk[:8])
        elif kind == b"IDAT":
            idat += chunk
        pos += 12 + length
    raw = zlib.decompress(idat)
    dark = sum(1 for b in raw if b < 128)
    return width > 0 and height > 0 and dark > 1000


@pytest.mark.parametrize("catalog_url", ["sqlite"], indirect=True)
def test_district_summary_across_units(
    app: Any,
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    reader_language(monkeypatch, "zh")
    fill(app)
    with app.catalog.transaction() as s:
        w = World(s, unit="徐汇区城管执法局")
        w.case("沪徐城管〔2026〕9号")
        w.action("B-1", ["070809"], at(0), at(600), case="沪徐城管〔2026〕9号")
    r = run_cli(capsys, "report", "self-inspection", "--year", "2026", "--out", str(tmp_path))
    assert r.code == 0, r.err
    html = (tmp_path / "全区汇总-2026.html").read_text(encoding="utf-8")
    assert "各单位情况" in html and UNIT in html and "徐汇区城管执法局" in html
    data = json.loads((tmp_path / "全区汇总-2026.json").read_text(encoding="utf-8"))
    assert data["summary"]["district"]["actions"] == 4
    r = run_cli(capsys, "verify", str(tmp_path / "全区汇总-2026.sig.json"))
    assert r.code == 0, r.out + r.err


@pytest.mark.parametrize("catalog_url", ["sqlite"], indirect=True)
def test_report_in_english_on_request(
    app: Any, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    # The tests run with LIUHEN_LANG=en: the report a reader of English asked for.
    result = make_report(app, capsys, tmp_path / "out")
    files = {k: Path(v) for k, v in result["written"].items()}
    html = files["html"].read_text(encoding="utf-8")
    assert '<html lang="en">' in html
    assert f"{UNIT} 2026: self-inspection report" in html
    for text in ("Recording of enforcement actions by month", "Equipment survey", "Definitions"):
        assert text in html, text
    assert "Period: 2026-01-01 to 2026-12-31 (Beijing time)" in html
    assert "各月执法活动记录情况" not in html and "指标定义" not in html
    data = json.loads(files["json"].read_text(encoding="utf-8"))
    assert data["language"] == "en" and data["definitions"][0]["term"] == "Action window"
    assert data["generated_at"].endswith("+08:00")
    text = subprocess.run(
        [tool("pdftotext"), str(files["pdf"]), "-"], capture_output=True, check=True
    ).stdout.decode("utf-8")
    assert "self-inspection report" in text and "Equipment survey" in text and "张三" in text
    r = run_cli(capsys, "verify", str(files["signature"]))
    assert r.code == 0, r.out + r.err
