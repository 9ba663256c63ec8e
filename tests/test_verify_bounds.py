"""A hostile bag or tar cannot exhaust the verifier: memory stays bounded, the verdict is
"invalid: too large / too many" (exit 1), never an internal error.

Each hostile input is made at test time and is small on disk (blank lines, a sparse
file, gzip bombs of zeros). `liuhen verify` / `liuhen four-properties` run as real
processes; each reports its own peak resident memory (``VmHWM`` of its own address
space, read as it exits), which measures memory, not speed. (The kernel's rusage of a
child is no use here: it counts the copy of the test process the child was forked
from, which is hundreds of MB late in a full run.) An address-space limit on the child
keeps a regression from eating the machine: it then dies (exit 70, or a signal) and the
test fails on the exit code.
"""

from __future__ import annotations

import gzip
import io
import json
import os
import resource
import subprocess
import sys
import tarfile
from dataclasses import dataclass
from pathlib import Path

import bagit
import pytest

from archive_export import bagparse
from archive_export.bagverify import verify_bag
from tests.cli_helpers import run_cli

PEAK_LIMIT_MB = 200
# Far above any bounded run, far below what an unbounded one would take on this machine.
ADDRESS_SPACE = 3 << 30
BLANK_BOMB = 5_000_000  # bytes of blank lines: was 2 GB at 1 MB and a MemoryError at 5 MB
TAG_BOMB = 300 << 20  # a "tag file" of zeros: sparse on disk, tiny gzipped


@dataclass
class Run:
    code: int
    out: str
    err: str
    peak_mb: float


# Runs `liuhen` in this process and, as it exits, writes the peak RSS of this address
# space (VmHWM, kB; a fresh one since exec) to the file named first.
_MEASURED = """
import atexit, sys
def _report(path=sys.argv[1]):
    with open("/proc/self/status") as status, open(path, "w") as out:
        out.write(next(l.split()[1] for l in status if l.startswith("VmHWM:")))
atexit.register(_report)
sys.argv = ["liuhen", *sys.argv[2:]]
from liuhen.cli import main
main()
"""


def run_measured(tmp: Path, *args: str) -> Run:
    """Run `liuhen ARGS` in a child process; its exit code, output and peak RSS."""
    out, err, peak = tmp / "stdout.txt", tmp / "stderr.txt", tmp / "peak-kb.txt"
    peak.unlink(missing_ok=True)

    def limit() -> None:
        resource.setrlimit(resource.RLIMIT_AS, (ADDRESS_SPACE, ADDRESS_SPACE))

    with open(out, "wb") as o, open(err, "wb") as e:
        proc = subprocess.run(
            [sys.executable, "-c", _MEASURED, str(peak), *args],
            stdout=o,
            stderr=e,
            preexec_fn=limit,
            check=False,
        )
    said = out.read_text(errors="replace"), err.read_text(errors="replace")
    assert peak.exists(), f"liuhen {' '.join(args)} died ({proc.returncode}): {said[1][-2000:]}"
    return Run(proc.returncode, *said, int(peak.read_text()) / 1024)


def small_bag(root: Path) -> Path:
    (root / "sub").mkdir(parents=True, exist_ok=True)
    (root / "a.txt").write_bytes(b"hello\n")
    (root / "sub" / "b.bin").write_bytes(os.urandom(5000))
    bagit.make_bag(str(root), checksums=["sha256"])
    return root


def assert_bounded_invalid(run: Run, *, kind: str, path: str) -> dict[str, object]:
    assert run.code == 1, (run.code, run.err[-2000:])
    assert "Traceback" not in run.err
    assert run.peak_mb < PEAK_LIMIT_MB, f"peak RSS {run.peak_mb:.0f} MB"
    doc = json.loads(run.out)
    assert doc["ok"] is False
    found = {(e["kind"], e["path"]) for e in doc["errors"]}
    assert (kind, path) in found, sorted(found)[:20]
    return doc


# -- tag files --------------------------------------------------------------------------------


@pytest.mark.parametrize("tag_file", ["bag-info.txt", "manifest-sha256.txt"])
def test_blank_line_bomb_in_a_tag_file(tmp_path: Path, tag_file: str) -> None:
    bag = small_bag(tmp_path / "bag")
    with open(bag / tag_file, "ab") as f:
        f.write(b"\n" * BLANK_BOMB)
    run = run_measured(tmp_path, "verify", "--json", str(bag))
    doc = assert_bounded_invalid(run, kind="too-large", path=tag_file)
    warnings = doc["warnings"]
    assert isinstance(warnings, list)
    # The first few blank lines are named, the rest counted, not a million entries.
    assert len(warnings) <= bagparse.LIST_PER_FILE + 5
    assert any("more like this" in w["detail"] for w in warnings)


