"""`liuhen verify BUNDLE`: every corruption of a bag is found and named, on real bags.

Bags come from three makers: bagit-python (``bagit.make_bag``, an independent tool),
hand-written old-version bags (0.93, 0.96, 0.97), and a 留痕-layout bag written by
``bench.verify.write_bag`` around a custody excerpt made by the real
``catalog.custody.append_event`` on a temporary SQLite catalog.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
import tarfile
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import bagit
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from sqlalchemy import select

from archive_export import bagparse
from archive_export.bagverify import (
    CUSTODY_FILE,
    SIGNATURE_FILE,
    BagReport,
    BagUnusable,
    verify_bag,
)
from archive_export.parallel_hash import SPLIT_MIN, FileSource, Item, hash_items
from bench.verify import encode_path, key_row, write_bag
from catalog import Catalog, Signer, append_event, register_station
from catalog.custody import canonical_bytes
from catalog.models import CustodyEvent, SigningKey
from catalog.signing import key_id_of, public_raw
from tests.cli_helpers import run_cli

STATION = "xh-kangjian-01"
VID1 = "data/originals/A123456/2026-11-26/VID_0001.MP4"
VID2 = "data/originals/A123456/2026-11-26/VID_0002.MP4"
WAV = "data/originals/unknown-device/undated/录音 0001.WAV"
PACKAGE = "data/metadata/package.xml"


@dataclass
class Made:
    root: Path
    key: Ed25519PrivateKey
    key_id: str


def _payload() -> dict[str, bytes]:
    rnd = os.urandom
    return {
        VID1: rnd(300_000),
        VID2: rnd(SPLIT_MIN + 12_345),  # big enough for the per-algorithm mmap path
        WAV: rnd(70_000),
        PACKAGE: b"<?xml version='1.0'?><package/>\n",
    }


def _custody_excerpt(
    tmp: Path, key: Ed25519PrivateKey, originals: dict[str, bytes]
) -> tuple[list[dict[str, object]], list[dict[str, object]]]:
    """Real custody events from a real catalog, exported as the bag layout says."""
    catalog = Catalog(f"sqlite:///{tmp / 'excerpt.sqlite3'}")
    catalog.upgrade()
    signer = Signer(STATION, key)
    with catalog.transaction() as s:
        register_station(s, signer)
        for rel, data in sorted(originals.items()):
            sha, sm3 = hashlib.sha256(data).hexdigest(), hashlib.new("sm3", data).hexdigest()
            common = {"docking": "d-1", "path": rel.rsplit("/", 1)[-1], "size": len(data)}
            append_event(
                s,
                signer,
                actor=f"station:{STATION}",
                action="offloaded",
                object_type="recording",
                object_id=sha,
                details=common | {"sm3": sm3},
            )
            append_event(
                s,
                signer,
                actor=f"station:{STATION}",
                action="stored",
                object_type="recording",
                object_id=sha,
                details={"key": f"sha256/{sha[:2]}/{sha[2:4]}/{sha}"},
            )
    with catalog.session() as s:
        events = [
            {
                c: getattr(e, c)
                for c in (
                    "station_id",
                    "seq",
                    "at",
                    "actor",
                    "action",
                    "object_type",
                    "object_id",
                    "details",
                    "prev_hash",
                    "event_hash",
                    "key_id",
                    "signature",
                )
            }
            for e in s.scalars(select(CustodyEvent).order_by(CustodyEvent.seq))
        ]
        keys: list[dict[str, object]] = [
            {
                "key_id": k.key_id,
                "station_id": k.station_id,
                "public_key_hex": k.public_key.hex(),
                "created_at": k.created_at.isoformat(),
                "retired_at": None,
            }
            for k in s.scalars(select(SigningKey))
        ]
    catalog.dispose()
    return events, keys


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> Made:
    tmp = tmp_path_factory.mktemp("template")
    root = tmp / "bag"
    payload = _payload()
    for rel, data in payload.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_bytes(data)
    key = Ed25519PrivateKey.generate()
    events, keys = _custody_excerpt(
        tmp, key, {r: d for r, d in payload.items() if r.startswith("data/originals/")}
    )
    write_bag(
        root, key=key, custody=events, keys=keys, info={"Liuhen-Case-Id": "沪徐市监罚〔2026〕123号"}
    )
    return Made(root, key, key_id_of(public_raw(key.public_key())))


@pytest.fixture
def bag(template: Made, tmp_path: Path) -> Made:
    root = tmp_path / "bag"
    shutil.copytree(template.root, root)
    return Made(root, template.key, template.key_id)


def errors(report: BagReport) -> set[tuple[str, str]]:
    return {(f.kind, f.path) for f in report.errors}


def flip(path: Path, offset: int) -> None:
    data = bytearray(path.read_bytes())
    data[offset] ^= 0x01
    path.write_bytes(bytes(data))


def rewrite(path: Path, change: Callable[[str], str]) -> None:
    path.write_text(change(path.read_text(encoding="utf-8")), encoding="utf-8")


# -- a good bag --------------------------------------------------------------------------------


def test_liuhen_bag_is_valid_and_signed(bag: Made) -> None:
    report = verify_bag(bag.root)
    assert report.ok, [f.describe() for f in report.errors]
    assert not report.warnings, [f.describe() for f in report.warnings]
    assert report.liuhen and report.version == "1.0" and report.container == "directory"
    assert report.algorithms == ["sha256", "sha512", "sm3"]
    assert report.payload_files == 6  # 4 files + custody.jsonl + keys.json
    assert report.signature == {
        "status": "valid",
        "key_id": bag.key_id,
        "declared_key_id": bag.key_id,
        "trusted_by": [],
        "trust": "self-declared",
    }
    assert report.custody["events"] == 7 and report.custody["ok"]  # key-registered + 3 × 2
    assert report.custody["links_checked"] == 6
    # An independent validator agrees (it checks SHA-256 and SHA-512 but skips SM3).
    bagit.Bag(str(bag.root)).validate()


def test_trusted_and_untrusted_signing_key(bag: Made) -> None:
    trusted = verify_bag(bag.root, trusted={STATION: {bag.key_id}})
    assert trusted.ok and trusted.signature["trust"] == "trusted"
    assert trusted.signature["trusted_by"] == [STATION]
    other = key_id_of(public_raw(Ed25519PrivateKey.generate().public_key()))
    untrusted = verify_bag(bag.root, trusted={STATION: {other}})
    assert ("untrusted-key", "signing-key.pem") in errors(untrusted)
    # Custody events signed by a key the ring does not pin for their station.
    assert any(f.kind == "custody-untrusted-key" for f in untrusted.errors)


# -- the corruption matrix --------------------------------------------------------------------


def _flip_payload(b: Made) -> None:
    flip(b.root / VID1, 1000)


def _flip_big_payload(b: Made) -> None:
    flip(b.root / VID2, SPLIT_MIN + 1)


def _flip_tag_file(b: Made) -> None:
    flip(b.root / "VERIFY.txt", 3)


def _flip_sm3_manifest(b: Made) -> None:
    def change(text: str) -> str:
        lines = text.splitlines(keepends=True)
        for i, line in enumerate(lines):
            if line.endswith(f"{VID1}\n"):
                lines[i] = ("0" if line[0] != "0" else "1") + line[1:]
        return "".join(lines)

    rewrite(b.root / "manifest-sm3.txt", change)


def _missing_file(b: Made) -> None:
    (b.root / WAV).unlink()


def _extra_file(b: Made) -> None:
    (b.root / "data" / "originals" / "extra.bin").write_bytes(b"smuggled in")


def _duplicate_line(b: Made) -> None:
    rewrite(b.root / "manifest-sha256.txt", lambda t: t + t.splitlines(keepends=True)[0])


def _dotdot_path(b: Made) -> None:
    rewrite(b.root / "manifest-sha256.txt", lambda t: t + f"{'0' * 64}  data/../../../etc/passwd\n")


def _malformed_bagit_txt(b: Made) -> None:
    (b.root / "bagit.txt").write_bytes(b"BagIt-Version : 1.0\nTag-File-Character-Encoding: UTF-8\n")


def _bad_signature(b: Made) -> None:
    flip(b.root / SIGNATURE_FILE, 10)


def _edited_custody_line(b: Made) -> None:
    path = b.root / CUSTODY_FILE
    lines = path.read_text(encoding="utf-8").splitlines()
    ev = json.loads(lines[3])
    assert ev["seq"] == 4 and ev["action"] == "offloaded"  # VID2's: change its size
    details = json.loads(ev["details"])
    details["size"] = details["size"] + 1 if details["size"] % 10 != 9 else details["size"] - 1
    ev["details"] = json.dumps(details, sort_keys=True, separators=(",", ":"))
    lines[3] = json.dumps(ev, ensure_ascii=False, sort_keys=True)
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


MATRIX: list[tuple[str, Callable[[Made], None], set[tuple[str, str]]]] = [
    ("payload byte", _flip_payload, {("checksum-mismatch", VID1)}),
    ("payload byte, mapped file", _flip_big_payload, {("checksum-mismatch", VID2)}),
    ("tag file byte", _flip_tag_file, {("checksum-mismatch", "VERIFY.txt")}),
    # The custody event that recorded VID1's SM3 at offload now disagrees with the manifest.
    (
        "SM3 manifest only",
        _flip_sm3_manifest,
        {
            ("checksum-mismatch", VID1),
            ("checksum-mismatch", "manifest-sm3.txt"),
            ("custody-digest-mismatch", CUSTODY_FILE),
        },
    ),
    ("missing file", _missing_file, {("missing-file", WAV), ("oxum-mismatch", "bag-info.txt")}),
    (
        "extra file",
        _extra_file,
        {("unexpected-file", "data/originals/extra.bin"), ("oxum-mismatch", "bag-info.txt")},
    ),
    (
        "duplicated manifest line",
        _duplicate_line,
        {("duplicate-entry", "manifest-sha256.txt"), ("checksum-mismatch", "manifest-sha256.txt")},
    ),
    (
        "../ path",
        _dotdot_path,
        {("unsafe-path", "manifest-sha256.txt"), ("checksum-mismatch", "manifest-sha256.txt")},
    ),
    (
        "malformed bagit.txt",
        _malformed_bagit_txt,
        {("bagit-txt", "bagit.txt"), ("checksum-mismatch", "bagit.txt")},
    ),
    ("bad signature", _bad_signature, {("bad-signature", SIGNATURE_FILE)}),
    (
        "edited custody line",
        _edited_custody_line,
        {
            ("custody-edited", CUSTODY_FILE),
            ("custody-bad-signature", CUSTODY_FILE),
            ("custody-digest-mismatch", CUSTODY_FILE),
            ("checksum-mismatch", CUSTODY_FILE),
        },
    ),
]


@pytest.mark.parametrize(
    ("mutate", "expected"), [(m, e) for _, m, e in MATRIX], ids=[n for n, _, _ in MATRIX]
)
def test_corruption_is_detected_and_named(
    bag: Made, mutate: Callable[[Made], None], expected: set[tuple[str, str]]
) -> None:
    mutate(bag)
    report = verify_bag(bag.root)
    assert not report.ok
    assert errors(report) == expected, [f.describe() for f in report.errors]


def test_sm3_only_corruption_names_the_algorithm(bag: Made) -> None:
    _flip_sm3_manifest(bag)
    (finding,) = [f for f in verify_bag(bag.root).errors if f.path == VID1]
    assert "sm3" in finding.detail and "manifest-sm3.txt" in finding.detail


def test_payload_corruption_fails_every_algorithm(bag: Made) -> None:
    _flip_payload(bag)
    details = [f.detail for f in verify_bag(bag.root).errors]
    assert sorted(d.split()[0] for d in details) == ["sha256", "sha512", "sm3"]


def test_edited_custody_event_is_named(bag: Made) -> None:
    _edited_custody_line(bag)
    (edited,) = [f for f in verify_bag(bag.root).errors if f.kind == "custody-edited"]
    assert f"station {STATION} event #4" in edited.detail and edited.line == 4


def test_every_corruption_at_once_is_reported_by_the_command(
    bag: Made, capsys: pytest.CaptureFixture[str]
) -> None:
    for _, mutate, _ in MATRIX:
        if mutate is not _malformed_bagit_txt:  # kept, so the other checks still run as 1.0
            mutate(bag)
    result = run_cli(capsys, "verify", str(bag.root))
    assert result.code == 1
    for path in (
        VID1,
        VID2,
        "VERIFY.txt",
        WAV,
        "data/originals/extra.bin",
        "manifest-sha256.txt",
        "../../../etc/passwd",
        SIGNATURE_FILE,
        CUSTODY_FILE,
    ):
        assert path in result.out, path
    as_json = run_cli(capsys, "verify", "--json", str(bag.root))
    doc = json.loads(as_json.out)
    assert as_json.code == 1 and doc["ok"] is False
    kinds = {e["kind"] for e in doc["errors"]}
    assert {
        "checksum-mismatch",
        "missing-file",
        "unexpected-file",
        "duplicate-entry",
        "unsafe-path",
        "bad-signature",
        "custody-edited",
        "oxum-mismatch",
    } <= kinds


def test_valid_bag_exit_zero(bag: Made, capsys: pytest.CaptureFixture[str]) -> None:
    result = run_cli(capsys, "verify", str(bag.root))
    assert result.code == 0, result.out + result.err
    assert "valid" in result.out and "signature: valid" in result.out


# -- keys and signatures -----------------------------------------------------------------------


def test_swapped_key_with_resigned_tagmanifest_is_caught(bag: Made) -> None:
    """An attacker replaces the key and re-signs: the declared key id no longer matches."""
    rogue = Ed25519PrivateKey.generate()
    from cryptography.hazmat.primitives import serialization

    (bag.root / "signing-key.pem").write_bytes(
        rogue.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )
    report = verify_bag(bag.root)
    assert ("key-id-mismatch", "signing-key.pem") in errors(report)
    assert ("bad-signature", SIGNATURE_FILE) in errors(report)


def test_completely_remade_bag_is_caught_only_by_a_key_ring(bag: Made, tmp_path: Path) -> None:
    """Re-bagging everything with a rogue key verifies by itself; the key ring catches it."""
    rogue = Ed25519PrivateKey.generate()
    for name in os.listdir(bag.root):
        if name != "data":
            (bag.root / name).unlink()
    events = [
        json.loads(line)
        for line in (bag.root / CUSTODY_FILE).read_text(encoding="utf-8").splitlines()
    ]
    keys = json.loads((bag.root / "data/metadata/keys.json").read_text())["keys"]
    (bag.root / CUSTODY_FILE).unlink()
    write_bag(bag.root, key=rogue, custody=events, keys=keys)
    assert verify_bag(bag.root).ok
    ring = verify_bag(bag.root, trusted={STATION: {bag.key_id}})
    assert ("untrusted-key", "signing-key.pem") in errors(ring)


def test_key_ring_fails_a_rebagged_unsigned_bag(
    bag: Made, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Tampered payload re-bagged by another tool, signature and Liuhen-* labels dropped:
    fine as an unsigned bag on its own, but an auditor with a key ring asked for a trusted
    signature, and an unsigned bag has none."""
    flip(bag.root / VID1, 1000)
    for name in os.listdir(bag.root):
        if name != "data":
            (bag.root / name).unlink()
    payload = tmp_path / "payload"
    (bag.root / "data").rename(payload)
    bag.root.rmdir()
    payload.rename(bag.root)
    bagit.make_bag(str(bag.root), checksums=["sha256", "sha512"])
    assert verify_bag(bag.root).ok  # nothing claims authenticity: "not signed"
    ring = verify_bag(bag.root, trusted={STATION: {bag.key_id}})
    assert ("not-signed", SIGNATURE_FILE) in errors(ring)
    keyring = tmp_path / "ring.txt"
    keyring.write_text(f"{STATION} {bag.key_id}\n")
    assert run_cli(capsys, "verify", "--trust", str(keyring), str(bag.root)).code == 1


