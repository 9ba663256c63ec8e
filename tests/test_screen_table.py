"""liuhen.screen_table, the one module that lays a table out at the terminal's width:
Chinese text counts two cells a character, nothing is drawn past 80 columns, identifiers
are never cut or folded, and a table that cannot fit gives way as its caller chose
(optional columns dropped, or rows as blocks)."""

from __future__ import annotations

import io

from rich.console import Console

from liuhen.screen_table import Column, cells, fit_table, print_rows

CASE = "沪徐市监处〔2026〕000123号"
TITLE = "无照经营食品销售案（徐家汇商圈专项整治，涉及多家门店及网络平台）"
UNIT = "上海市徐汇区市场监督管理局执法大队第三中队"
SERIAL = "DSJ-A8-2026-000123456"


def _drawn(width: int, draw: object) -> list[str]:
    console = Console(width=width, file=io.StringIO(), color_system=None, record=True)
    if callable(draw):
        draw(console)
    else:
        console.print(draw)
    return console.export_text().splitlines()


def test_a_chinese_character_is_two_cells() -> None:
    assert cells("案号") == 4 and cells("A1") == 2 and cells(CASE) == 2 * 8 + 10


def test_a_list_drops_its_least_important_columns_to_fit_80() -> None:
    columns = [
        Column("案号", whole=True),
        Column("题名", fold_width=16),
        Column("单位", drop=2, fold_width=12),
        Column("记录仪", whole=True, drop=1),
        Column("状态", whole=True),
    ]
    rows = [
        [CASE, TITLE, UNIT, SERIAL, "办理中"],
        [CASE.replace("123", "124"), TITLE, UNIT, "", "已结"],
    ]
    lines = _drawn(80, fit_table(columns, rows, 80))
    assert max(cells(line) for line in lines) <= 80, "\n".join(lines)
    text = "\n".join(lines)
    # The case numbers whole on a line, each once; the title folds over several lines.
    assert sum(CASE in line for line in lines) == 1
    assert "办理中" in text and "已结" in text
    assert TITLE not in text and TITLE[:4] in text
    # The unit (drop 2) went first, and then the rest fit: the serial (drop 1) stayed.
    assert "单位" not in text and UNIT[:4] not in text
    assert SERIAL in text
    wide = "\n".join(_drawn(160, fit_table(columns, rows, 160)))
    assert "单位" in wide and UNIT[:4] in wide


def test_an_optional_column_with_nothing_in_it_is_left_out() -> None:
    columns = [Column("案号", whole=True), Column("密级", drop=1)]
    lines = _drawn(80, fit_table(columns, [[CASE, "—"]], 80))
    assert "密级" not in "\n".join(lines)


def test_rows_that_fit_are_a_table() -> None:
    lines = _drawn(
        80, lambda c: print_rows(c, ["站点", "状态"], [["station-01", "在线"]], title="站点")
    )
    assert any("station-01" in line and "在线" in line for line in lines), lines


def test_rows_too_wide_for_80_are_blocks_with_their_keys_whole() -> None:
    heads = ["站点", "单位", "题名"]
    rows = [[f"{SERIAL}-{n}", UNIT, TITLE] for n in range(2)]
    lines = _drawn(80, lambda c: print_rows(c, heads, rows, keys=(0,)))
    assert max(cells(line) for line in lines) <= 80, "\n".join(lines)
    for key, *_rest in rows:
        assert any(line.strip() == key for line in lines), lines  # a line of its own
    assert sum(line.strip().startswith("单位: ") for line in lines) == 2
    # The same rows at 200 columns: one table line each.
    wide = _drawn(200, lambda c: print_rows(c, heads, rows, keys=(0,)))
    assert any(rows[0][0] in line and UNIT in line and TITLE in line for line in wide), wide


def test_a_cell_is_plain_text_not_markup() -> None:
    lines = _drawn(80, fit_table([Column("题名")], [["[内部] 案件"]], 80))
    assert any("[内部] 案件" in line for line in lines), lines


def test_a_summary_is_clipped_by_cells_not_characters() -> None:
    from liuhen.screen_table import clip

    assert clip("导入设备清单", 12) == "导入设备清单"  # 12 cells: whole
    cut = clip("导入设备清单并登记分配", 12)
    assert cut == "导入设备清…" and cells(cut) <= 12
    assert clip("Import devices and assignments", 12) == "Import devi…"