def test_repeats_are_summarised_with_their_count(tmp_path: Path) -> None:
    """Below the line bound the bag is checked in full, and repeats are counted exactly."""
    bag = small_bag(tmp_path / "bag")
    with open(bag / "bag-info.txt", "ab") as f:
        f.write(b"\n" * 20_000)
    report = verify_bag(bag)
    blank = [w for w in report.warnings if w.kind == "bag-info" and w.path == "bag-info.txt"]
    assert len(blank) == bagparse.LIST_PER_FILE + 1
    assert blank[-1].detail.startswith(f"and {20_000 - bagparse.LIST_PER_FILE:,} more like this")
    # (The tag manifest no longer matches the edited bag-info.txt: that stays an error.)
    assert {(f.kind, f.path) for f in report.errors} == {("checksum-mismatch", "bag-info.txt")}


def test_blank_line_bomb_in_the_custody_excerpt(tmp_path: Path) -> None:
    """Its events are parsed into a list: past the line bound it is not parsed at all."""
    root = tmp_path / "bag"
    (root / "metadata").mkdir(parents=True)
    (root / "metadata" / "custody.jsonl").write_bytes(b"\n" * BLANK_BOMB)
    small_bag(root)
    run = run_measured(tmp_path, "verify", "--json", str(root))
    assert_bounded_invalid(run, kind="too-large", path="data/metadata/custody.jsonl")


def test_huge_tag_file_is_too_large_not_read(tmp_path: Path) -> None:
    bag = small_bag(tmp_path / "bag")
    with open(bag / "bag-info.txt", "r+b") as f:
        f.truncate(TAG_BOMB)  # sparse: nothing on disk
    run = run_measured(tmp_path, "verify", "--json", str(bag))
    assert_bounded_invalid(run, kind="too-large", path="bag-info.txt")


# -- tars -------------------------------------------------------------------------------------


class _Zeros(io.RawIOBase):
    def __init__(self, size: int) -> None:
        self.left = size

    def readable(self) -> bool:
        return True

    def readinto(self, buf: bytearray | memoryview) -> int:  # type: ignore[override]
        n = min(len(buf), self.left)
        buf[:n] = bytes(n)
        self.left -= n
        return n


def test_gzip_bomb_of_large_zero_members(tmp_path: Path) -> None:
    bag = small_bag(tmp_path / "bag")
    dest = tmp_path / "bomb.tar.gz"
    with tarfile.open(dest, "w:gz", compresslevel=9) as tf:
        tf.add(bag, arcname="bag")
        for name in ("bag/zeros-1.txt", "bag/zeros-2.txt"):
            info = tarfile.TarInfo(name)
            info.size = TAG_BOMB
            tf.addfile(info, io.BufferedReader(_Zeros(TAG_BOMB), 1 << 20))
    assert dest.stat().st_size < 2 << 20  # 600 MB of members, under 2 MB on disk
    run = run_measured(tmp_path, "verify", "--json", str(dest))
    doc = assert_bounded_invalid(run, kind="too-large", path="zeros-1.txt")
    errors = doc["errors"]
    assert isinstance(errors, list)
    assert ("too-large", "zeros-2.txt") in {(e["kind"], e["path"]) for e in errors}


def _many_empty_members(dest: Path, count: int) -> None:
    """A .tar.gz of a bagit.txt and ``count`` empty payload members: ustar headers written
    directly (tarfile would take seconds building 300,000 TarInfo objects)."""
    declaration = b"BagIt-Version: 1.0\nTag-File-Character-Encoding: UTF-8\n"
    first = tarfile.TarInfo("bag/bagit.txt")
    first.size = len(declaration)
    template = bytearray(tarfile.TarInfo("bag/data/e0000000").tobuf(format=tarfile.USTAR_FORMAT))
    with gzip.open(dest, "wb", compresslevel=1) as g:
        g.write(
            first.tobuf(format=tarfile.USTAR_FORMAT) + declaration + bytes(-len(declaration) % 512)
        )
        for i in range(count):
            h = bytearray(template)
            h[10:17] = b"%07d" % i  # the digits of "e0000000"
            h[148:156] = b" " * 8  # the checksum is computed with its own field as spaces
            h[148:156] = b"%06o\0 " % sum(h)
            g.write(h)
        g.write(bytes(1024))


def test_hundreds_of_thousands_of_empty_members(tmp_path: Path) -> None:
    dest = tmp_path / "many.tar.gz"
    _many_empty_members(dest, 300_000)
    assert dest.stat().st_size < 4 << 20
    run = run_measured(tmp_path, "verify", "--json", str(dest))
    assert_bounded_invalid(run, kind="too-many", path="")
    assert f"{bagparse.MAX_FILES:,}" in run.out


