"""A payload file truncated (or written to) while `liuhen verify` runs gives a verdict
naming the file, never a SIGBUS with no output.

Deterministic, with no race on speed: the verifier hashes on one thread
(``workers=1``), and the files are changed from its progress callback, which that thread
calls after each finished job, so each change lands at a known point: after some jobs of
a file ran and before the others, or before a file was opened at all ("between listing
and hashing").
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tarfile
from pathlib import Path

import bagit

from archive_export.bagverify import verify_bag
from archive_export.parallel_hash import SPLIT_MIN

BIG = SPLIT_MIN + 100_000  # hashed one job per algorithm


def _bag(root: Path) -> Path:
    (root / "video").mkdir(parents=True)
    (root / "video" / "a.mp4").write_bytes(os.urandom(BIG))
    (root / "video" / "b.mp4").write_bytes(os.urandom(BIG + 1))
    (root / "note.txt").write_bytes(os.urandom(50_000))
    bagit.make_bag(str(root), checksums=["sha256", "sha512", "md5"])
    return root


def test_directory_files_changed_while_verifying_are_named(tmp_path: Path) -> None:
    bag = _bag(tmp_path / "bag")
    a, b, note = (bag / "data/video/a.mp4", bag / "data/video/b.mp4", bag / "data/note.txt")
    changed: list[bool] = []

    def progress(done: int, total: int) -> None:
        if not changed:  # after the first job: the big files are part-way, note.txt unread
            changed.append(True)
            os.truncate(a, BIG // 2)
            with open(b, "ab") as f:
                f.write(b"appended by someone else")
            os.truncate(note, 10)

    report = verify_bag(bag, workers=1, progress=progress)
    assert changed and not report.ok
    named = {f.path: f.detail for f in report.errors if f.kind == "changed-during-verification"}
    assert set(named) == {"data/video/a.mp4", "data/video/b.mp4", "data/note.txt"}, [
        f.describe() for f in report.errors
    ]
    assert "truncated" in named["data/video/a.mp4"] or "ended at byte" in named["data/video/a.mp4"]
    # note.txt was listed at 50,000 bytes and shrank before it was opened.
    assert "50000 bytes when the bag was listed, 10 before it was read" in named["data/note.txt"]


_CHILD = r"""
import json, os, sys
from pathlib import Path
from archive_export.bagverify import verify_bag

tar, cut = Path(sys.argv[1]), int(sys.argv[2])
mapped = []

def progress(done, total):
    if not mapped:
        with open("/proc/self/maps") as maps:  # is the tar memory-mapped right now?
            mapped.append(sum(str(tar) in line for line in maps))
        os.truncate(tar, cut)

report = verify_bag(tar, workers=1, progress=progress)
print(json.dumps({"mapped": mapped, "errors": [e.as_dict() for e in report.errors]}))
"""


def test_tar_truncated_while_verifying_is_named_not_sigbus(tmp_path: Path) -> None:
    """The old verifier mapped the tar once and hashed members from the mapping: cutting
    the tar under it killed the process with SIGBUS. Run in a child for that reason."""
    bag = _bag(tmp_path / "bag")
    dest = tmp_path / "bag.tar"
    with tarfile.open(dest, "w") as tf:
        tf.add(bag, arcname="bag")
    with tarfile.open(dest) as tf:
        b = tf.getmember("bag/data/video/b.mp4")
    cut = b.offset_data + BIG // 2
    root = Path(__file__).resolve().parents[1]
    proc = subprocess.run(
        [sys.executable, "-c", _CHILD, str(dest), str(cut)],
        cwd=root,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, (proc.returncode, proc.stderr[-2000:])
    doc = json.loads(proc.stdout)
    assert doc["mapped"] == [0]
    named = {(e["kind"], e["path"]) for e in doc["errors"]}
    assert ("changed-during-verification", "data/video/b.mp4") in named, sorted(named)
