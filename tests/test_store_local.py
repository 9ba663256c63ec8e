"""LocalStore behaviour beyond the shared contract: linking staged files, damaged objects,
links planted in the store."""

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


def test_put_file_from_the_same_filesystem_links_the_very_file(tmp_path: Path) -> None:
    """No second copy of a staged file: the object is the staged file, made read-only."""
    store = LocalStore(tmp_path / "objects")
    staging = tmp_path / "staging"
    staging.mkdir()
    staged = staging / "clip.part"
    staged.write_bytes(b"evidence bytes")
    digest = digest_bytes(b"evidence bytes")
    assert store.can_link(staging)

    info = store.put_file(content_key(digest), staged, expected=digest, verified=True)

    stored = tmp_path / "objects" / info.key
    assert stored.stat().st_ino == staged.stat().st_ino
    assert oct(staged.stat().st_mode & 0o777) == oct(0o444)


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
    with pytest.raises(StorageError, match="stored copy is damaged"):
        store.put(key, io.BytesIO(data), expected=digest)
    assert path.stat().st_size == 10  # nothing replaced: the damage stays visible for audit


def test_a_link_planted_in_the_store_never_leads_out_of_it(tmp_path: Path) -> None:
    """A folder of the store replaced by a link to elsewhere: nothing is written there,
    nothing is read from there, and the error names the key and the link."""
    store = LocalStore(tmp_path / "objects")
    first = digest_bytes(b"first object")
    store.put(content_key(first), io.BytesIO(b"first object"), expected=first)
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    data = b"second object"
    digest = digest_bytes(data)
    key = content_key(digest)
    prefix = tmp_path / "objects" / key.rsplit("/", 2)[0]  # sha256/ab
    prefix.mkdir(parents=True, exist_ok=True)
    (outside / key.split("/")[2]).mkdir()
    planted = prefix / key.split("/")[2]  # sha256/ab/cd -> elsewhere/cd
    if planted.exists():
        pytest.skip("the two test objects share a folder")
    planted.symlink_to(outside / key.split("/")[2], target_is_directory=True)
    with pytest.raises(StorageError) as info:
        store.put(key, io.BytesIO(data), expected=digest)
    assert key in str(info.value) and "link" in str(info.value)
    assert list(outside.rglob("*")) == [outside / key.split("/")[2]]  # nothing written out there
    # Placed there by hand, an object outside is not read through the link either.
    (outside / key.split("/")[2] / key.rsplit("/", 1)[1]).write_bytes(data)
    with pytest.raises(StorageError):
        store.open(key)
    # Nor is it handed to a program as a local file.
    with pytest.raises(StorageError) as info, store.local_file(key, digest, scratch=tmp_path):
        raise AssertionError("a path outside the store handed out")
    assert "link" in str(info.value)
    # The object stored before is untouched and still readable.
    with store.open(content_key(first)) as f:
        assert f.read() == b"first object"


def test_a_link_inside_the_store_that_stays_inside_is_followed(tmp_path: Path) -> None:
    store = LocalStore(tmp_path / "objects")
    data = b"moved folder"
    digest = digest_bytes(data)
    key = content_key(digest)
    parts = key.split("/")
    real = tmp_path / "objects" / "moved"
    real.mkdir(parents=True)
    (tmp_path / "objects" / parts[0]).symlink_to(real, target_is_directory=True)
    store.put(key, io.BytesIO(data), expected=digest)
    assert (real / "/".join(parts[1:])).read_bytes() == data