def test_empty_key_ring_trusts_nothing(
    bag: Made, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A key ring file with no keys (only comments) must not silently mean "no ring"."""
    keyring = tmp_path / "ring.txt"
    keyring.write_text("# keys to be filled in\n")
    result = run_cli(capsys, "verify", "--json", "--trust", str(keyring), str(bag.root))
    assert result.code == 1
    doc = json.loads(result.out)
    assert doc["signature"]["trust"] == "untrusted"
    assert "untrusted-key" in {e["kind"] for e in doc["errors"]}


def test_liuhen_bag_without_signature_is_invalid(bag: Made) -> None:
    (bag.root / SIGNATURE_FILE).unlink()
    (bag.root / "signing-key.pem").unlink()
    report = verify_bag(bag.root)
    assert ("not-signed", SIGNATURE_FILE) in errors(report)
    assert ("missing-file", "signing-key.pem") in errors(report)


def test_custody_signature_and_links(bag: Made) -> None:
    path = bag.root / CUSTODY_FILE
    lines = path.read_text(encoding="utf-8").splitlines()
    # Re-hash an edited event consistently: only the signature can tell.
    ev = json.loads(lines[4])
    ev["actor"] = "someone-else"
    fields = {
        k: ev[k]
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
    ev["event_hash"] = hashlib.sha256(canonical_bytes(**fields)).hexdigest()
    lines[4] = json.dumps(ev)
    del lines[6]  # event #7 gone: #6 → #8 is not consecutive, so no link claim there
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    kinds = [(f.kind, f.line) for f in verify_bag(bag.root).errors if f.path == CUSTODY_FILE]
    assert ("custody-bad-signature", 5) in kinds
    assert ("custody-broken-link", 6) in kinds  # event #6 no longer follows the new #5 hash


def test_keys_json_with_a_replaced_key(bag: Made) -> None:
    path = bag.root / "data/metadata/keys.json"
    doc = json.loads(path.read_text())
    doc["keys"][0]["public_key_hex"] = public_raw(Ed25519PrivateKey.generate().public_key()).hex()
    path.write_text(json.dumps(doc))
    kinds = {f.kind for f in verify_bag(bag.root).errors}
    assert {"custody-key-mismatch", "custody-unknown-key"} <= kinds


# -- tars ---------------------------------------------------------------------------------------


def _tar(src: Path, dest: Path, mode: str = "w") -> Path:
    with tarfile.open(dest, mode) as tf:  # type: ignore[call-overload]
        tf.add(src, arcname="export-2026-001")
    return dest


def test_tar_bag_valid_and_corrupt(
    bag: Made, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    good = verify_bag(_tar(bag.root, tmp_path / "good.tar"))
    assert good.ok and good.container == "tar", [f.describe() for f in good.errors]
    assert good.signature["status"] == "valid" and good.custody["ok"]
    _flip_payload(bag)
    _flip_sm3_manifest(bag)
    bad = verify_bag(_tar(bag.root, tmp_path / "bad.tar"))
    assert ("checksum-mismatch", VID1) in errors(bad)
    assert ("checksum-mismatch", "manifest-sm3.txt") in errors(bad)
    assert run_cli(capsys, "verify", str(tmp_path / "bad.tar")).code == 1


def test_compressed_tar_is_streamed(bag: Made, tmp_path: Path) -> None:
    good = verify_bag(_tar(bag.root, tmp_path / "good.tar.gz", "w:gz"))
    assert good.ok and good.container == "tar-stream", [f.describe() for f in good.errors]
    flip(bag.root / WAV, 5)
    bad = verify_bag(_tar(bag.root, tmp_path / "bad.tar.gz", "w:gz"))
    assert errors(bad) == {("checksum-mismatch", WAV)}


@pytest.mark.parametrize("prefix", ["", "./"])
def test_compressed_tar_with_the_bag_at_its_top(bag: Made, tmp_path: Path, prefix: str) -> None:
    """`tar czf bag.tgz -C bag .` (members ./, ./data/…, in directory order) or a tar
    whose first members are data/…: the bag root is the tar's top, not data/ or ./."""
    dest = tmp_path / "top.tar.gz"
    paths = sorted(
        (p for p in bag.root.rglob("*")),
        key=lambda p: (not str(p.relative_to(bag.root)).startswith("data"), str(p)),
    )
    with tarfile.open(dest, "w:gz") as tf:
        if prefix:
            tf.add(bag.root, arcname=".", recursive=False)
        for p in paths:
            tf.add(p, arcname=prefix + str(p.relative_to(bag.root)), recursive=False)
    report = verify_bag(dest)
    assert report.container == "tar-stream"
    assert report.ok, [f.describe() for f in report.errors]
    assert report.signature["status"] == "valid" and report.payload_files == 6


@pytest.mark.parametrize("alias", ["bag/./data/a.txt", "bag//data/a.txt", "./bag/data/./a.txt"])
@pytest.mark.parametrize("mode", ["w", "w:gz"])
def test_tar_member_aliasing_a_payload_file_is_caught(
    tmp_path: Path, alias: str, mode: str
) -> None:
    """A later member whose name reaches the same file through '.' or '//' replaces the
    payload file on extraction (GNU tar, any file system): it must not pass as a harmless
    tag file, even in another tool's bag (where an unlisted tag file is only a warning)."""
    src = _plain_dir(tmp_path)
    bagit.make_bag(str(src), checksums=["sha256"])
    dest = tmp_path / "aliased.tar"
    with tarfile.open(dest, mode) as tf:  # type: ignore[call-overload]
        tf.add(src, arcname="bag")
        info = tarfile.TarInfo(alias)
        info.size = 5
        tf.addfile(info, io.BytesIO(b"EVIL\n"))
    report = verify_bag(dest)
    assert ("duplicate-member", "data/a.txt") in errors(report), [
        f.describe() for f in report.findings
    ]


def test_tar_members_that_escape_are_rejected(bag: Made, tmp_path: Path) -> None:
    dest = _tar(bag.root, tmp_path / "evil.tar")
    with tarfile.open(dest, "a") as tf:
        data = b"owned"
        for name in ("../escape.txt", "/etc/evil.txt"):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
        link = tarfile.TarInfo("export-2026-001/data/originals/link")
        link.type, link.linkname = tarfile.SYMTYPE, "/etc/passwd"
        tf.addfile(link)
    report = verify_bag(dest)
    assert ("unsafe-path", "../escape.txt") in errors(report)
    assert ("unsafe-path", "/etc/evil.txt") in errors(report)
    assert ("link", "data/originals/link") in errors(report)
    assert not (tmp_path / "escape.txt").exists()


# -- unusable input: exit 2 -------------------------------------------------------------------


def test_unusable_inputs_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "empty").mkdir()
    (tmp_path / "garbage.tar").write_bytes(os.urandom(3000))
    with tarfile.open(tmp_path / "nobag.tar", "w") as tf:
        info = tarfile.TarInfo("x/readme.txt")
        tf.addfile(info, io.BytesIO(b""))
    for target in ("empty", "nobag.tar", "missing-dir"):
        with pytest.raises(BagUnusable):
            verify_bag(tmp_path / target)
        result = run_cli(capsys, "verify", str(tmp_path / target))
        assert result.code == 2, (target, result.out, result.err)
    result = run_cli(capsys, "verify", "--json", str(tmp_path / "empty"))
    assert result.code == 2 and json.loads(result.out)["usable"] is False