# -- four-properties reads a bag with the same bounds ------------------------------------------


def test_four_properties_on_a_huge_tag_file(tmp_path: Path) -> None:
    bag = small_bag(tmp_path / "bag")
    with open(bag / "bag-info.txt", "r+b") as f:
        f.truncate(TAG_BOMB)
    run = run_measured(tmp_path, "four-properties", "--json", "--decode", "none", str(bag))
    assert run.code == 1, (run.code, run.err[-2000:])
    assert "Traceback" not in run.err
    assert run.peak_mb < PEAK_LIMIT_MB, f"peak RSS {run.peak_mb:.0f} MB"
    # --json: the error is a JSON object on stdout
    message = json.loads(run.out)["error"]["message"]
    assert "bag-info.txt" in message and "too large" in message


def test_too_many_files_says_so_plainly(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    dest = tmp_path / "many.tar.gz"
    _many_empty_members(dest, bagparse.MAX_FILES + 10)
    result = run_cli(capsys, "verify", str(dest))
    assert result.code == 1
    assert f"more than {bagparse.MAX_FILES:,} files" in result.out
    assert "INVALID: too many files; the bag was not checked further" in result.out


# -- tar extended headers, which tarfile reads whole -------------------------------------------


def _pax_header_bomb(dest: Path, *, gz: bool) -> None:
    """A tar whose one pax extended header declares ``TAG_BOMB`` bytes (zeros): tarfile
    reads such a header into memory whole before the member it describes. Written
    directly, the zeros sparse on disk (.tar) or a few hundred kB gzipped (.tar.gz)."""
    declaration = b"BagIt-Version: 1.0\nTag-File-Character-Encoding: UTF-8\n"
    first = tarfile.TarInfo("bag/bagit.txt")
    first.size = len(declaration)
    pax = tarfile.TarInfo("bag/data/././@PaxHeader")
    pax.type = tarfile.XHDTYPE
    pax.size = TAG_BOMB
    head = (
        first.tobuf(format=tarfile.USTAR_FORMAT)
        + declaration
        + bytes(-len(declaration) % 512)
        + pax.tobuf(format=tarfile.USTAR_FORMAT)
    )
    tail = tarfile.TarInfo("bag/data/x").tobuf(format=tarfile.USTAR_FORMAT) + bytes(1024)
    if gz:
        with gzip.open(dest, "wb", compresslevel=1) as g:
            g.write(head)
            for _ in range(TAG_BOMB >> 20):
                g.write(bytes(1 << 20))
            g.write(tail)
        return
    with open(dest, "wb") as f:
        f.write(head)
        f.seek(TAG_BOMB, os.SEEK_CUR)  # a hole: zeros that take no disk
        f.write(tail)


@pytest.mark.parametrize("suffix", [".tar", ".tar.gz"])
def test_a_huge_pax_header_is_too_large_not_read(tmp_path: Path, suffix: str) -> None:
    dest = tmp_path / f"pax{suffix}"
    _pax_header_bomb(dest, gz=suffix == ".tar.gz")
    assert dest.stat().st_blocks * 512 < 4 << 20
    run = run_measured(tmp_path, "verify", "--json", str(dest))
    doc = assert_bounded_invalid(run, kind="too-large", path="")
    assert "extended header" in json.dumps(doc["errors"])


def test_four_properties_on_a_huge_pax_header(tmp_path: Path) -> None:
    dest = tmp_path / "pax.tar"
    _pax_header_bomb(dest, gz=False)
    run = run_measured(tmp_path, "four-properties", "--json", "--decode", "none", str(dest))
    assert run.code == 1, (run.code, run.err[-2000:])
    assert "Traceback" not in run.err
    assert run.peak_mb < PEAK_LIMIT_MB, f"peak RSS {run.peak_mb:.0f} MB"
    assert (
        "extended header" in json.loads(run.out)["error"]["message"]
        and "too large" in json.loads(run.out)["error"]["message"]
    )


def test_old_gnu_sparse_extension_headers_are_not_collected(tmp_path: Path) -> None:
    """An old GNU sparse member's map, continued in extension blocks that tarfile collects
    without limit: 400,000 of them gzip to about 1 MB (they took 600 MB and 20 s)."""
    declaration = b"BagIt-Version: 1.0\nTag-File-Character-Encoding: UTF-8\n"
    first = tarfile.TarInfo("bag/bagit.txt")
    first.size = len(declaration)
    header = bytearray(tarfile.TarInfo("bag/data/sparse").tobuf(format=tarfile.GNU_FORMAT))
    header[156:157] = tarfile.GNUTYPE_SPARSE
    header[482] = 1  # the map goes on in an extension block
    header[148:156] = b" " * 8
    header[148:156] = b"%06o\0 " % sum(header)
    extension = bytearray(512)
    for i in range(21):
        extension[i * 24 : i * 24 + 24] = b"%011o\0%011o\0" % (2 * i, 1)
    extension[504] = 1  # and on
    dest = tmp_path / "sparse.tar.gz"
    with gzip.open(dest, "wb", compresslevel=6) as g:
        g.write(
            first.tobuf(format=tarfile.USTAR_FORMAT)
            + declaration
            + bytes(-len(declaration) % 512)
            + bytes(header)
        )
        for _ in range(400_000):
            g.write(extension)
        g.write(bytes(1536))
    run = run_measured(tmp_path, "verify", "--json", str(dest))
    doc = assert_bounded_invalid(run, kind="too-large", path="")
    assert "old GNU sparse member" in json.dumps(doc["errors"])


# -- JSON nested too deep for the parser ---------------------------------------------------------

DEEP = "[" * 100_000  # json.loads raises RecursionError, not ValueError


@pytest.mark.parametrize("where", ["custody", "keys", "anchors", "retirement"])
def test_json_nested_too_deep_is_a_finding_not_a_crash(
    tmp_path: Path, where: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """A line of custody.jsonl or anchors.jsonl, keys.json, or an event's details (read for
    a key's retirement) nested deeper than the parser goes: invalid, exit 1, no internal
    error, in verify and four-properties alike."""
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    from archive_export.bagview import DirBag
    from archive_export.fourprops import check_bag
    from bench.verify import write_bag
    from catalog.chainrule import EVENT_FIELDS
    from catalog.signing import key_id_of, public_raw

    key = Ed25519PrivateKey.generate()
    raw = public_raw(key.public_key())
    kid = key_id_of(raw)
    meta = tmp_path / "bag" / "data" / "metadata"
    meta.mkdir(parents=True)
    (meta / "note.txt").write_text("payload\n")
    event = {f: "x" for f in EVENT_FIELDS} | {
        "station_id": "s1",
        "seq": 1,
        "action": "key-retired",
        "object_type": "key",
        "object_id": kid,
        "key_id": kid,
        "details": DEEP if where == "retirement" else "{}",
    }
    (meta / "custody.jsonl").write_text(
        json.dumps(event) + "\n" + (DEEP + "\n" if where == "custody" else "")
    )
    (meta / "keys.json").write_text(
        DEEP
        if where == "keys"
        else json.dumps(
            {
                "keys": [
                    {
                        "key_id": kid,
                        "station_id": "s1",
                        "public_key_hex": raw.hex(),
                        "retired_at": None,
                    }
                ]
            }
        )
    )
    if where == "anchors":
        (meta / "anchors.jsonl").write_text(DEEP + "\n")
    bag = write_bag(tmp_path / "bag", key=key)
    r = run_cli(capsys, "verify", "--json", str(bag))
    assert r.code == 1 and "internal error" not in r.err, (r.code, r.err[-500:])
    assert json.loads(r.out)["ok"] is False
    report = check_bag(DirBag(bag))
    assert report["ok"] is False


@pytest.mark.parametrize("where", ["keys", "retirement"])
def test_a_retirement_time_that_is_not_text_is_a_finding_not_a_crash(
    tmp_path: Path, where: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """``"retired_at": 5`` in keys.json, or in a key-retired event's details: invalid,
    exit 1, never an internal error (AttributeError, exit 70)."""
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    from bench.verify import write_bag
    from catalog.chainrule import EVENT_FIELDS
    from catalog.signing import key_id_of, public_raw

    key = Ed25519PrivateKey.generate()
    raw = public_raw(key.public_key())
    kid = key_id_of(raw)
    meta = tmp_path / "bag" / "data" / "metadata"
    meta.mkdir(parents=True)
    (meta / "note.txt").write_text("payload\n")
    event = {f: "x" for f in EVENT_FIELDS} | {
        "station_id": "s1",
        "seq": 1,
        "action": "key-retired",
        "object_type": "key",
        "object_id": kid,
        "key_id": kid,
        "details": json.dumps({"retired_at": 5}) if where == "retirement" else "{}",
    }
    (meta / "custody.jsonl").write_text(json.dumps(event) + "\n")
    (meta / "keys.json").write_text(
        json.dumps(
            {
                "keys": [
                    {
                        "key_id": kid,
                        "station_id": "s1",
                        "public_key_hex": raw.hex(),
                        "retired_at": 5 if where == "keys" else None,
                    }
                ]
            }
        )
    )
    bag = write_bag(tmp_path / "bag", key=key)
    r = run_cli(capsys, "verify", "--json", str(bag))
    assert r.code == 1 and "internal error" not in r.err, (r.code, r.err[-500:])
    assert json.loads(r.out)["ok"] is False
