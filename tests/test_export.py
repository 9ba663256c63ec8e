"""`liuhen export` end to end: real recordings from the synthetic recorder, docked through
the real station, probed and derived by the real worker, exported from the real stores
(local directory and the moto S3 server), on SQLite and PostgreSQL; every bag checked
with bagit-python, `sha256sum -c`, `sha512sum -c`, OpenSSL and `liuhen verify`."""

from __future__ import annotations

import csv
import json
import os
import shutil
import signal
import stat
import subprocess
import sys
import tarfile
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import bagit
import pytest
from sqlalchemy import select

from archive_export.bagwriter import PayloadMismatch
from archive_export.export import ExportRequest, NothingToExport, export_bundle
from catalog import verify_chain
from catalog.attach import attach_manual, detach
from catalog.cases import add_action, create_case
from catalog.custody import canonical_bytes
from catalog.models import (
    CaseRecording,
    CustodyEvent,
    Export,
    ExportItem,
    Officer,
    Recording,
)
from catalog.signing import verify_signature
from ingest.synthetic import make_recorder
from ingest.worker import Worker
from liuhen.app import App
from storage import ObjectNotFound
from tests.cli_helpers import run_cli
from tests.offload_helpers import make_app

CASE = "沪徐市监罚〔2026〕123号"


@dataclass
class Docked:
    app: App
    recorder: Any
    root: Path


def dock_and_derive(
    tmp_path: Path,
    *,
    catalog_url: str | None = None,
    store_url: str | None = None,
    store_env: dict[str, str] | None = None,
    derive: bool = True,
    **recorder: Any,
) -> Docked:
    root = tmp_path / "dock" / "A123456"
    rec = make_recorder(root, **recorder)
    app = make_app(
        tmp_path / "data", catalog_url=catalog_url, store_url=store_url, store_env=store_env
    )
    station = app.station()
    assert station.run_docking(root).state == "SAFE_TO_CLEAR"
    station.close()
    if derive:
        stats = Worker(app.settings, catalog=app.catalog, store=app.store, signer=app.signer).run(
            drain=True, idle_s=0.1
        )
        assert stats.failed == 0, stats.errors
    return Docked(app, rec, root)


def make_case(app: App, number: str = CASE, *, place: str = "徐汇区漕溪北路 100 号") -> None:
    """A case with one enforcement action over the whole shift and every recording
    attached by hand, through the catalog's case API (with its custody events)."""
    with app.catalog.transaction() as s:
        case = create_case(
            s,
            app.signer,
            number=number,
            title="无证经营案",
            unit="徐汇区市场监督管理局",
            retention="30年",
            security_class="内部",
            actor="test",
        )
        recs = list(s.scalars(select(Recording).order_by(Recording.id)))
        starts = [r.captured_at for r in recs if r.captured_at]
        officer = s.scalars(select(Officer)).first()
        assert officer is not None
        add_action(
            s,
            app.signer,
            case=case,
            external_id="A-1",
            officers=[officer.number],
            start=min(starts) - timedelta(minutes=5),
            end=max(starts) + timedelta(minutes=5),
            place=place,
            actor="test",
        )
        for r in recs:
            attach_manual(
                s,
                app.signer,
                case_number=number,
                rec=r,
                reason="test",
                actor="test",
                policy=app.settings.retention,
                store=app.store,
            )


def export(app: App, out: Path, **kwargs: Any) -> Any:
    kwargs.setdefault("cases", (CASE,))
    return export_bundle(
        app.catalog,
        app.store,
        app.signer,
        ExportRequest(out=out, organization="徐汇区市场监督管理局", **kwargs),
    )


def assert_valid_bag(bag: Path, capsys: pytest.CaptureFixture[str] | None = None) -> None:
    bagit.Bag(str(bag)).validate()
    for tool, manifest in (
        ("sha256sum", "manifest-sha256.txt"),
        ("sha512sum", "manifest-sha512.txt"),
        ("sha256sum", "tagmanifest-sha256.txt"),
    ):
        proc = subprocess.run(
            [tool, "-c", "--strict", manifest], cwd=bag, capture_output=True, text=True, check=False
        )
        assert proc.returncode == 0, proc.stdout + proc.stderr
    proc = subprocess.run(
        [
            "openssl",
            "pkeyutl",
            "-verify",
            "-pubin",
            "-inkey",
            "signing-key.pem",
            "-rawin",
            "-in",
            "tagmanifest-sha256.txt",
            "-sigfile",
            "tagmanifest-sha256.txt.sig",
        ],
        cwd=bag,
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 0 and "Verified Successfully" in proc.stdout, proc.stderr
    if capsys is not None:
        result = run_cli(capsys, "verify", str(bag))
        assert result.code == 0, result.out + result.err


def payload(bag: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(bag)): p.read_bytes() for p in (bag / "data").rglob("*") if p.is_file()
    }