# -- other tools' bags and older versions -----------------------------------------------------


def _plain_dir(tmp_path: Path) -> Path:
    src = tmp_path / "plain"
    (src / "sub dir").mkdir(parents=True)
    (src / "a.txt").write_bytes(b"hello\n")
    (src / "sub dir" / "b.bin").write_bytes(os.urandom(5000))
    return src


def test_bagit_python_bag_is_valid_not_signed(tmp_path: Path) -> None:
    src = _plain_dir(tmp_path)
    bagit.make_bag(str(src), {"Contact-Name": "Auditor"}, checksums=["md5", "sha256", "sha512"])
    report = verify_bag(src)
    assert report.ok and not report.liuhen and report.signature == {"status": "not signed"}
    assert report.algorithms == ["md5", "sha256", "sha512"]
    flip(src / "data" / "sub dir" / "b.bin", 7)
    (src / "data" / "new.txt").write_text("x")
    assert errors(verify_bag(src)) == {
        ("checksum-mismatch", "data/sub dir/b.bin"),
        ("unexpected-file", "data/new.txt"),
        ("oxum-mismatch", "bag-info.txt"),
    }


def test_foreign_bag_with_an_sm3_manifest(tmp_path: Path) -> None:
    src = _plain_dir(tmp_path)
    bagit.make_bag(str(src), checksums=["sha256"])
    lines = [
        f"{hashlib.new('sm3', p.read_bytes()).hexdigest()}  {p.relative_to(src)}\n"
        for p in sorted((src / "data").rglob("*"))
        if p.is_file()
    ]
    (src / "manifest-sm3.txt").write_text("".join(lines))
    assert verify_bag(src).ok
    flip(src / "data" / "a.txt", 0)
    # Restore the SHA-256 line so that only SM3 can see it.
    good = hashlib.sha256((src / "data" / "a.txt").read_bytes()).hexdigest()
    rewrite(
        src / "manifest-sha256.txt",
        lambda t: "".join(
            good + "  data/a.txt\n" if line.endswith("data/a.txt\n") else line
            for line in t.splitlines(keepends=True)
        ),
    )
    report = verify_bag(src)
    assert ("checksum-mismatch", "data/a.txt") in errors(report)
    (finding,) = [f for f in report.errors if f.path == "data/a.txt"]
    assert finding.detail.startswith("sm3")


