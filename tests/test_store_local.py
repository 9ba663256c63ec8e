"""LocalStore behaviour beyond the shared contract: adopting staged files, damaged objects."""

from __future__ import annotations

import io
import os
from pathlib import Path

import pytest

from storage import DigestMismatch, LocalStore, StorageError, content_key, digest_bytes


def test_adopt_links_a_verified_file_read_only(tmp_path: Path) -> None:
    store = LocalStore(tmp_path / "objects")
    staged = tmp_path / "objects.staged"
    staged.write_bytes(b"evidence bytes")
    digest = digest_bytes(b"evidence bytes")
    info = store.adopt(content_key(digest), staged, expected=digest)
    stored = tmp_path / "objects" / info.key
    assert stored.read_bytes() == b"evidence bytes"
    assert oct(stored.stat().st_mode & 0o777) == oct(0o444)
    assert list(store.list()) == [info.key]


def test_adopt_refuses_a_staged_file_that_changed(tmp_path: Path) -> None:
    store = LocalStore(tmp_path / "objects")
    staged = tmp_path / "staged"
    staged.write_bytes(b"changed on disk")
    expected = digest_bytes(b"what was hashed while copying")
    with pytest.raises(DigestMismatch) as info:
        store.adopt(content_key(expected), staged, expected=expected)
    assert str(staged) in str(info.value)
    assert list(store.list()) == []


def test_put_over_a_damaged_object_is_reported_not_taken_as_stored(tmp_path: Path) -> None:
    store = LocalStore(tmp_path / "objects")
    data = b"x" * 1000
    digest = digest_bytes(data)
    key = content_key(digest)
    store.put(key, io.BytesIO(data), expected=digest)
    path = tmp_path / "objects" / key
    os.chmod(path, 0o644)
    with open(path, "r+b") as f:
        f.truncate(10)  # damaged at rest
    with pytest.raises(StorageError, match="stored object has 10 bytes"):
        store.put(key, io.BytesIO(data), expected=digest)
    assert path.stat().st_size == 10  # nothing replaced: the damage stays visible for audit
