"""`case list`, `case show`, `device list` and `retention sweep` on a real terminal of 80
and 120 columns (tmux): case numbers, serials, 警号 and file names are shown whole on one
line, long Chinese titles fold instead, and nothing runs past the screen's edge."""

from __future__ import annotations

import itertools
import re
import sys
from typing import Any

import pytest

from tests.case_helpers import cst, make_recording
from tests.cli_helpers import run_cli
from tests.i18n_helpers import assert_chinese
from tests.tmux_helpers import assert_whole, screen, widest_line

NUMBERS = ("沪徐市监处〔2026〕000123号", "沪徐市监罚〔2026〕000124号")
SERIAL = "DSJ-A8-2026-000123456"
OFFICERS = ("0102030405", "040506")
TITLE = "无照经营食品销售案（徐家汇商圈专项整治，涉及多家门店及网络平台）"
UNIT = "上海市徐汇区市场监督管理局执法大队第三中队"

pytestmark = pytest.mark.parametrize("catalog_url", ["sqlite"], indirect=True)


def liuhen(*args: str) -> list[str]:
    return [sys.executable, "-m", "liuhen", *args]


def _shown(argv: list[str], width: int) -> str:
    """The screen in Chinese (the default), checked for width and English leftovers."""
    text = screen(argv, width=width, env={"LIUHEN_LANG": "zh"})
    assert widest_line(text) <= width, text
    # The terminal wraps what runs past its edge: a table's rule would then go on, on
    # the next line.
    lines = text.splitlines()
    for rule, after in itertools.pairwise(lines):
        if rule and set(rule) == {"─"}:
            assert not after.startswith("─"), f"wider than {width} columns:\n{text}"
    assert_chinese(text)
    return text


@pytest.fixture
def cases(app: Any, capsys: pytest.CaptureFixture[str]) -> dict[str, Any]:
    """Two cases with long numbers, titles and units, an action of two officers, and a
    recording attached by rule, its file named after the long serial."""
    for number in NUMBERS:
        r = run_cli(
            capsys,
            "case",
            "create",
            number,
            "--title",
            TITLE,
            "--unit",
            UNIT,
            "--retention",
            "30年",
            "--security-class",
            "内部",
        )
        assert r.code == 0, r.err
    run_cli(capsys, "device", "add", SERIAL, "--model", "DSJ-V9", "--unit", UNIT)
    for officer, start in zip(OFFICERS, ("2026-12-01 07:00", "2026-12-02 07:00"), strict=True):
        r = run_cli(capsys, "device", "assign", SERIAL, officer, "--start", start)
        assert r.code == 0, r.err
    rec = make_recording(
        app, serial=SERIAL, docking_officer=OFFICERS[1], start=cst(2026, 12, 2, 7, 40)
    )
    r = run_cli(
        capsys,
        "case",
        "action",
        NUMBERS[0],
        "A-2026-000123-01",
        "--officer",
        OFFICERS[0],
        "--officer",
        OFFICERS[1],
        "--start",
        "2026-12-02 07:30",
        "--end",
        "2026-12-02 08:30",
        "--place",
        "漕溪北路88号东方商厦一楼",
    )
    assert r.code == 0 and "1" in r.out, r.err
    return {"recording": rec, "name": _name(app, rec)}


def _name(app: Any, rec_id: int) -> str:
    from catalog.models import Recording

    with app.catalog.session() as s:
        rec = s.get(Recording, rec_id)
        assert rec is not None
        return str(rec.original_name)


@pytest.mark.parametrize("width", [80, 120])
def test_case_list_keeps_case_numbers_whole(cases: dict[str, Any], width: int) -> None:
    text = _shown(liuhen("case", "list"), width)
    assert_whole(text, *NUMBERS, "办理中", "30年")
    assert "案号" in text and "题名" in text
    if width == 120:
        assert_whole(text, "内部")


@pytest.mark.parametrize("width", [80, 120])
def test_case_show_keeps_identifiers_whole(cases: dict[str, Any], width: int) -> None:
    text = _shown(liuhen("case", "show", NUMBERS[0]), width)
    assert_whole(
        text,
        NUMBERS[0],
        "A-2026-000123-01",
        "2026-12-02 07:30–08:30",
        *OFFICERS,
        cases["name"],
        "2026-12-02 07:40",
    )
    # Each digest whole on a line of its own: what an auditor copies.
    digests = [line.split()[-1] for line in text.splitlines() if "sha256 " in line]
    assert len(digests) == 1 and len(digests[0]) == 64


@pytest.mark.parametrize("width", [80, 120])
def test_device_list_keeps_serials_and_officer_numbers_whole(
    cases: dict[str, Any], width: int
) -> None:
    text = _shown(liuhen("device", "list"), width)
    assert_whole(text, SERIAL, *OFFICERS, "2026-12-01 07:00", "2026-12-02 07:00")
    if width == 120:
        assert_whole(text, "DSJ-V9")


@pytest.mark.parametrize("width", [80, 120])
def test_retention_sweep_keeps_file_names_whole(app: Any, width: int) -> None:
    names = [
        _name(
            app,
            make_recording(
                app, serial=SERIAL, docking_officer=OFFICERS[0], start=cst(2025, 1, day, 9, 5)
            ),
        )
        for day in (10, 11)
    ]
    text = _shown(liuhen("retention", "sweep"), width)
    assert_whole(text, *names)
    assert "试运行" in text
    [row] = [line.split() for line in text.splitlines() if names[0] in line]
    # Each name with the day and minute it was kept until (the unattached minimum).
    assert re.fullmatch(r"2025-\d\d-\d\d", row[-2]) and re.fullmatch(r"\d\d:\d\d", row[-1])
    if width == 120:  # room for the digest prefix too
        assert re.fullmatch(r"[0-9a-f]{16}", row[2]), row