def _hand_bag(
    root: Path,
    version: str,
    files: dict[str, bytes],
    *,
    alg: str = "md5",
    info_name: str = "bag-info.txt",
    tag_alg: str | None = None,
    manifest_lines: list[str] | None = None,
) -> Path:
    root.mkdir()
    (root / "bagit.txt").write_text(
        f"BagIt-Version: {version}\nTag-File-Character-Encoding: UTF-8\n"
    )
    for rel, data in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_bytes(data)
    size = sum(len(d) for d in files.values())
    (root / info_name).write_text(
        f"Source-Organization: Somewhere\nPayload-Oxum: {size}.{len(files)}\n"
        "External-Description: a long description that a tool folded\n"
        "  onto a second line\n"
    )
    lines = (
        manifest_lines
        if manifest_lines is not None
        else [f"{hashlib.new(alg, d).hexdigest()}  {rel}\n" for rel, d in files.items()]
    )
    (root / f"manifest-{alg}.txt").write_text("".join(lines))
    if tag_alg:
        tags = ["bagit.txt", info_name, f"manifest-{alg}.txt"]
        (root / f"tagmanifest-{tag_alg}.txt").write_text(
            "".join(
                f"{hashlib.new(tag_alg, (root / t).read_bytes()).hexdigest()} {t}\n" for t in tags
            )
        )
    return root


