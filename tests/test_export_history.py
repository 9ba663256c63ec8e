"""`liuhen export list` (the hand-over history: who, when, which bag, its signed digest)
and `liuhen export show` (a hand-over receipt reprinted), on SQLite and PostgreSQL."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from catalog.signing import verify_signature
from tests.cli_helpers import run_cli
from tests.test_export import CASE, dock_and_derive, make_case


def test_export_list_and_show_reprint_the_hand_over(
    tmp_path: Path,
    catalog_url: str,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    d = dock_and_derive(
        tmp_path, catalog_url=catalog_url, h265=0, wav=0, jpeg=0, truncated=0, segments=0
    )
    make_case(d.app)
    monkeypatch.setenv("LIUHEN_HOME", str(tmp_path / "data"))
    monkeypatch.setenv("LIUHEN_CATALOG_URL", catalog_url)
    r = run_cli(capsys, "export", "list")
    assert r.code == 0 and "no hand-over yet" in r.out
    bag = tmp_path / "out" / "bag"
    # The case number as typed with ASCII brackets and full-width digits.
    typed = CASE.replace("〔2026〕", "[２０２６]")
    r = run_cli(capsys, "export", "--case", typed, "--out", str(bag), "--actor", "档案员")
    assert r.code == 0, r.err
    digest = hashlib.sha256((bag / "tagmanifest-sha256.txt").read_bytes()).hexdigest()
    # The digest named is of the bytes the bag's signature signs.
    sig = (bag / "tagmanifest-sha256.txt.sig").read_bytes()
    manifest = (bag / "tagmanifest-sha256.txt").read_bytes()
    assert verify_signature(d.app.signer.public_key, sig, manifest)

    r = run_cli(capsys, "export", "list", "--json")
    [h] = json.loads(r.out)
    assert h["actor"] == "档案员" and h["scope"]["cases"] == [typed]
    assert h["finished_at"].endswith("+08:00")
    [b] = h["bags"]
    assert (b["name"], b["path"], b["signed_digest"], b["signed_digest_from"]) == (
        "bag",
        str(bag),
        digest,
        "catalog",
    )
    r = run_cli(capsys, "export", "list")
    assert digest in r.out and "档案员" in r.out and "+08:00" in r.out and str(bag) in r.out

    # The receipt, reprinted from the catalog after the bag has left the station.
    (bag / "tagmanifest-sha256.txt").unlink()
    r = run_cli(capsys, "export", "show", h["export"][:8])
    assert r.code == 0, r.err
    assert "移交回执" in r.out and digest in r.out and "档案员" in r.out and "+08:00" in r.out
    receipt = json.loads(run_cli(capsys, "export", "show", h["export"], "--json").out)
    assert receipt["bags"][0]["signed_digest"] == digest
    assert receipt["event"]["event_hash"] in r.out
    names = {i["name"] for i in receipt["items"]}
    assert names and all(n in r.out for n in names)
    assert len(receipt["items"]) == receipt["recordings"] == h["recordings"]
    r = run_cli(capsys, "export", "show", "ffffffff")
    assert r.code == 66 and "no export" in r.err
    r = run_cli(capsys, "export")
    assert r.code == 2 and "--out" in r.err
