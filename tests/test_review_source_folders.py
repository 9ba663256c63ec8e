"""Review reproduction (h/review): ingest.offload.SourceFolders keeps a recorder folder's
descriptor for the whole docking, so a folder that is put back at its path (the recorder
re-enumerated and mounted again at the same place during the docking, as a dock's USB
power glitch does) is no longer seen: its files are "not found" where a walk from the
root (open_source, what each file did before 63c25c8) finds them. The docking then
quarantines every remaining file of that folder (VANISHED, or CANNOT_OPEN with EIO on a
device that is gone), for a person to look at, though each is there."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from ingest.offload import SourceFolders, open_source


def _read(fd: int) -> bytes:
    try:
        return os.read(fd, 100)
    finally:
        os.close(fd)


def test_a_folder_put_back_at_its_path_is_read_as_a_walk_from_the_root_reads_it(
    tmp_path: Path,
) -> None:
    root = tmp_path / "rec"
    folder = root / "DCIM" / "100"
    folder.mkdir(parents=True)
    for name in ("a.MP4", "b.MP4"):
        (folder / name).write_bytes(name.encode())
    sources = SourceFolders(root)
    try:
        assert _read(sources.open(b"DCIM/100/a.MP4")) == b"a.MP4"  # DCIM/100 kept
        # The recorder's file system goes away and comes back at the same path.
        again = tmp_path / "again"
        shutil.copytree(root, again)
        shutil.rmtree(root)
        again.rename(root)
        assert _read(open_source(root, b"DCIM/100/b.MP4")) == b"b.MP4"
        assert _read(sources.open(b"DCIM/100/b.MP4")) == b"b.MP4"
    finally:
        sources.close()