FILES = {"data/one.txt": b"one\n", "data/dir/two 2.txt": b"two\n", "data/a%25b.txt": b"pc"}


@pytest.mark.parametrize(
    ("version", "info_name", "tag_alg"),
    [
        ("0.93", "package-info.txt", None),
        ("0.95", "package-info.txt", None),
        ("0.96", "bag-info.txt", "md5"),
        ("0.97", "bag-info.txt", "sha1"),
    ],
)
def test_old_versions_are_valid(
    tmp_path: Path, version: str, info_name: str, tag_alg: str | None
) -> None:
    # Before 1.0 paths were not percent-encoded: "a%25b.txt" is that literal name.
    root = _hand_bag(tmp_path / "b", version, FILES, info_name=info_name, tag_alg=tag_alg)
    report = verify_bag(root)
    assert report.ok and not report.warnings, [f.describe() for f in report.findings]
    assert report.version == version
    flip(root / "data" / "one.txt", 0)
    assert errors(verify_bag(root)) == {("checksum-mismatch", "data/one.txt")}


def test_version_differences(tmp_path: Path) -> None:
    # The same literal name in a 1.0 bag means "a%b.txt": missing, and a%25b.txt unexpected.
    v1 = _hand_bag(tmp_path / "v1", "1.0", FILES)
    assert {("missing-file", "data/a%b.txt"), ("unexpected-file", "data/a%25b.txt")} <= errors(
        verify_bag(v1)
    )
    # A 0.95 bag with bag-info.txt instead of package-info.txt: a warning.
    v95 = _hand_bag(tmp_path / "v95", "0.95", FILES)
    report = verify_bag(v95)
    assert report.ok and any(f.kind == "version" for f in report.warnings)
    # A duplicate line with the same checksum: a warning before 1.0, an error in 1.0.
    dup = [f"{hashlib.md5(b'one' + bytes([10])).hexdigest()}  data/one.txt\n"] * 2
    old = _hand_bag(tmp_path / "old", "0.97", {"data/one.txt": b"one\n"}, manifest_lines=dup)
    assert verify_bag(old).ok
    new = _hand_bag(tmp_path / "new", "1.0", {"data/one.txt": b"one\n"}, manifest_lines=dup)
    assert ("duplicate-entry", "manifest-md5.txt") in errors(verify_bag(new))


