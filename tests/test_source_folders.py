"""ingest.offload.SourceFolders: a docking's recorder files opened through folders walked
once, with the same refusals as a walk from the root for every file."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from ingest.offload import SourceFolders


def _read(fd: int) -> bytes:
    try:
        return os.read(fd, 100)
    finally:
        os.close(fd)


def _recorder(tmp_path: Path) -> Path:
    root = tmp_path / "rec"
    (root / "DCIM" / "100").mkdir(parents=True)
    for name in ("a.JPG", "b.JPG"):
        (root / "DCIM" / "100" / name).write_bytes(name.encode())
    (root / "DEVICE.INF").write_bytes(b"serial")
    return root


def test_files_of_kept_and_unkept_folders_read_as_written(tmp_path: Path) -> None:
    root = _recorder(tmp_path)
    (root / "DCIM" / "101").mkdir()
    (root / "DCIM" / "101" / "c.JPG").write_bytes(b"c")
    sources = SourceFolders(root, limit=1)  # DCIM/100 kept, the others walked each time
    try:
        assert _read(sources.open(b"DCIM/100/a.JPG")) == b"a.JPG"
        assert _read(sources.open(b"DCIM/100/b.JPG")) == b"b.JPG"
        assert _read(sources.open(b"DCIM/101/c.JPG")) == b"c"
        assert _read(sources.open(b"DEVICE.INF")) == b"serial"
    finally:
        sources.close()
    # Closed: files still open, by a walk from the root.
    assert _read(sources.open(b"DCIM/100/a.JPG")) == b"a.JPG"


def test_a_link_never_leads_out_of_the_recorder(tmp_path: Path) -> None:
    root = _recorder(tmp_path)
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "a.JPG").write_bytes(b"secret")
    (root / "LINKED").symlink_to(outside)
    (root / "DCIM" / "100" / "l.JPG").symlink_to(outside / "a.JPG")
    sources = SourceFolders(root)
    try:
        with pytest.raises(OSError):
            sources.open(b"LINKED/a.JPG")  # a linked folder is not walked into
        with pytest.raises(OSError):
            sources.open(b"DCIM/100/l.JPG")  # nor a linked file opened
        assert _read(sources.open(b"DCIM/100/a.JPG")) == b"a.JPG"
        # The kept folder replaced by a link to the outside: its files are not read
        # through the link (the folder that was walked is the one used).
        (root / "DCIM" / "100").rename(root / "DCIM" / "moved")
        (root / "DCIM" / "100").symlink_to(outside)
        assert _read(sources.open(b"DCIM/100/a.JPG")) == b"a.JPG"
    finally:
        sources.close()
    with pytest.raises(OSError):  # a fresh walk refuses the link
        sources.open(b"DCIM/100/a.JPG")


def test_a_vanished_file_or_folder_is_not_found(tmp_path: Path) -> None:
    root = _recorder(tmp_path)
    sources = SourceFolders(root)
    try:
        _read(sources.open(b"DCIM/100/a.JPG"))
        (root / "DCIM" / "100" / "b.JPG").unlink()
        with pytest.raises(FileNotFoundError):
            sources.open(b"DCIM/100/b.JPG")
        with pytest.raises(FileNotFoundError):
            sources.open(b"NOPE/x.JPG")
    finally:
        sources.close()