@pytest.mark.slow
def test_case_export_is_a_valid_signed_bag(
    tmp_path: Path, catalog_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    d = dock_and_derive(tmp_path, catalog_url=catalog_url)
    make_case(d.app)
    result = export(d.app, tmp_path / "out" / "case-123", with_access=True)
    bag = tmp_path / "out" / "case-123"
    assert [b.path for b in result.bags] == [bag]
    assert sorted(os.listdir(tmp_path / "out")) == ["case-123"]  # no .partial left
    assert_valid_bag(bag, capsys)

    files = payload(bag)
    # Every camera original, bit for bit, under device / local capture date / name.
    media = d.recorder.files
    for f in media:
        name = f.relpath.rsplit("/", 1)[-1]
        matches = [
            p for p in files if p.startswith("data/originals/A123456/") and p.endswith("/" + name)
        ]
        assert len(matches) == 1, name
        assert files[matches[0]] == (d.root / f.relpath).read_bytes()
        if f.start is not None:
            assert matches[0].split("/")[3] == f.start.strftime("%Y-%m-%d")
    assert any(p.startswith("data/access/A123456/") and p.endswith(".mp4") for p in files)

    info = bagit.Bag(str(bag)).info
    assert info["External-Identifier"] == CASE and info["Liuhen-Case-Id"] == CASE
    assert info["Liuhen-Retention"] == "30年" and info["Liuhen-Security-Class"] == "内部"
    assert info["Payload-Oxum"] == f"{sum(map(len, files.values()))}.{len(files)}"
    assert info["Liuhen-Signing-Key-Id"] == d.app.signer.key_id
    assert "Bag-Count" not in info
    assert (bag / "bagit.txt").read_bytes() == (
        b"BagIt-Version: 1.0\nTag-File-Character-Encoding: UTF-8\n"
    )
    verify_text = (bag / "VERIFY.txt").read_text(encoding="utf-8")
    assert "sha256sum -c manifest-sha256.txt" in verify_text and "liuhen verify" in verify_text

    # The descriptor lists every original with size and both digests, and the record fields.
    root = ET.fromstring(files["data/metadata/package.xml"])
    with d.app.catalog.session() as s:
        recs = {r.sha256: r for r in s.scalars(select(Recording))}
    records = root.findall("records/record")
    assert len(records) == len(recs)
    for el in records:
        r = recs[el.get("sha256", "")]
        original = el.find("file[@role='original']")
        assert original is not None
        assert original.get("size") == str(r.size) and original.get("sm3") == r.sm3
        assert el.findtext("archival-code", "").startswith(CASE)
        assert el.findtext("retention") == "30年" and el.findtext("security-class") == "内部"
        assert el.findtext("place") == "徐汇区漕溪北路 100 号"
        assert el.find("recorder") is not None and el.findtext("case-id") == CASE
    listed = {f.get("path") for f in root.findall("files/file")}
    assert {p for p in files if p.startswith(("data/originals/", "data/access/"))} <= listed

    # Hand-over list: every file before it, and a totals row that adds up.
    rows = list(csv.reader(files["data/metadata/handover.csv"].decode("utf-8-sig").splitlines()))
    assert rows[0] == ["文件路径", "字节数", "SHA-256", "SM3"] and rows[-1][0] == "合计"
    body = rows[1:-1]
    assert int(rows[-1][1]) == sum(int(r[1]) for r in body) and int(rows[-1][2]) == len(body)
    for path, size, _sha, _sm3 in body:
        assert len(files[path]) == int(size)

    # The custody excerpt verifies event by event with the keys shipped beside it.
    keys = {
        k["key_id"]: bytes.fromhex(k["public_key_hex"])
        for k in json.loads(files["data/metadata/keys.json"])["keys"]
    }
    events = [json.loads(line) for line in files["data/metadata/custody.jsonl"].splitlines()]
    actions = {e["action"] for e in events}
    assert {
        "offloaded",
        "stored",
        "verified",
        "probed",
        "derived",
        "attached",
        "case-created",
        "export-started",
    } <= actions
    for e in events:
        data = canonical_bytes(
            **{
                k: e[k]
                for k in (
                    "station_id",
                    "seq",
                    "at",
                    "actor",
                    "action",
                    "object_type",
                    "object_id",
                    "details",
                    "prev_hash",
                    "key_id",
                )
            }
        )
        assert verify_signature(keys[e["key_id"]], bytes.fromhex(e["signature"]), data)
    premis = ET.fromstring(files["data/metadata/events.xml"])
    types = {e.get("type") for e in premis.findall("event")}
    assert {
        "capture",
        "offload",
        "store",
        "fixity check",
        "derivation",
        "attachment",
        "export",
    } <= types

    # Four-properties at export: the truncated original is flagged as not decoding.
    report = json.loads(files["data/metadata/four-properties.json"])
    assert result.bags[0].four_properties["ok"] is False
    decode = report["properties"]["usability"]["checks"][0]
    truncated = next(f for f in media if f.kind == "video-truncated")
    assert any(truncated.relpath.rsplit("/", 1)[-1] in p for p in decode["problems"])
    assert report["properties"]["integrity"]["status"] != "fail"
    assert report["properties"]["authenticity"]["status"] == "pass"
    html = files["data/metadata/four-properties.html"].decode()
    assert "真实性" in html and "Authenticity" in html

    # The catalog: export DONE, its items, one signed `exported` event per recording.
    with d.app.catalog.session() as s:
        row = s.scalars(select(Export)).one()
        assert row.state == "DONE" and row.uid == result.uid
        assert row.files == len(files) and row.bytes == sum(map(len, files.values()))
        items = s.scalars(select(ExportItem).where(ExportItem.export_id == row.id)).all()
        assert len(items) == len(recs)
        exported = s.scalars(select(CustodyEvent).where(CustodyEvent.action == "exported")).all()
        assert {e.object_id for e in exported} == set(recs)
        assert verify_chain(s).ok


@pytest.mark.slow
def test_tar_export_split_into_numbered_bags(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    d = dock_and_derive(tmp_path, derive=False, h265=0, wav=1, jpeg=1, truncated=0)
    make_case(d.app)
    with d.app.catalog.transaction() as s:
        # A detached recording is no longer the case's: it must not be exported.
        first = s.scalars(select(CaseRecording).order_by(CaseRecording.id)).first()
        assert first is not None
        gone = s.get(Recording, first.recording_id)
        assert gone is not None
        detach(s, d.app.signer, case_number=CASE, rec=gone, reason="wrong case", actor="test")
        gone_name = gone.original_name
        sizes = [r.size for r in s.scalars(select(Recording)) if r.id != gone.id]
    limit = max(sizes) + 1
    out = tmp_path / "out" / "case.tar"
    result = export(d.app, out, max_bag_bytes=limit)
    count = len(result.bags)
    assert count >= 3
    names = sorted(os.listdir(tmp_path / "out"))
    assert names == [f"case-{i:03d}.tar" for i in range(1, count + 1)]
    seen: list[str] = []
    group = set()
    for i, b in enumerate(result.bags, 1):
        with tarfile.open(b.path) as tar:
            tops = {m.name.split("/", 1)[0] for m in tar.getmembers()}
            assert tops == {f"case-{i:03d}"}
            tar.extractall(tmp_path / "x", filter="data")
        bag = tmp_path / "x" / f"case-{i:03d}"
        assert_valid_bag(bag)
        info = bagit.Bag(str(bag)).info
        assert info["Bag-Count"] == f"{i} of {count}"
        group.add(info["Bag-Group-Identifier"])
        originals = [p for p in payload(bag) if p.startswith("data/originals/")]
        media_bytes = sum((bag / p).stat().st_size for p in originals)
        assert media_bytes <= limit or len(originals) == 1
        seen += originals
        # The tar itself verifies without unpacking.
        verified = run_cli(capsys, "verify", str(b.path))
        assert verified.code == 0, verified.out + verified.err
    assert group == {result.uid}
    assert len(seen) == len(set(seen)) == len(sizes)  # every recording once, in one bag
    assert not any(p.endswith("/" + gone_name) for p in seen)


@pytest.mark.slow
def test_corrupt_object_aborts_the_export_and_names_it(tmp_path: Path) -> None:
    d = dock_and_derive(
        tmp_path, derive=False, h264=2, h265=0, wav=0, jpeg=0, truncated=0, segments=0
    )
    make_case(d.app)
    with d.app.catalog.session() as s:
        videos = s.scalars(
            select(Recording)
            .where(Recording.original_name.like("%.MP4"))
            .order_by(Recording.captured_at)
        ).all()
        victim = videos[-1]  # exported last: the bags before it are already finished
        limit = max(v.size for v in videos)
    path = d.app.store.root / victim.object_key  # type: ignore[attr-defined]
    os.chmod(path, 0o644)
    good = path.read_bytes()
    data = bytearray(good)
    data[len(data) // 2] ^= 0x01
    path.write_bytes(bytes(data))
    for out in (tmp_path / "out" / "bag", tmp_path / "out" / "bag.tar"):
        out.parent.mkdir(exist_ok=True)
        with pytest.raises(PayloadMismatch) as info:
            # Split: one bag per recording, so finished bags exist when the mismatch hits.
            export(d.app, out, max_bag_bytes=limit)
        assert victim.object_key in str(info.value) and victim.sha256 in str(info.value)
        assert "sha256 mismatch" in str(info.value)
        assert os.listdir(out.parent) == []  # nothing half-written stays visible
    with d.app.catalog.session() as s:
        rows = s.scalars(select(Export)).all()
        assert [r.state for r in rows] == ["FAILED", "FAILED"]
        assert all(victim.object_key in (r.error or "") for r in rows)
        assert s.scalars(select(ExportItem)).all() == []  # nothing was exported
        failed = s.scalars(select(CustodyEvent).where(CustodyEvent.action == "export-failed")).all()
        assert len(failed) == 2 and victim.object_key in failed[0].details
        assert verify_chain(s).ok

    # An object gone from the store: the same abort, naming the key.
    path.write_bytes(good)
    other = d.app.store.root / videos[0].object_key  # type: ignore[attr-defined]
    os.chmod(other, 0o644)
    other.unlink()
    with pytest.raises(ObjectNotFound, match=videos[0].object_key):
        export(d.app, tmp_path / "out" / "again.tar")
    assert os.listdir(tmp_path / "out") == []


@pytest.mark.slow
@pytest.mark.s3
def test_export_from_s3_on_postgres(
    tmp_path: Path,
    pg_url: str,
    s3_endpoint: Any,
    s3_bucket: str,
    s3_client: Any,
    capsys: pytest.CaptureFixture[str],
) -> None:
    d = dock_and_derive(
        tmp_path,
        catalog_url=pg_url,
        store_url=f"s3://{s3_bucket}/ev",
        store_env={"LIUHEN_STORE_ENDPOINT_URL": s3_endpoint.url},
        derive=False,
        h265=0,
        wav=1,
        jpeg=1,
        truncated=0,
        segments=0,
    )
    make_case(d.app)
    result = export(d.app, tmp_path / "out" / "s3.tar")
    with tarfile.open(result.bags[0].path) as tar:
        tar.extractall(tmp_path / "x", filter="data")
    assert_valid_bag(tmp_path / "x" / "s3", capsys)
    for f in d.recorder.media():
        got = [
            p
            for p in (tmp_path / "x" / "s3" / "data" / "originals").rglob(
                f.relpath.rsplit("/", 1)[-1]
            )
        ]
        assert got and got[0].read_bytes() == (d.root / f.relpath).read_bytes()

    # A flipped byte in the bucket aborts the next export, naming the object.
    with d.app.catalog.session() as s:
        victim = s.scalars(select(Recording).order_by(Recording.id)).first()
        assert victim is not None
    key = f"ev/{victim.object_key}"
    body = bytearray(s3_client.get_object(Bucket=s3_bucket, Key=key)["Body"].read())
    body[-1] ^= 0xFF
    s3_client.put_object(Bucket=s3_bucket, Key=key, Body=bytes(body))
    with pytest.raises(PayloadMismatch, match=victim.object_key):
        export(d.app, tmp_path / "out2" / "again")
    assert not (tmp_path / "out2").exists() or os.listdir(tmp_path / "out2") == []


@pytest.mark.slow
def test_hostile_names_get_safe_paths_and_a_name_map(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    root = tmp_path / "dock" / "A123456"
    rec = make_recorder(root, h265=0, wav=0, jpeg=0, truncated=0, segments=0)
    first = next(f for f in rec.media())
    original = (root / first.relpath).read_bytes()
    hostile = {
        b"DCIM/100RECORD/latin1-\xe9\xff.MP4": original + b"1",
        b"DCIM/100RECORD/a%b\\c:d*e.MP4": original + b"2",
        b"DCIM/100RECORD/ line\nbreak .MP4": original + b"3",
        # Same name as the first file, other folder, other bytes: a collision in the bag.
        os.fsencode(first.relpath.replace("100RECORD", "101RECORD")): original + b"4",
    }
    for raw, data in hostile.items():
        target = os.path.join(os.fsencode(root), raw)
        os.makedirs(os.path.dirname(target), exist_ok=True)
        with open(target, "wb") as fh:
            fh.write(data)
    app = make_app(tmp_path / "data")
    station = app.station()
    assert station.run_docking(root).state == "SAFE_TO_CLEAR"
    station.close()
    make_case(app)
    result = export(app, tmp_path / "out" / "names")
    bag = result.bags[0].path
    assert_valid_bag(bag, capsys)
    rows = list(csv.reader((bag / "data/metadata/name-map.csv").read_text("utf-8").splitlines()))
    assert rows[0] == ["path", "original_name", "original_name_hex"]
    by_hex = {bytes.fromhex(r[2]): r for r in rows[1:]}
    unsafe = [raw for raw in hostile if "101RECORD" not in os.fsdecode(raw)]
    for raw in unsafe:
        name = raw.rsplit(b"/", 1)[-1]
        assert name in by_hex, name
        path = by_hex[name][0]
        assert (bag / path).read_bytes() == hostile[raw]
        assert not set("%\\:*\n") & set(path.rsplit("/", 1)[-1])
    assert "\\xe9\\xff" in by_hex[b"latin1-\xe9\xff.MP4"][1]
    # Two recordings named alike: both kept, the second tagged with its hash and mapped.
    plain = first.relpath.rsplit("/", 1)[-1]
    tagged = by_hex[plain.encode()][0]
    folder = bag / tagged.rsplit("/", 1)[0]
    stem = plain.rsplit(".", 1)[0]
    assert "~" in tagged.rsplit("/", 1)[-1]
    twins = {p.read_bytes() for p in folder.iterdir() if p.name.startswith(stem)}
    assert twins == {original, original + b"4"}


@pytest.mark.slow
def test_export_command_by_date_range(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    start = datetime(2026, 3, 9, 23, 0, 0)  # China Standard Time, as the recorder's clock
    d = dock_and_derive(tmp_path, start=start, h265=0, wav=1, jpeg=0, truncated=0, segments=0)
    monkeypatch.setenv("LIUHEN_HOME", str(tmp_path / "data"))
    out = tmp_path / "out" / "march.tar"
    out.parent.mkdir()
    res = run_cli(
        capsys,
        "export",
        "--from",
        "2026-03-09",
        "--to",
        "2026-03-11",
        "--out",
        str(out),
        "--retention",
        "10年",
        "--security-class",
        "公开",
        "--fonds",
        "J001",
        "--json",
    )
    assert res.code == 0, res.err
    report = json.loads(res.out)
    # The media (captured in the range); DEVICE.INF has no capture time and was received
    # today, outside the range.
    assert report["recordings"] == len(d.recorder.media())
    assert report["bags"][0]["path"] == str(out)
    with tarfile.open(out) as tar:
        names = tar.getnames()
        info = tar.extractfile("march/bag-info.txt")
        assert info is not None
        text = info.read().decode()
    assert "Liuhen-Fonds: J001" in text and "Liuhen-Retention: 10年" in text
    # Date folders are the local (UTC+8) capture dates the recorder's names carry.
    days = {
        n.split("/")[4]
        for n in names
        if n.startswith("march/data/originals/A123456/") and n.count("/") >= 5
    }
    assert days == {f.start.strftime("%Y-%m-%d") for f in d.recorder.media()}
    # Nothing in another range; an existing --out is never overwritten.
    empty = run_cli(
        capsys,
        "export",
        "--from",
        "2026-04-01",
        "--to",
        "2026-04-02",
        "--out",
        str(tmp_path / "out" / "april"),
    )
    assert empty.code == 66 and "no recordings to export" in empty.err
    again = run_cli(
        capsys, "export", "--from", "2026-03-09", "--to", "2026-03-11", "--out", str(out)
    )
    assert again.code == 2 and "already exist" in again.err
    assert not (tmp_path / "out" / "april").exists()
    # What a killed export leaves is named as such, and blocks that --out until removed.
    (tmp_path / "out" / "killed.partial").mkdir()
    blocked = run_cli(
        capsys,
        "export",
        "--from",
        "2026-03-09",
        "--to",
        "2026-03-11",
        "--out",
        str(tmp_path / "out" / "killed"),
    )
    assert blocked.code == 2 and "interrupted export" in blocked.err
    assert not (tmp_path / "out" / "killed").exists()


def test_unknown_case_is_named(tmp_path: Path) -> None:
    app = make_app(tmp_path / "data")
    with pytest.raises(NothingToExport, match=r"nope-1.*nope-2"):
        export_bundle(
            app.catalog,
            app.store,
            app.signer,
            ExportRequest(out=tmp_path / "o", cases=("nope-1", "nope-2")),
        )
    assert not (tmp_path / "o").exists()
    shutil.rmtree(tmp_path / "data")


@pytest.mark.parametrize(
    "raw",
    [
        "CON .MP4",
        "nul  .txt",
        "COM0.MP4",
        "LPT0",
        "COM\u00b9.MP4",
        "lpt\u00b2.wav",
        "LPT\u00b3",
        "CONIN$",
        "conout$.txt",
    ],
)
def test_windows_device_names_are_made_safe(raw: str) -> None:
    """Windows opens these as devices, not files: an auditor could not unpack the bag
    there (the base name before the first dot counts, trailing spaces stripped)."""
    from archive_export.paths import safe_component

    safe = safe_component(raw.encode("utf-8"))
    assert safe.changed and "reserved name" in safe.reason
    base = safe.name.split(".", 1)[0].rstrip(" ").upper()
    assert base.startswith("_")


@pytest.mark.parametrize(
    "raw", ["x" * 199 + " " + "y" * 60, "a" * 199 + "." + "b" * 70, "录" * 66 + " " + "z" * 40]
)
def test_long_names_cut_never_end_in_a_space_or_dot(raw: str) -> None:
    """Windows drops a trailing space or dot, so a cut name ending in one would not be
    the name the manifests list."""
    from archive_export.paths import MAX_COMPONENT_BYTES, safe_component

    safe = safe_component(raw.encode("utf-8"))
    assert "too long" in safe.reason
    assert len(safe.name.encode("utf-8")) <= MAX_COMPONENT_BYTES
    assert safe.name == safe.name.rstrip(" .") and safe.name


class _RacingStore:
    """The real store; when the last object is read, another process creates ``path``."""

    def __init__(self, store: Any, last_key: str, path: Path) -> None:
        self._store, self._last, self._path = store, last_key, path

    def __getattr__(self, name: str) -> Any:
        return getattr(self._store, name)

    def open(self, key: str) -> Any:
        if key == self._last:
            self._path.mkdir()
        return self._store.open(key)


@pytest.mark.slow
def test_failed_commit_of_a_split_export_takes_back_the_bags_already_in_place(
    tmp_path: Path,
) -> None:
    """Bag 2's final path appears while it is written: its rename fails, and bag 1, already
    renamed into place, must not stay behind as if the export had (partly) happened."""
    d = dock_and_derive(
        tmp_path, derive=False, h264=2, h265=0, wav=0, jpeg=0, truncated=0, segments=0
    )
    make_case(d.app)
    with d.app.catalog.session() as s:
        videos = s.scalars(
            select(Recording)
            .where(Recording.original_name.like("%.MP4"))
            .order_by(Recording.captured_at)
        ).all()
        last, limit = videos[-1].object_key, max(v.size for v in videos)
    out = tmp_path / "out" / "bag"
    out.parent.mkdir()
    store = _RacingStore(d.app.store, last, tmp_path / "out" / "bag-002")
    with pytest.raises(Exception, match="bag-002"):
        export_bundle(
            d.app.catalog,
            store,
            d.app.signer,  # type: ignore[arg-type]
            ExportRequest(out=out, cases=(CASE,), max_bag_bytes=limit),
        )
    assert sorted(os.listdir(out.parent)) == ["bag-002"]  # only what the other process made
    with d.app.catalog.session() as s:
        assert [r.state for r in s.scalars(select(Export))] == ["FAILED"]


# -- killed at the dangerous points -------------------------------------------------------------

# `liuhen export`, killed (SIGKILL, as a power cut would) right after its first bag is
# renamed into place: the point where a bag is visible at --out.
KILLED_AFTER_FIRST_RENAME = """
import os, signal
from archive_export import bagwriter
real = bagwriter.BagWriter.commit
def commit(self):
    real(self)
    os.kill(os.getpid(), signal.SIGKILL)
bagwriter.BagWriter.commit = commit
from liuhen.cli import main
main()
"""

# `liuhen export`, killed while it copies the second file into its first bag.
KILLED_WHILE_WRITING = """
import os, signal
from archive_export import bagwriter
real = bagwriter.BagWriter.add_stream
calls = []
def add_stream(self, *args, **kwargs):
    calls.append(1)
    if len(calls) == 2:
        os.kill(os.getpid(), signal.SIGKILL)
    return real(self, *args, **kwargs)
bagwriter.BagWriter.add_stream = add_stream
from liuhen.cli import main
main()
"""


def killed_export(script: str, d: Docked, *args: str) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("LIUHEN_")}
    env.update(
        LIUHEN_HOME=str(d.app.settings.data_dir), LIUHEN_CATALOG_URL=d.app.settings.catalog_url
    )
    killed = subprocess.run(
        [sys.executable, "-c", script, "export", "--case", CASE, "--decode", "none", *args],
        env=env,
        cwd=Path.cwd(),
        capture_output=True,
        text=True,
        check=False,
        timeout=300,
    )
    assert killed.returncode == -signal.SIGKILL, killed.stdout + killed.stderr


def split_case(tmp_path: Path, catalog_url: str | None = None) -> tuple[Docked, int, list[int]]:
    """Two videos attached to CASE; a bag size limit that puts them in two bags."""
    d = dock_and_derive(
        tmp_path,
        catalog_url=catalog_url,
        derive=False,
        h264=2,
        h265=0,
        wav=0,
        jpeg=0,
        truncated=0,
        segments=0,
    )
    make_case(d.app)
    with d.app.catalog.session() as s:
        recs = s.scalars(select(Recording).order_by(Recording.id)).all()
        limit = max(r.size for r in recs if r.original_name.endswith(".MP4"))
        return d, limit, [r.id for r in recs]


@pytest.mark.slow
@pytest.mark.fault
def test_export_killed_after_a_bag_is_renamed_into_place_is_known_and_completed(
    tmp_path: Path,
    catalog_url: str,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    d, limit, rec_ids = split_case(tmp_path, catalog_url)
    home = tmp_path / "data"
    monkeypatch.setenv("LIUHEN_CATALOG_URL", catalog_url)
    out = tmp_path / "out" / "case"
    killed_export(KILLED_AFTER_FIRST_RENAME, d, "--out", str(out), "--max-bag-size", str(limit))
    with d.app.catalog.session() as s:
        (row,) = s.scalars(select(Export)).all()
        items = {i.recording_id for i in s.scalars(select(ExportItem))}
    bags = [out.with_name(name) for name in row.bags["planned"]]
    assert [b.name for b in bags[:2]] == ["case-001", "case-002"]
    # A bag is visible at --out: the catalog knows the export, with every recording in it.
    assert bags[0].is_dir() and not any(b.exists() for b in bags[1:])
    assert all(b.with_name(b.name + ".partial").is_dir() for b in bags[1:])
    assert row.state == "DONE" and row.finished_at is None
    assert items == set(rec_ids)
    monkeypatch.setenv("LIUHEN_HOME", str(home))
    refused = run_cli(capsys, "case", "detach", CASE, str(rec_ids[0]), "--reason", "test")
    assert refused.code != 0 and "was exported" in refused.err, refused.out + refused.err
    assert "--force-exported" in refused.err

    # The next export settles the interrupted one first, and says what it did.
    again = run_cli(
        capsys,
        "export",
        "--case",
        CASE,
        "--decode",
        "none",
        "--json",
        "--out",
        str(tmp_path / "out" / "again"),
    )
    assert again.code == 0, again.out + again.err
    (note,) = json.loads(again.out)["reconciled"]
    assert note.startswith(f"export {row.uid} (DONE") and "case-002.partial -> case-002" in note
    assert f"reconciled an interrupted export: export {row.uid}" in again.err
    assert sorted(p.name for p in out.parent.iterdir()) == sorted(
        ["again"] + [b.name for b in bags]
    )
    for bag in bags:
        assert_valid_bag(bag, capsys)
    with d.app.catalog.session() as s:
        done = s.get(Export, row.id)
        assert done is not None and done.state == "DONE" and done.finished_at is not None
        assert verify_chain(s).ok
    # Settled once: a later export has nothing to reconcile.
    third = run_cli(
        capsys,
        "export",
        "--case",
        CASE,
        "--decode",
        "none",
        "--json",
        "--out",
        str(tmp_path / "out" / "third"),
    )
    assert third.code == 0 and json.loads(third.out)["reconciled"] == []


@pytest.mark.slow
@pytest.mark.fault
def test_export_killed_while_writing_is_removed_and_recorded_failed_by_the_next_run(
    tmp_path: Path,
    catalog_url: str,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    d, _limit, _ids = split_case(tmp_path, catalog_url)
    home = tmp_path / "data"
    monkeypatch.setenv("LIUHEN_CATALOG_URL", catalog_url)
    out = tmp_path / "out" / "case.tar"
    killed_export(KILLED_WHILE_WRITING, d, "--out", str(out))
    assert sorted(p.name for p in out.parent.iterdir()) == ["case.tar.partial"]
    with d.app.catalog.session() as s:
        (row,) = s.scalars(select(Export)).all()
        assert row.state == "RUNNING" and not s.scalars(select(ExportItem)).all()
    # The same --out again: the interrupted output is removed (it said it was
    # incomplete), the interrupted export is recorded FAILED, and this one is written.
    monkeypatch.setenv("LIUHEN_HOME", str(home))
    again = run_cli(capsys, "export", "--case", CASE, "--decode", "none", "--out", str(out))
    assert again.code == 0, again.out + again.err
    assert (
        f"reconciled an interrupted export: export {row.uid} (RUNNING, its process is "
        f"gone): removed {out}.partial; recorded FAILED"
    ) in again.err
    assert sorted(p.name for p in out.parent.iterdir()) == ["case.tar"]
    with d.app.catalog.session() as s:
        failed = s.get(Export, row.id)
        assert (
            failed is not None
            and failed.state == "FAILED"
            and "interrupted" in (failed.error or "")
        )
        events = [
            json.loads(e.details)
            for e in s.scalars(
                select(CustodyEvent).where(
                    CustodyEvent.action == "export-failed", CustodyEvent.object_id == row.uid
                )
            )
        ]
        assert [e["removed"] for e in events] == [[f"{out}.partial"]]
        assert verify_chain(s).ok


@pytest.mark.slow
def test_a_rename_failing_after_the_export_was_recorded_takes_the_export_back(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Bag 2's final path is made by another process just after bag 1 was renamed into
    place (after the catalog said DONE): bag 1 leaves --out again and the catalog takes
    the export back, so neither claims a hand-over the other does not know."""
    from archive_export import bagwriter

    d, limit, rec_ids = split_case(tmp_path)
    out = tmp_path / "out" / "bag"
    out.parent.mkdir()
    real = bagwriter.BagWriter.commit

    def commit(self: bagwriter.BagWriter) -> None:
        real(self)
        if self.final.name == "bag-001":
            (out.parent / "bag-002").mkdir()  # what the other process makes

    monkeypatch.setattr(bagwriter.BagWriter, "commit", commit)
    with pytest.raises(Exception, match="bag-002 appeared while exporting"):
        export(d.app, out, max_bag_bytes=limit)
    assert sorted(os.listdir(out.parent)) == ["bag-002"]  # only what the other process made
    with d.app.catalog.session() as s:
        (row,) = s.scalars(select(Export)).all()
        assert row.state == "FAILED" and not s.scalars(select(ExportItem)).all()
        actions = [
            e.action
            for e in s.scalars(
                select(CustodyEvent)
                .where(CustodyEvent.object_id == row.uid)
                .order_by(CustodyEvent.seq)
            )
        ]
        assert actions == ["export-started", "export-finished", "export-failed"]
        assert verify_chain(s).ok
        rec = s.get(Recording, rec_ids[0])
    assert rec is not None
    with d.app.catalog.transaction() as s:  # not exported after all: detaching is plain
        details = detach(s, d.app.signer, case_number=CASE, rec=rec, reason="test", actor="test")
    assert details["override"] is False


@pytest.mark.slow
@pytest.mark.fault
def test_an_interrupted_bag_that_lost_files_is_not_put_in_place(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """What a power cut can do to a bag directory whose folders were never synced: a file
    gone. Completing the export must not put that bag at --out as if it were the one
    recorded; it is reported, and the export stays recorded as exported."""
    d, limit, _ids = split_case(tmp_path)
    out = tmp_path / "out" / "case"
    killed_export(KILLED_AFTER_FIRST_RENAME, d, "--out", str(out), "--max-bag-size", str(limit))
    partial = out.with_name("case-002.partial")
    next(p for p in (partial / "data" / "originals").rglob("*") if p.is_file()).unlink()
    monkeypatch.setenv("LIUHEN_HOME", str(d.app.settings.data_dir))
    again = run_cli(
        capsys,
        "export",
        "--case",
        CASE,
        "--decode",
        "none",
        "--json",
        "--out",
        str(tmp_path / "out" / "again"),
    )
    assert again.code == 0, again.out + again.err
    (note,) = json.loads(again.out)["reconciled"]
    assert f"{partial} holds" in note and "left as it is" in note
    assert partial.is_dir() and not out.with_name("case-002").exists()
    with d.app.catalog.session() as s:
        row = s.scalars(select(Export).order_by(Export.id)).first()
        assert row is not None and row.state == "DONE" and row.finished_at is None


# -- durable before recorded ----------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize("name", ["case", "case.tar"])
def test_every_folder_of_a_bag_is_synced_before_the_export_is_recorded(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    name: str,
) -> None:
    """A power cut just after the DONE commit must find the bags whole: every folder
    of a bag directory (a file's name lives in its folder), the ``.partial`` entries and
    a newly made --out folder are synced before the commit, and the folder the bags are
    renamed in after the renames. Seen from the calls to fsync(2) themselves."""
    from archive_export import export as export_module

    d, limit, _ids = split_case(tmp_path)
    out = tmp_path / "out" / "new" / name
    (tmp_path / "out").mkdir()
    log: list[tuple[str, Path]] = []
    real_fsync, real_record_done = os.fsync, export_module._record_done

    def fsync(fd: int) -> None:
        real_fsync(fd)
        if stat.S_ISDIR(os.fstat(fd).st_mode):
            log.append(("synced", Path(os.readlink(f"/proc/self/fd/{fd}"))))

    def record_done(*args: Any, **kwargs: Any) -> None:
        real_record_done(*args, **kwargs)
        log.append(("DONE committed", out.parent))

    monkeypatch.setattr(os, "fsync", fsync)
    monkeypatch.setattr(export_module, "_record_done", record_done)
    result = export(d.app, out, max_bag_bytes=limit)
    assert len(result.bags) > 1
    done = log.index(("DONE committed", out.parent))
    before = {path for _what, path in log[:done]}
    after = {path for _what, path in log[done + 1 :]}
    for bag in result.bags:
        partial = bag.path.with_name(bag.path.name + ".partial")
        if bag.path.is_dir():
            folders = [Path(f) for f, _d, _f in os.walk(bag.path)]
            assert len(folders) > 4  # data/originals/<device>/<date>/ and data/metadata/
            unsynced = [f for f in folders if partial / f.relative_to(bag.path) not in before]
            assert unsynced == []
    assert out.parent in before  # the .partial entries
    assert tmp_path / "out" in before  # the new --out folder's entry
    assert out.parent in after  # the renames


# -- the connection lost at the DONE commit ------------------------------------------------


def lose_connection_at_the_done_commit(
    monkeypatch: pytest.MonkeyPatch, app: App, proxy: Any, *, committed: bool, reachable: bool
) -> None:
    """At the COMMIT of the transaction that records the export DONE, the network between
    the station and PostgreSQL goes (the proxy resets every connection): just after the
    server committed (``committed``) or just before it got the COMMIT. ``reachable``:
    new connections get through again at once (a blip), else the catalog stays away."""
    from archive_export import export as export_module

    dialect = type(app.catalog.engine.dialect)
    real_commit, real_record_done = dialect.do_commit, export_module._record_done
    armed = []

    def record_done(*args: Any, **kwargs: Any) -> None:
        armed.append(True)
        real_record_done(*args, **kwargs)

    def do_commit(self: Any, dbapi_connection: Any) -> None:
        if not armed:
            return real_commit(self, dbapi_connection)
        armed.clear()
        if committed:
            real_commit(self, dbapi_connection)
        proxy.cut()
        if reachable:
            proxy.restore()
        # The client learns of the cut from its dead connection: at the COMMIT it had not
        # sent yet, or (the reply lost) at once, before the export code hears back.
        if committed:
            dbapi_connection.execute("SELECT 1")
        else:
            real_commit(self, dbapi_connection)

    monkeypatch.setattr(export_module, "_record_done", record_done)
    monkeypatch.setattr(dialect, "do_commit", do_commit)


def export_row(pg_url: str) -> tuple[Export, int]:
    """The first export and its number of items, as the catalog really holds them (read
    past the proxy)."""
    from catalog import Catalog

    direct = Catalog(pg_url)
    try:
        with direct.session() as s:
            row = s.scalars(select(Export).order_by(Export.id)).first()
            assert row is not None
            return row, len(
                s.scalars(select(ExportItem).where(ExportItem.export_id == row.id)).all()
            )
    finally:
        direct.dispose()


@pytest.mark.slow
@pytest.mark.fault
def test_catalog_lost_just_after_it_committed_the_export_keeps_the_bags_for_the_next_run(
    tmp_path: Path,
    pg_url: str,
    proxied_pg: tuple[str, Any],
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    url, proxy = proxied_pg
    d, limit, rec_ids = split_case(tmp_path, url)
    monkeypatch.setenv("LIUHEN_HOME", str(d.app.settings.data_dir))
    monkeypatch.setenv("LIUHEN_CATALOG_URL", url)
    out = tmp_path / "out" / "case"
    lose_connection_at_the_done_commit(monkeypatch, d.app, proxy, committed=True, reachable=False)
    lost = run_cli(
        capsys,
        "export",
        "--case",
        CASE,
        "--decode",
        "none",
        "--out",
        str(out),
        "--max-bag-size",
        str(limit),
    )
    assert lost.code == 69, lost.out + lost.err
    assert "stopped answering while export" in lost.err, lost.err
    assert f"{out.with_name('case-001')}.partial" in lost.err
    assert "run 'liuhen export' again" in lost.err and "Traceback" not in lost.err
    # The catalog recorded the export: its finished bags are all still there.
    row, items = export_row(pg_url)
    assert row.state == "DONE" and row.finished_at is None and items == len(rec_ids)
    bags = [out.with_name(name) for name in row.bags["planned"]]
    assert len(bags) > 1
    assert sorted(p.name for p in out.parent.iterdir()) == sorted(b.name + ".partial" for b in bags)

    # The catalog back, the next export settles this one first: the bags in place.
    monkeypatch.undo()
    proxy.restore()
    monkeypatch.setenv("LIUHEN_HOME", str(d.app.settings.data_dir))
    monkeypatch.setenv("LIUHEN_CATALOG_URL", url)
    again = run_cli(
        capsys,
        "export",
        "--case",
        CASE,
        "--decode",
        "none",
        "--json",
        "--out",
        str(tmp_path / "out" / "again"),
    )
    assert again.code == 0, again.out + again.err
    (note,) = json.loads(again.out)["reconciled"]
    assert note.startswith(f"export {row.uid} (DONE") and "completed" in note, note
    assert sorted(p.name for p in out.parent.iterdir()) == sorted(
        ["again"] + [b.name for b in bags]
    )
    for bag in bags:
        assert_valid_bag(bag, capsys)
    done, items = export_row(pg_url)
    assert done.state == "DONE" and done.finished_at is not None and items == len(rec_ids)


@pytest.mark.slow
@pytest.mark.fault
def test_catalog_blip_just_after_it_committed_the_export_still_puts_the_bags_in_place(
    tmp_path: Path,
    pg_url: str,
    proxied_pg: tuple[str, Any],
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    url, proxy = proxied_pg
    d, limit, _ids = split_case(tmp_path, url)
    monkeypatch.setenv("LIUHEN_HOME", str(d.app.settings.data_dir))
    monkeypatch.setenv("LIUHEN_CATALOG_URL", url)
    out = tmp_path / "out" / "case"
    lose_connection_at_the_done_commit(monkeypatch, d.app, proxy, committed=True, reachable=True)
    r = run_cli(
        capsys,
        "export",
        "--case",
        CASE,
        "--decode",
        "none",
        "--json",
        "--out",
        str(out),
        "--max-bag-size",
        str(limit),
    )
    assert r.code == 0, r.out + r.err
    bags = [Path(b["path"]) for b in json.loads(r.out)["bags"]]
    assert sorted(p.name for p in out.parent.iterdir()) == sorted(b.name for b in bags)
    for bag in bags:
        assert_valid_bag(bag)
    row, _items = export_row(pg_url)
    assert row.state == "DONE" and row.finished_at is not None


@pytest.mark.slow
@pytest.mark.fault
def test_catalog_lost_before_it_got_the_commit_removes_the_bags_and_records_failed(
    tmp_path: Path,
    pg_url: str,
    proxied_pg: tuple[str, Any],
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    url, proxy = proxied_pg
    d, limit, _ids = split_case(tmp_path, url)
    monkeypatch.setenv("LIUHEN_HOME", str(d.app.settings.data_dir))
    monkeypatch.setenv("LIUHEN_CATALOG_URL", url)
    out = tmp_path / "out" / "case"
    lose_connection_at_the_done_commit(monkeypatch, d.app, proxy, committed=False, reachable=True)
    r = run_cli(
        capsys,
        "export",
        "--case",
        CASE,
        "--decode",
        "none",
        "--out",
        str(out),
        "--max-bag-size",
        str(limit),
    )
    # Not recorded: said as the catalog being unreachable, nothing left half-done.
    assert r.code == 69 and "unreachable" in r.err, r.out + r.err
    assert list(out.parent.iterdir()) == []
    row, items = export_row(pg_url)
    assert row.state == "FAILED" and items == 0


@pytest.mark.slow
@pytest.mark.fault
def test_catalog_lost_before_it_got_the_commit_is_settled_by_the_next_run(
    tmp_path: Path,
    pg_url: str,
    proxied_pg: tuple[str, Any],
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Unreachable, the export cannot tell a lost COMMIT from a lost reply: it keeps the
    bags as for the latter, and the next run, finding the export still RUNNING, removes
    them."""
    url, proxy = proxied_pg
    d, limit, _ids = split_case(tmp_path, url)
    monkeypatch.setenv("LIUHEN_HOME", str(d.app.settings.data_dir))
    monkeypatch.setenv("LIUHEN_CATALOG_URL", url)
    out = tmp_path / "out" / "case"
    lose_connection_at_the_done_commit(monkeypatch, d.app, proxy, committed=False, reachable=False)
    lost = run_cli(
        capsys,
        "export",
        "--case",
        CASE,
        "--decode",
        "none",
        "--out",
        str(out),
        "--max-bag-size",
        str(limit),
    )
    assert lost.code == 69 and "stopped answering while export" in lost.err, lost.err
    row, items = export_row(pg_url)
    assert row.state == "RUNNING" and items == 0
    partials = sorted(p.name for p in out.parent.iterdir())
    assert len(partials) > 1 and all(p.endswith(".partial") for p in partials)

    monkeypatch.undo()
    proxy.restore()
    monkeypatch.setenv("LIUHEN_HOME", str(d.app.settings.data_dir))
    monkeypatch.setenv("LIUHEN_CATALOG_URL", url)
    again = run_cli(
        capsys,
        "export",
        "--case",
        CASE,
        "--decode",
        "none",
        "--json",
        "--out",
        str(tmp_path / "out" / "again"),
    )
    assert again.code == 0, again.out + again.err
    (note,) = json.loads(again.out)["reconciled"]
    assert note.startswith(f"export {row.uid} (RUNNING") and "recorded FAILED" in note, note
    assert sorted(p.name for p in out.parent.iterdir()) == ["again"]
    failed, items = export_row(pg_url)
    assert failed.state == "FAILED" and items == 0