def test_percent_encoded_names_in_1_0(tmp_path: Path) -> None:
    names = {"data/100% done.txt": b"a", "data/line\nbreak.txt": b"b", "data/cr\rname": b"c"}
    lines = [f"{hashlib.sha256(d).hexdigest()} {encode_path(r)}\n" for r, d in names.items()]
    root = _hand_bag(tmp_path / "b", "1.0", names, alg="sha256", manifest_lines=lines)
    report = verify_bag(root)
    assert report.ok, [f.describe() for f in report.findings]


def test_unicode_normalisation_clash_is_a_warning(tmp_path: Path) -> None:
    nfc, nfd = "data/caf\u00e9.txt", "data/cafe\u0301.txt"
    files = {nfc: b"1", nfd: b"2"}
    root = _hand_bag(tmp_path / "b", "1.0", files)
    report = verify_bag(root)
    assert report.ok
    assert [f.kind for f in report.warnings] == ["normalization-clash"]


def test_structure_errors_all_reported(tmp_path: Path) -> None:
    root = _hand_bag(
        tmp_path / "b",
        "1.0",
        {"data/x.txt": b"x"},
        manifest_lines=[
            "nothex  data/x.txt\n",
            f"{hashlib.md5(b'x').hexdigest()}  /etc/passwd\n",
            f"{hashlib.md5(b'x').hexdigest()}  bagit.txt\n",
            "lonely-token\n",
        ],
    )
    (root / "bag-info.txt").write_text(
        "Good: yes\nno colon here\n  \nPayload-Oxum: 1.1\nPayload-Oxum: 1.1\n"
    )
    (root / "data" / "link").symlink_to("/etc/passwd")
    found = errors(verify_bag(root))
    assert {
        ("manifest-format", "manifest-md5.txt"),
        ("unsafe-path", "manifest-md5.txt"),
        ("path-outside-data", "manifest-md5.txt"),
        ("bag-info", "bag-info.txt"),
        ("link", "data/link"),
        ("checksum-mismatch", "data/x.txt"),
    } <= found


