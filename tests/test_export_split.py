"""`liuhen export` never writes a bag that `liuhen verify` refuses for its size: a handover
beyond the verifier's bounds (files in a bag, lines of a custody excerpt) is split into
numbered bags, each of which verifies, with one Bag-Count group and hand-over lists that
add up to the whole export. The bounds are lowered in-process (the same module constants
the verifier and the exporter read) so that a few recordings stand for a district's year."""

from __future__ import annotations

import re
import sys
import tarfile
from pathlib import Path

import bagit
import pytest
from sqlalchemy import select

from archive_export import bagparse, bagview
from archive_export.export import ExportResult
from archive_export.handover import read_handover
from catalog.custody import append_event
from catalog.models import Export, ExportItem, Recording
from tests.cli_helpers import run_cli
from tests.test_export import CASE, dock_and_derive, export, make_case


def lower_bounds(monkeypatch: pytest.MonkeyPatch, **values: int) -> None:
    """Set bagparse's bound ``NAME`` to ``value`` in every archive_export module that
    holds it (several import it by name), and the bounds the bag reader derives from them."""
    for name, value in values.items():
        original = getattr(bagparse, name)
        for module in list(sys.modules.values()):
            if (
                getattr(module, "__name__", "").startswith("archive_export")
                and getattr(module, name, None) is original
            ):
                monkeypatch.setattr(module, name, value)
    monkeypatch.setattr(bagview, "MAX_MEMBERS", 2 * bagparse.MAX_FILES)
    monkeypatch.setattr(bagview, "MAX_HELD_BYTES", 2 * bagparse.MAX_TAG_BYTES)


def check_group(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], result: ExportResult, out: Path
) -> tuple[list[Path], list[str]]:
    """Every bag verifies (a tar as it is); Bag-Count and the hand-over lists agree with
    the export. Returns the bag folders (a tar's unpacked) and the originals listed."""
    count = len(result.bags)
    folders: list[Path] = []
    listed: list[str] = []
    for i, b in enumerate(result.bags, 1):
        verified = run_cli(capsys, "verify", str(b.path))
        assert verified.code == 0, verified.out + verified.err
        bag = b.path
        if b.path.suffix == ".tar":
            with tarfile.open(b.path) as tar:
                assert len(tar.getmembers()) <= bagview.MAX_MEMBERS
                tar.extractall(tmp_path / "x", filter="data")
            bag = tmp_path / "x" / b.name
        folders.append(bag)
        assert len([p for p in bag.rglob("*") if p.is_file()]) <= bagparse.MAX_FILES
        info = bagit.Bag(str(bag)).info
        assert info["Bag-Count"] == f"{i} of {count}"
        assert info["Bag-Group-Identifier"] == result.uid
        hand = read_handover((bag / "data/metadata/handover.csv").read_bytes())
        assert hand.problems == []
        assert hand.total_files == len(hand.rows)
        listed += [row[0] for row in hand.rows if row[0].startswith("data/originals/")]
    assert len(listed) == len(set(listed))  # no recording in two bags
    assert count >= 3, "the lowered bounds must split this export"
    stem, suffix = out.name.removesuffix(".tar"), ".tar" if out.suffix == ".tar" else ""
    assert sorted(p.name for p in out.parent.iterdir()) == [
        f"{stem}-{i:03d}{suffix}" for i in range(1, count + 1)
    ]
    return folders, listed


@pytest.mark.slow
@pytest.mark.parametrize("name", ["case", "case.tar"])
def test_too_many_files_for_the_verifier_splits_into_bags_that_verify(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, name: str
) -> None:
    d = dock_and_derive(
        tmp_path, derive=False, h264=0, h265=0, wav=0, jpeg=16, truncated=0, segments=0
    )
    make_case(d.app)
    lower_bounds(monkeypatch, MAX_FILES=30)
    out = tmp_path / "out" / name
    result = export(d.app, out)  # no --max-bag-size: the verifier's bound alone splits
    _bags, listed = check_group(tmp_path, capsys, result, out)
    with d.app.catalog.session() as s:
        recordings = s.scalars(select(Recording.id)).all()
        row = s.scalars(select(Export)).one()
        assert row.state == "DONE"
        assert row.bags["names"] == [b.name for b in result.bags]
        assert row.bags["planned"] == [b.path.name for b in result.bags]
        items = s.scalars(select(ExportItem)).all()
    assert len(recordings) >= 16
    assert len(items) == len(listed) == len(recordings)  # every recording, in one bag


@pytest.mark.slow
def test_custody_excerpt_beyond_the_verifier_splits_into_bags_that_verify(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    d = dock_and_derive(
        tmp_path, derive=False, h264=0, h265=0, wav=0, jpeg=12, truncated=0, segments=0
    )
    make_case(d.app)
    with d.app.catalog.session() as s:
        from catalog.models import CustodyEvent

        events = len(s.scalars(select(CustodyEvent.id)).all())
    # Fewer lines than the whole history: one bag's custody excerpt could not hold it all.
    lower_bounds(monkeypatch, MAX_LINES=events // 2)
    out = tmp_path / "out" / "case"
    result = export(d.app, out)
    bags, listed = check_group(tmp_path, capsys, result, out)
    with d.app.catalog.session() as s:
        assert len(listed) == len(s.scalars(select(Recording.id)).all())
    for bag in bags:
        lines = (bag / "data/metadata/custody.jsonl").read_bytes().count(b"\n")
        assert lines <= bagparse.MAX_LINES
        # (The recorder's DEVICE.INF has no capture time, which four-properties reports;
        # what matters here is that nothing was too large to check.)
        fourprops = run_cli(capsys, "four-properties", str(bag))
        assert "too large" not in fourprops.out + fourprops.err, fourprops.out


def test_a_recording_whose_history_alone_is_too_big_is_refused_before_writing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    d = dock_and_derive(
        tmp_path, derive=False, h264=0, h265=0, wav=0, jpeg=1, truncated=0, segments=0
    )
    make_case(d.app)
    with d.app.catalog.transaction() as s:
        rec = s.scalars(select(Recording).where(Recording.original_name.like("%.JPG"))).one()
        for i in range(80):  # a long history: signed events like any other
            append_event(
                s,
                d.app.signer,
                actor="test",
                action="viewed",
                object_type="recording",
                object_id=rec.sha256,
                details={"n": i},
            )
        rec_id, name = rec.id, rec.original_name
    lower_bounds(monkeypatch, MAX_LINES=60)
    monkeypatch.setenv("LIUHEN_HOME", str(tmp_path / "data"))
    out = tmp_path / "out" / "case"
    res = run_cli(capsys, "export", "--case", CASE, "--out", str(out))
    assert res.code == 65, res.out + res.err
    assert "Traceback" not in res.err
    assert f"recording {rec_id} ({name})" in res.err, res.err
    # 54: 90% of the lowered bound, the margin the export keeps.
    assert re.search(r"custody excerpt events: 8\d \(at most 54 here\)", res.err), res.err
    assert "liuhen verify" in res.err
    with d.app.catalog.session() as s:
        assert s.scalars(select(Export)).all() == []  # refused before anything was recorded
    assert not out.parent.exists() or list(out.parent.iterdir()) == []
