"""Progress of the long jobs of this area: `export` tells its bar the bytes to copy and
each chunk copied, `verify BUNDLE` the bag's payload bytes hashed, `verify --store` the
bytes the audit will read before reading them. (The bar itself, liuhen.progress, shows
only at a terminal; with --json and in scripts nothing reaches stderr.)"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from archive_export.bagverify import verify_bag
from archive_export.fixity import audit_store, make_scope
from tests.cli_helpers import run_cli
from tests.test_export import CASE, dock_and_derive, export, make_case


class Sink:
    """Records what a job tells its progress bar."""

    def __init__(self) -> None:
        self.totals: list[int | None] = []
        self.done = 0
        self.labels: list[str] = []

    def set_total(self, total: int | None) -> None:
        self.totals.append(total)

    def advance(self, amount: int = 1) -> None:
        self.done += amount

    def describe(self, text: str) -> None:
        self.labels.append(text)


def test_export_and_verify_report_their_bytes(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    d = dock_and_derive(
        tmp_path, h264=0, h265=0, wav=2, jpeg=0, truncated=0, segments=0, with_device_info=False
    )
    make_case(d.app)
    sink = Sink()
    result = export(d.app, tmp_path / "out" / "bag", progress=sink)
    [bag] = result.bags
    originals = sorted((bag.path / "data" / "originals").rglob("*.WAV"))
    size = sum(p.stat().st_size for p in originals)
    # The total is known before the first byte is copied, and every byte is counted.
    assert sink.totals == [size] and sink.done == size
    assert sorted(sink.labels) == sorted(p.name for p in originals)

    ticks: list[tuple[int, int]] = []
    report = verify_bag(bag.path, progress=lambda done, total: ticks.append((done, total)))
    assert report.ok
    # Bytes of the bag's files (payload and tag files), not bytes × three algorithms.
    done, total = ticks[-1]
    assert done == total and report.payload_bytes <= total < 2 * report.payload_bytes
    assert all(done <= total for done, total in ticks)

    totals: list[int] = []
    audit = audit_store(
        d.app.catalog,
        d.app.store,
        d.app.signer,
        scope=make_scope("all"),
        actor="test",
        on_total=totals.append,
    )
    assert audit.ok and totals == [audit.bytes] and audit.bytes > size

    # In scripts (no terminal) and with --json: nothing on stderr but what went wrong.
    monkeypatch.setenv("LIUHEN_HOME", str(tmp_path / "data"))
    monkeypatch.setenv("LIUHEN_CATALOG_URL", d.app.settings.catalog_url)
    r = run_cli(capsys, "export", "--case", CASE, "--out", str(tmp_path / "b2"), "--json")
    assert r.code == 0 and r.err == "" and json.loads(r.out)["recordings"] == 2
    r = run_cli(capsys, "verify", "--store", "--json")
    assert r.code == 0 and r.err == ""