def test_bagit_txt_strictness() -> None:
    good = bagparse.parse_bagit_txt(b"BagIt-Version: 1.0\nTag-File-Character-Encoding: UTF-8\n")
    assert not good.findings and good.version == (1, 0)
    for bad in (
        b"BagIt-Version : 1.0\nTag-File-Character-Encoding: UTF-8\n",
        b"BagIt-Version:1.0\nTag-File-Character-Encoding: UTF-8\n",
        b"Tag-File-Character-Encoding: UTF-8\nBagIt-Version: 1.0\n",
        b"BagIt-Version: 1.0\n",
        b"BagIt-Version: one\nTag-File-Character-Encoding: UTF-8\n",
        b"BagIt-Version: 1.0\nTag-File-Character-Encoding: KLINGON\n",
        b"\xef\xbb\xbfBagIt-Version: 1.0\nTag-File-Character-Encoding: UTF-8\n",
        b"BagIt-Version: 1.0\nTag-File-Character-Encoding: UTF-8\nExtra: line\n",
    ):
        parsed = bagparse.parse_bagit_txt(bad)
        assert any(f.severity == "error" for f in parsed.findings), bad


def test_bag_info_continuation_lines() -> None:
    info = bagparse.parse_bag_info("A: one\nB: two\n  continued\n\tand more\nC: three\n")
    assert info.items == [("A", "one"), ("B", "two continued and more"), ("C", "three")]
    assert not info.findings
    good = bagparse.parse_bag_info("Bag-Count: 2 of 3\nBagging-Date: 2026-11-26\n")
    assert not good.findings
    bad = bagparse.parse_bag_info("Bag-Count: 4 of 3\nBagging-Date: 26/11/2026\n")
    assert [f.severity for f in bad.findings] == ["error", "warning"]


# -- the hashing engine -------------------------------------------------------------------------


@pytest.mark.parametrize(("workers", "split_max"), [(1, None), (2, None), (2, SPLIT_MIN)])
def test_parallel_hashes_equal_hashlib(tmp_path: Path, workers: int, split_max: int | None) -> None:
    """Every path of the engine: small groups, per-algorithm mappings, lockstep slices."""
    sizes = [
        0,
        1,
        2047,
        2049,
        100_000,
        SPLIT_MIN - 1,
        SPLIT_MIN,
        SPLIT_MIN + 3_000_001,
        40_000_003,
    ]  # the last spans several lockstep slices
    items = []
    for i, size in enumerate(sizes):
        p = tmp_path / f"f{i}"
        p.write_bytes(os.urandom(size))
        items.append(Item(p.name, FileSource(p, size), ("md5", "sha256", "sha512", "sm3")))
    items.append(Item("gone", FileSource(tmp_path / "gone", 10), ("sha256",)))
    out = hash_items(items, workers=workers, split_max=split_max)
    for i, _ in enumerate(sizes):
        data = (tmp_path / f"f{i}").read_bytes()
        assert out[f"f{i}"].digests == {
            a: hashlib.new(a, data).hexdigest() for a in ("md5", "sha256", "sha512", "sm3")
        }
        assert out[f"f{i}"].size == len(data)
    assert out["gone"].error and "cannot read" in out["gone"].error


def test_key_row_matches_catalog_scheme() -> None:
    key = Ed25519PrivateKey.generate()
    row = key_row(key, STATION)
    assert row["key_id"] == key_id_of(bytes.fromhex(str(row["public_key_hex"])))


def test_large_custody_excerpt_checked_in_a_child_process(tmp_path: Path) -> None:
    """Past CUSTODY_FORK_MIN events the check runs in a forked child; findings come back."""
    from archive_export import bagverify
    from bench.verify import signed_events

    root = tmp_path / "bag"
    objects = []
    for i in range(200):
        data = os.urandom(64) + i.to_bytes(4, "big")
        p = root / "data" / "originals" / "D1" / "2026-11-26" / f"IMG_{i:04d}.JPG"
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(data)
        objects.append(
            (hashlib.sha256(data).hexdigest(), hashlib.new("sm3", data).hexdigest(), len(data))
        )
    key = Ed25519PrivateKey.generate()
    events = signed_events(key, STATION, objects)
    assert len(events) > bagverify.CUSTODY_FORK_MIN
    events[400]["actor"] = "station:forged"
    write_bag(root, key=key, custody=events, keys=[key_row(key, STATION)])
    alone = threading.active_count() == 1  # with other threads it stays inline, by design
    report = verify_bag(root)
    assert report.custody["checked_in"] == ("child process" if alone else "this process")
    assert report.custody["events"] == 600 and report.custody["links_checked"] == 599
    assert {(f.kind, f.line) for f in report.errors} == {
        ("custody-edited", 401),
        ("custody-bad-signature", 401),
    }


