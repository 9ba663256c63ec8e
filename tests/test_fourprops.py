"""The four-properties check (四性检测) on real exported bags: a sound bag passes offline,
as a directory and as a tar; a corrupt media file, a missing file, an encrypted MP4, a
format outside GB/T 18894 and a bag the catalog does not know are each reported."""

from __future__ import annotations

import io
import json
import shutil
import subprocess
import tarfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from archive_export.bagview import DirBag, TarBag
from archive_export.export import catalog_lookup
from archive_export.fourprops import Options, check_bag
from tests.cli_helpers import run_cli
from tests.offload_helpers import make_app
from tests.test_export import dock_and_derive, export, make_case

pytestmark = pytest.mark.slow


def checks(report: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {c["id"]: c for p in report["properties"].values() for c in p["checks"]}


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """One docked, derived and exported shift (H.264 + H.265 videos, audio, photo), as a
    directory with access copies and as a tar without."""
    tmp = tmp_path_factory.mktemp("fourprops")
    d = dock_and_derive(
        tmp, h264=1, h265=1, wav=1, jpeg=1, truncated=0, segments=0, with_device_info=False
    )
    make_case(d.app)
    bag = export(d.app, tmp / "out" / "bag", with_access=True).bags[0]
    tar = export(d.app, tmp / "out" / "plain.tar").bags[0]
    yield {
        "app": d.app,
        "bag": bag.path,
        "tar": tar.path,
        "export_report": bag.four_properties,
        "tmp": tmp,
    }
    d.app.close()


def copy_bag(exported: dict[str, Any], tmp_path: Path) -> Path:
    target = tmp_path / "bag"
    shutil.copytree(exported["bag"], target)
    return target


def test_sound_bag_passes_offline_as_directory_and_tar(exported: dict[str, Any]) -> None:
    # At export: everything it can check before the signature exists passes.
    at_export = exported["export_report"]
    assert at_export["ok"] is True and at_export["mode"] == "export"
    assert checks(at_export)["A1"]["status"] == "not-run"  # signed after the report

    for view in (DirBag(exported["bag"]), TarBag(exported["tar"])):
        report = check_bag(view)
        by_id = checks(report)
        assert report["ok"] is True, [c for c in by_id.values() if c["status"] == "fail"]
        assert by_id["A1"]["status"] == "pass"  # signature over the tag manifest verifies
        assert by_id["A2"]["status"] == "pass" and by_id["I1"]["status"] == "pass"
        assert by_id["U1"]["status"] == "pass" and by_id["U3"]["status"] == "pass"
        assert by_id["A3"]["status"] == "not-run"  # offline: no catalog
        assert by_id["S1"]["status"] in ("not-run", "pass")
        if shutil.which("clamscan") is None:
            assert "not installed" in by_id["S1"]["detail"]
        assert all(f["decode"] == "pass" for f in report["files"])


def test_format_outside_gbt18894_is_flagged_with_its_access_copy(exported: dict[str, Any]) -> None:
    with_access = checks(check_bag(DirBag(exported["bag"])))["U2"]
    hevc = [n for n in with_access["notes"] if "hevc" in n]
    assert len(hevc) == 1 and "data/access/" in hevc[0]
    without = checks(check_bag(TarBag(exported["tar"])))["U2"]
    assert without["status"] == "warn"
    assert any("hevc" in p and "--with-access" in p for p in without["problems"])


def test_corrupt_and_missing_files_are_reported(exported: dict[str, Any], tmp_path: Path) -> None:
    bag = copy_bag(exported, tmp_path)
    originals = sorted((bag / "data" / "originals").rglob("*.MP4"))
    corrupt, missing = originals[0], originals[1]
    data = corrupt.read_bytes()
    corrupt.chmod(0o644)
    corrupt.write_bytes(data[: len(data) // 2])  # the moov atom (at the end) is gone
    missing.unlink()
    report = check_bag(DirBag(bag))
    by_id = checks(report)
    rel_c = str(corrupt.relative_to(bag))
    rel_m = str(missing.relative_to(bag))
    assert report["ok"] is False
    assert any(rel_c in p and "does not decode" in p for p in by_id["U1"]["problems"])
    assert any(rel_c in p for p in by_id["A2"]["problems"])  # digest differs from manifest
    handover = by_id["I1"]["problems"]
    assert any(rel_c in p and "bytes" in p for p in handover)
    assert any(rel_m in p and "missing" in p for p in handover)
    assert any(rel_m in p for p in by_id["I2"]["problems"])
    assert report["properties"]["integrity"]["status"] == "fail"
    assert report["properties"]["usability"]["status"] == "fail"


def test_encrypted_mp4_is_reported(exported: dict[str, Any], tmp_path: Path) -> None:
    bag = copy_bag(exported, tmp_path)
    target = next((bag / "data" / "originals").rglob("*_0001.MP4"))
    encrypted = tmp_path / "enc.mp4"
    subprocess.run(
        [
            "ffmpeg",
            "-v",
            "error",
            "-nostdin",
            "-i",
            str(target),
            "-c",
            "copy",
            "-encryption_scheme",
            "cenc-aes-ctr",
            "-encryption_key",
            "76a6c65c5ea762046bd749a2e632ccbb",
            "-encryption_kid",
            "a7e61c373e219033c21091fa607bf3b8",
            str(encrypted),
        ],
        check=True,
    )
    target.chmod(0o644)
    shutil.copyfile(encrypted, target)
    by_id = checks(check_bag(DirBag(bag)))
    assert by_id["U3"]["status"] == "fail"
    assert any(str(target.relative_to(bag)) in p and "encv" in p for p in by_id["U3"]["problems"])


def test_catalog_comparison(exported: dict[str, Any], tmp_path: Path) -> None:
    ours = check_bag(DirBag(exported["bag"]), catalog=catalog_lookup(exported["app"].catalog))
    assert checks(ours)["A3"]["status"] == "pass"
    other = make_app(tmp_path / "other")  # another installation: knows none of these files
    theirs = check_bag(DirBag(exported["bag"]), catalog=catalog_lookup(other.catalog))
    a3 = checks(theirs)["A3"]
    assert a3["status"] == "fail" and all("not in the catalog" in p for p in a3["problems"])
    other.close()


def test_command_json_html_and_exit_codes(
    exported: dict[str, Any],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    html = tmp_path / "report.html"
    good = run_cli(
        capsys,
        "four-properties",
        str(exported["tar"]),
        "--json",
        "--html",
        str(html),
        "--decode",
        "full",
    )
    assert good.code == 0, good.out[-2000:]
    report = json.loads(good.out)
    assert report["ok"] is True
    assert checks(report)["U1"]["detail"].startswith("every frame")
    page = html.read_text(encoding="utf-8")
    for label in (
        "真实性",
        "Authenticity",
        "完整性",
        "Integrity",
        "可用性",
        "Usability",
        "安全性",
        "Security",
    ):
        assert label in page
    monkeypatch.setenv("LIUHEN_HOME", str(exported["app"].settings.data_dir))
    with_catalog = run_cli(
        capsys,
        "four-properties",
        str(exported["bag"]),
        "--with-catalog",
        "--json",
        "--decode",
        "none",
    )
    assert with_catalog.code == 0, with_catalog.out[-2000:]
    by_id = checks(json.loads(with_catalog.out))
    assert by_id["A3"]["status"] == "pass" and by_id["U1"]["status"] == "not-run"
    bag = copy_bag(exported, tmp_path)
    next((bag / "data" / "originals").rglob("*.WAV")).unlink()
    bad = run_cli(capsys, "four-properties", str(bag))
    assert bad.code == 1
    assert "Integrity: fail" in bad.out and ".WAV" in bad.out


def test_metadata_that_disagrees_with_the_file_is_reported(
    exported: dict[str, Any], tmp_path: Path
) -> None:
    bag = copy_bag(exported, tmp_path)
    package = bag / "data" / "metadata" / "package.xml"
    text = package.read_text(encoding="utf-8")
    assert 'width="320"' in text
    package.chmod(0o644)
    package.write_text(text.replace('width="320"', 'width="1920"', 1), encoding="utf-8")
    by_id = checks(check_bag(DirBag(bag)))
    assert any(
        "width is 320 in the file, 1920 in the descriptor" in p for p in by_id["A5"]["problems"]
    )
    assert any("package.xml" in p for p in by_id["A2"]["problems"])  # and the manifest


def test_damaged_custody_excerpt_is_reported_not_a_crash(
    exported: dict[str, Any], tmp_path: Path
) -> None:
    """A damaged bag is when the check matters most: undecodable bytes, a signature that
    is not hex and an object id that is not text are findings, not an internal error."""
    bag = copy_bag(exported, tmp_path)
    path = bag / "data/metadata/custody.jsonl"
    lines = path.read_text(encoding="utf-8").splitlines()
    first, second = json.loads(lines[0]), json.loads(lines[1])
    first["signature"] = "not hex"
    second["object_id"] = ["a", "list"]
    lines[0], lines[1] = json.dumps(first), json.dumps(second)
    path.write_bytes("\n".join(lines).encode() + b"\n\xff\xfe not UTF-8\n")
    a4 = checks(check_bag(DirBag(bag)))["A4"]
    assert a4["status"] == "fail"
    assert any("line 1" in p and "signature" in p for p in a4["problems"]), a4["problems"]
    assert any(f"line {len(lines) + 1}" in p for p in a4["problems"]), a4["problems"]


@pytest.mark.parametrize("alias", ["{top}/./{path}", "{top}//{path}", "{top}/{path}"])
def test_tar_member_replacing_a_payload_file_fails_the_check(
    exported: dict[str, Any], tmp_path: Path, alias: str
) -> None:
    """A member appended under the name of a payload file (spelt as is, or through '.' or
    '//') replaces that file on extraction: an unexpected entry (S2), never silent."""
    tar = tmp_path / "appended.tar"
    shutil.copyfile(exported["tar"], tar)
    view = TarBag(tar)
    target = sorted(p for p in view.files() if p.startswith("data/originals/"))[0]
    with tarfile.open(tar, "a") as tf:
        info = tarfile.TarInfo(alias.format(top=view.name, path=target))
        info.size = 5
        tf.addfile(info, io.BytesIO(b"EVIL\n"))
    report = check_bag(TarBag(tar), options=Options(decode="none"))
    s2 = checks(report)["S2"]
    assert report["ok"] is False and s2["status"] == "fail"
    assert any(target in p for p in s2["problems"]), s2["problems"]


def test_tag_files_are_held_to_the_signed_tag_manifest(
    exported: dict[str, Any], tmp_path: Path
) -> None:
    """The signature covers tagmanifest-sha256.txt; only its digests carry that to
    bag-info.txt and the payload manifests. An edited tag file must fail authenticity."""
    bag = copy_bag(exported, tmp_path)
    info = bag / "bag-info.txt"
    info.chmod(0o644)
    info.write_text(
        info.read_text(encoding="utf-8").replace(
            "Liuhen-Retention: 30年", "Liuhen-Retention: 10年"
        ),
        encoding="utf-8",
    )
    original = sorted((bag / "data" / "originals").rglob("*.WAV"))[0]
    rel = str(original.relative_to(bag))
    manifest = bag / "manifest-sha256.txt"
    manifest.chmod(0o644)
    manifest.write_text(
        "".join(
            ("0" * 64 + "  " + rel + "\n") if line.endswith("  " + rel + "\n") else line
            for line in manifest.read_text(encoding="utf-8").splitlines(keepends=True)
        ),
        encoding="utf-8",
    )
    a1 = checks(check_bag(DirBag(bag), options=Options(decode="none")))["A1"]
    assert a1["status"] == "fail"
    assert any("bag-info.txt" in p for p in a1["problems"]), a1["problems"]
    assert any("manifest-sha256.txt" in p for p in a1["problems"]), a1["problems"]


# -- one reader, one manifest parser: four-properties judges the bag as `liuhen verify` ------


def _bench_bag(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, *, duplicate: bool) -> Path:
    """A small signed bag (no media, no custody excerpt); ``duplicate``: its payload
    manifests list the first file twice, first with a wrong checksum (then signed)."""
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    import bench.verify as bench

    root = tmp_path / "bag"
    (root / "data" / "metadata").mkdir(parents=True)
    (root / "data" / "metadata" / "note.txt").write_text("payload\n")
    (root / "data" / "metadata" / "other.txt").write_text("more payload\n")
    if duplicate:
        plain = bench.manifest_text

        def with_duplicate(digests: dict[str, str]) -> str:
            text = plain(digests)
            first = sorted(digests)[0]
            if not first.startswith("data/"):
                return text
            return f"{'0' * len(digests[first])}  {first}\n" + text

        monkeypatch.setattr(bench, "manifest_text", with_duplicate)
    return bench.write_bag(root, key=Ed25519PrivateKey.generate())


def test_a_manifest_the_verifier_rejects_fails_four_properties_too(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """A payload file listed twice with different checksums: 'liuhen verify' reports it;
    four-properties read the manifest leniently (the later line won) and passed A2."""
    bag = _bench_bag(tmp_path, monkeypatch, duplicate=True)
    verify = run_cli(capsys, "verify", "--json", str(bag))
    assert verify.code == 1
    assert "duplicate-entry" in {e["kind"] for e in json.loads(verify.out)["errors"]}
    by_id = checks(check_bag(DirBag(bag), options=Options(decode="none")))
    assert by_id["A2"]["status"] == "fail", by_id["A2"]
    assert any("listed again" in p for p in by_id["A2"]["problems"]), by_id["A2"]["problems"]
    assert by_id["A1"]["status"] == "pass", by_id["A1"]["problems"]  # it is signed as it is


def test_a_tar_with_the_bag_at_its_top_is_read_as_the_verifier_reads_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """`tar cf x.tar -C bag bagit.txt data …`: bagit.txt at the top of the tar, no bag
    folder. The verifier reads it; four-properties read every member as an odd entry."""
    bag = _bench_bag(tmp_path, monkeypatch, duplicate=False)
    tar = tmp_path / "flat.tar"
    with tarfile.open(tar, "w") as tf:
        for path in sorted(bag.iterdir()):
            tf.add(path, arcname=path.name)
    verify = run_cli(capsys, "verify", "--json", str(tar))
    # (A 留痕 bag without a custody excerpt: that is all the verifier finds.)
    assert {e["kind"] for e in json.loads(verify.out)["errors"]} == {"custody"}
    report = check_bag(TarBag(tar), options=Options(decode="none"))
    by_id = checks(report)
    assert by_id["S2"]["status"] == "pass", by_id["S2"]["problems"]
    assert by_id["A1"]["status"] == "pass", by_id["A1"]["problems"]
    assert by_id["A2"]["status"] == "pass", by_id["A2"]["problems"]
    assert report["payload"]["files"] == 2