def test_listing_a_prefix_walks_only_its_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Listing the chain-head anchors after every docking must not walk every object of
    the store: the walk starts at the folder the prefix names whole, and finds the same
    keys, in the same order, as a walk of the whole store filtered by the prefix."""
    store = LocalStore(tmp_path / "objects")
    keys = ["anchors/s1/0001.json", "anchors/s1/0002.json", "anchors/s2/0001.json"]
    for key in keys:
        store.put(key, io.BytesIO(key.encode()), expected=digest_bytes(key.encode()))
    held = digest_bytes(b"a recording")
    store.put(content_key(held), io.BytesIO(b"a recording"), expected=held)
    starts: list[str] = []
    real_walk = os.walk

    def walk(top: object, *args: object, **kwargs: object) -> object:
        starts.append(os.fspath(top))  # type: ignore[arg-type]
        return real_walk(top, *args, **kwargs)  # type: ignore[call-overload]

    monkeypatch.setattr(os, "walk", walk)
    assert list(store.list("anchors/")) == keys
    assert list(store.list("anchors/s1/00")) == keys[:2]
    assert list(store.list("sha256/")) == [content_key(held)]
    assert starts == [
        str(tmp_path / "objects" / "anchors"),
        str(tmp_path / "objects" / "anchors" / "s1"),
        str(tmp_path / "objects" / "sha256"),
    ]
    everything = list(store.list())
    assert [k for k in everything if k.startswith("anchors/")] == keys
    assert list(store.list("nothing/here/")) == []


def test_listing_never_follows_a_linked_folder(tmp_path: Path) -> None:
    """A folder linked into the store is not an object folder: a prefix naming it lists
    nothing, as a walk from the root does not enter it."""
    outside = tmp_path / "outside"
    (outside / "deep").mkdir(parents=True)
    (outside / "deep" / "planted").write_bytes(b"not evidence")
    store = LocalStore(tmp_path / "objects")
    (tmp_path / "objects").mkdir()
    os.symlink(outside, tmp_path / "objects" / "anchors")
    assert list(store.list()) == []
    assert list(store.list("anchors/")) == []
    assert list(store.list("anchors/deep/")) == []


def test_a_batch_of_linked_objects_is_made_durable_by_one_fsync_per_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """put_file(durable=False) links without the folder's fsync; make_durable then fsyncs
    each distinct folder of the batch once (side by side), and a failing fsync is an error
    of the store, never silence."""
    import storage.local

    synced: list[Path] = []
    real_fsync_dir = storage.local.fsync_dir

    def fsync_dir(folder: Path | str) -> None:
        real_fsync_dir(folder)
        synced.append(Path(folder))  # (make_durable passes text)

    monkeypatch.setattr(storage.local, "fsync_dir", fsync_dir)
    store = LocalStore(tmp_path / "objects")
    staging = tmp_path / "staging"
    staging.mkdir()
    keys = []
    for i in range(12):
        body = f"evidence {i}".encode()
        staged = staging / f"{i}.staged"
        staged.write_bytes(body)
        digest = digest_bytes(body)
        info = store.put_file(content_key(digest), staged, expected=digest, durable=False)
        assert store.open(info.key).read() == body  # visible at once, whole
        keys.append(info.key)
    assert synced == []  # left to make_durable

    store.make_durable(keys + keys[:3])  # a key twice: its folder once
    root = tmp_path / "objects"
    leaves = {root / k.rsplit("/", 1)[0] for k in keys}
    # Each folder once, and each folder holding a folder's name, up to the root (a
    # folder made for this batch is only as durable as its entry in its parent).
    above = {p for leaf in leaves for p in leaf.parents if p == root or root in p.parents}
    assert sorted(synced) == sorted(leaves | above)

    # The default is durable on return, as before.
    synced.clear()
    body = b"one more"
    staged = staging / "more.staged"
    staged.write_bytes(body)
    digest = digest_bytes(body)
    info = store.put_file(content_key(digest), staged, expected=digest)
    leaf = root / info.key.rsplit("/", 1)[0]
    assert synced[0] == leaf and synced[-1] == root  # the leaf first, up to the root

    def failing(folder: Path) -> None:
        raise OSError(5, "Input/output error")

    monkeypatch.setattr(storage.local, "fsync_dir", failing)
    with pytest.raises(StorageError, match="Input/output error"):
        store.make_durable(keys)