# -- a bag written by `liuhen export` ----------------------------------------------------------


def test_real_export_verifies_and_its_corruptions_are_named(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """End to end: docked through the real station, exported by archive_export.export."""
    from datetime import UTC, datetime, timedelta

    from archive_export import fourprops
    from archive_export.export import ExportRequest, export_bundle
    from ingest.synthetic import make_bulk_files
    from tests.offload_helpers import make_app

    app = make_app(tmp_path / "data")
    make_bulk_files(tmp_path / "dock" / "A123456", 4, 30_000)
    station = app.station()
    assert station.run_docking(tmp_path / "dock" / "A123456").state == "SAFE_TO_CLEAR"
    station.close()
    now = datetime.now(UTC)
    for out in (tmp_path / "out" / "bag", tmp_path / "out" / "bag.tar"):
        export_bundle(
            app.catalog,
            app.store,
            app.signer,
            ExportRequest(
                out=out,
                date_from=now - timedelta(days=1),
                date_to=now + timedelta(days=1),
                organization="test",
                options=fourprops.Options(decode="none"),
            ),
        )
        trusted = {app.settings.station.id: {app.signer.key_id}}
        report = verify_bag(out, trusted=trusted)
        assert report.ok, [f.describe() for f in report.errors]
        assert report.liuhen and report.signature["trust"] == "trusted"
        assert report.custody["ok"] and report.custody["events"] > 0
    bag = tmp_path / "out" / "bag"
    original = sorted(p for p in (bag / "data" / "originals").rglob("*") if p.is_file())[0]
    rel = str(original.relative_to(bag))
    flip(original, 10)
    lines = (bag / CUSTODY_FILE).read_text(encoding="utf-8").splitlines()
    ev = json.loads(lines[-1])
    ev["actor"] = ev["actor"] + "x"
    lines[-1] = json.dumps(ev, ensure_ascii=False)
    (bag / CUSTODY_FILE).write_text("\n".join(lines) + "\n", encoding="utf-8")
    result = run_cli(capsys, "verify", "--json", str(bag))
    assert result.code == 1
    found = {(e["kind"], e["path"]) for e in json.loads(result.out)["errors"]}
    assert {
        ("checksum-mismatch", rel),
        ("custody-edited", CUSTODY_FILE),
        ("checksum-mismatch", CUSTODY_FILE),
    } <= found


# -- hostile input never crashes the verifier ------------------------------------------------

from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

TAG_FILES = [
    "bagit.txt",
    "bag-info.txt",
    "manifest-sha256.txt",
    "tagmanifest-sm3.txt",
    CUSTODY_FILE,
    "data/metadata/keys.json",
    SIGNATURE_FILE,
    "signing-key.pem",
]


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    target=st.sampled_from(TAG_FILES),
    junk=st.one_of(
        st.binary(max_size=300),
        st.text(max_size=200).map(lambda t: t.encode("utf-8", "surrogatepass")),
        st.lists(
            st.dictionaries(
                st.sampled_from(["seq", "station_id", "key_id", "details", "event_hash", "keys"]),
                st.one_of(
                    st.integers(),
                    st.text(max_size=5),
                    st.none(),
                    st.lists(st.integers(), max_size=2),
                ),
            ),
            max_size=3,
        ).map(lambda ds: "\n".join(json.dumps(d) for d in ds).encode()),
    ),
)
def test_garbage_in_any_tag_file_is_reported_not_a_crash(
    template: Made, tmp_path_factory: pytest.TempPathFactory, target: str, junk: bytes
) -> None:
    root = tmp_path_factory.mktemp("fuzz") / "bag"
    shutil.copytree(template.root, root)
    (root / target).write_bytes(junk)
    try:
        report = verify_bag(root)
    except BagUnusable:
        return
    assert not report.ok
    assert any(
        target in f.path or f.path in {"bagit.txt", "bag-info.txt"} or target in f.detail
        for f in report.errors
    ), [f.describe() for f in report.errors]


def test_truncated_tar_is_reported_not_a_crash(bag: Made, tmp_path: Path) -> None:
    whole = _tar(bag.root, tmp_path / "whole.tar").read_bytes()
    with tarfile.open(tmp_path / "whole.tar") as tf:
        big = tf.getmember(f"export-2026-001/{VID2}")
    # (Cutting only the zero blocks and record padding at the end loses nothing.)
    for cut in (
        100,
        5_000,
        len(whole) // 3,
        big.offset_data + big.size // 2,
        big.offset_data + big.size - 1,
    ):
        part = tmp_path / f"cut-{cut}.tar"
        part.write_bytes(whole[:cut])
        try:
            report = verify_bag(part)
        except BagUnusable:
            continue
        assert not report.ok, cut
        if cut > big.offset_data:
            assert ("unreadable", VID2) in errors(report) or ("missing-file", VID2) in errors(
                report
            ), [f.describe() for f in report.errors]
