"""Ranged reads (``ObjectStore.read_range``), run against every store of the contract
suite (the directory store, S3 on a plain and on an Object Lock bucket): the bytes an
HTTP range request streams, and only those."""

from __future__ import annotations

import pytest

from storage.base import ObjectStore
from storage.digest import READ_SIZE
from storage.errors import InvalidKeyError, ObjectNotFound
from tests.test_store_contract import (  # the contract suite's stores, reused
    SMALL,
    backend,
    payload,
    put_bytes,
    store,
)

__all__ = ["backend", "store"]  # fixtures, imported for pytest


def _read(store: ObjectStore, key: str, start: int, end: int) -> bytes:
    return b"".join(store.read_range(key, start, end))


@pytest.mark.parametrize(
    ("start", "end"),
    [(1000, 2000), (0, 1), (0, SMALL), (SMALL - 1, SMALL), (12345, 54321)],
)
def test_a_range_reads_exactly_its_bytes(store: ObjectStore, start: int, end: int) -> None:
    data = payload(SMALL, seed=7)
    put_bytes(store, "v/proxy", data)

    assert _read(store, "v/proxy", start, end) == data[start:end]


def test_a_range_past_the_end_reads_to_the_end_and_one_after_it_nothing(
    store: ObjectStore,
) -> None:
    data = payload(5000, seed=3)
    put_bytes(store, "v/short", data)

    assert _read(store, "v/short", 4000, 9000) == data[4000:]
    assert _read(store, "v/short", 5000, 6000) == b""
    assert _read(store, "v/short", 7000, 8000) == b""
    assert _read(store, "v/short", 10, 10) == b""


def test_a_long_range_comes_in_bounded_chunks(store: ObjectStore) -> None:
    data = payload(3 * READ_SIZE + 17, seed=5)
    put_bytes(store, "v/long", data)

    chunks = list(store.read_range("v/long", 10, len(data)))

    assert b"".join(chunks) == data[10:]
    assert max(len(c) for c in chunks) <= READ_SIZE
    assert len(chunks) >= 4


def test_stopping_early_leaves_the_store_usable(store: ObjectStore) -> None:
    # A player that seeks away closes its request after the first chunk: the file or
    # connection is released, and the next read works.
    data = payload(2 * READ_SIZE, seed=9)
    put_bytes(store, "v/seek", data)
    chunks = store.read_range("v/seek", 0, len(data))
    assert next(iter(chunks)) == data[:READ_SIZE]
    chunks.close()  # type: ignore[attr-defined]

    assert _read(store, "v/seek", READ_SIZE, READ_SIZE + 100) == data[READ_SIZE : READ_SIZE + 100]


def test_a_missing_object_is_named_before_any_byte_is_sent(store: ObjectStore) -> None:
    for start, end in ((0, 100), (5, 5), (100, 200)):
        with pytest.raises(ObjectNotFound) as err:
            store.read_range("no/such", start, end)
        assert err.value.key == "no/such"


def test_bad_ranges_and_hostile_keys_are_refused(store: ObjectStore) -> None:
    put_bytes(store, "v/x", b"0123456789")
    with pytest.raises(ValueError):
        store.read_range("v/x", 5, 4)
    with pytest.raises(ValueError):
        store.read_range("v/x", -1, 4)
    with pytest.raises(InvalidKeyError):
        store.read_range("../etc/passwd", 0, 10)
