"""Clearing deletes only what was stored. A docking that ended INCOMPLETE used to resume
on the next docking of the same recorder with the files it held matched by name alone:
when the recorder had meanwhile written other bytes under such a name (loop recording, a
counter reset), those bytes were never stored, the docking said SAFE TO CLEAR, and with
``ingest.clear_recorder`` the station deleted them. Now the earlier docking is not
resumed (it cannot hold two files under one name); a new docking takes the recorder."""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path
from typing import Any

from tests.offload_helpers import make_app
from tests.test_offload import _run_with_byte_hook

NEW = b"NEW EVIDENCE" * 5000
# Body-cam names (serial, 警号, start): the recorder is known, so its docking resumes.
A = "A123456_010203_20261126083000_0001.MP4"
B = "A123456_010203_20261126090000_0002.MP4"


def test_clear_never_deletes_bytes_it_did_not_store(tmp_path: Path) -> None:
    root = tmp_path / "dock" / "A123456"
    root.mkdir(parents=True)
    old = time.time() - 60
    (root / A).write_bytes(b"a" * 1000)
    (root / B).write_bytes(os.urandom(4 << 20))
    for p in list(root.iterdir()):
        os.utime(p, (old, old))
    app = make_app(tmp_path / "data", clear_recorder=True, chunk_mb=1, file_workers=1)
    station = app.station()
    pulled = tmp_path / "pulled" / "A123456"

    def pull(p: Any) -> None:  # A stored, B half copied: the officer pulls the recorder
        if p.bytes_done >= 2 << 20 and not pulled.exists():
            shutil.copytree(root, pulled)
            shutil.rmtree(root)

    first = _run_with_byte_hook(station, root, pull)
    assert first.state == "INCOMPLETE" and first.stored >= 1
    # Out on shift: the recorder writes new evidence under the name A.MP4.
    (pulled / A).write_bytes(NEW)
    os.utime(pulled / A, (old + 30, old + 30))
    again = station.run_docking(pulled)
    earlier = station.journal.docking(first.uid)
    station.close()
    assert again.uid != first.uid  # a new docking took the recorder
    assert again.state == "CLEARED"
    stored = {p.read_bytes() for p in (tmp_path / "data" / "objects").rglob("*") if p.is_file()}
    assert NEW in stored, "the recorder's new A.MP4 was deleted without being stored"
    assert earlier is not None and earlier.state == "INCOMPLETE"
    assert earlier.message is not None and A in earlier.message  # says why it stopped


def test_clearing_keeps_a_file_that_is_no_longer_the_stored_one(tmp_path: Path) -> None:
    """The last guard: a recorder file whose size or time is not the stored file's is
    never deleted, whatever the journal says."""
    from ingest.offload import unlink_source

    root = tmp_path / "rec"
    root.mkdir()
    (root / A).write_bytes(NEW)
    st = (root / A).stat()
    assert unlink_source(root, A.encode(), size=st.st_size + 1, mtime_ns=st.st_mtime_ns) is False
    assert (root / A).exists()
    assert unlink_source(root, A.encode(), size=st.st_size, mtime_ns=st.st_mtime_ns) is True
    assert not (root / A).exists()
