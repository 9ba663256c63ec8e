"""Tampering with the custody log in the database is caught by `liuhen custody verify`."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from sqlalchemy import select, text
from sqlalchemy.orm import Session

from catalog import Catalog, Signer, append_event
from catalog.chainrule import event_bytes
from catalog.custody import canonical_bytes
from catalog.models import CustodyEvent, SigningKey
from catalog.signing import key_id_of, public_raw
from tests.cli_helpers import run_cli


@pytest.fixture
def station(
    tmp_path: Path,
    catalog_url: str,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> Catalog:
    """An initialised station with ten custody events after its key registration."""
    monkeypatch.setenv("LIUHEN_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("LIUHEN_CATALOG_URL", catalog_url)
    assert run_cli(capsys, "init").code == 0
    from catalog.signing import load_key_file

    signer = Signer("station-01", load_key_file(tmp_path / "home" / "keys" / "station.pem"))
    cat = Catalog(catalog_url)
    with cat.transaction() as s:
        for i in range(10):
            append_event(
                s,
                signer,
                actor="officer:010203",
                action="stored",
                object_type="recording",
                object_id=f"sha256:{i:064x}",
                details={"size": 1000 + i},
            )
    assert run_cli(capsys, "custody", "verify").code == 0
    return cat


def event(s: Session, seq: int) -> CustodyEvent:
    ev = s.scalars(select(CustodyEvent).where(CustodyEvent.seq == seq)).one()
    return ev


def edit_details(s: Session) -> None:
    event(s, 5).details = '{"size":9999}'


def edit_time(s: Session) -> None:
    event(s, 5).at = "2020-01-01T00:00:00.000000Z"


def delete_row(s: Session) -> None:
    s.delete(event(s, 5))


def delete_and_renumber(s: Session) -> None:
    """Delete #5 and shift the later rows down, so the numbers have no gap."""
    s.delete(event(s, 5))
    s.flush()
    for seq in range(6, 12):
        ev = event(s, seq)
        ev.seq = seq - 1
        s.flush()


def reorder(s: Session) -> None:
    a, b = event(s, 4), event(s, 6)
    a.seq, b.seq = -1, -2
    s.flush()
    a.seq, b.seq = 6, 4


def insert_forged(s: Session) -> None:
    """Append an event signed by a key the attacker made up, chained correctly."""
    last = event(s, 11)
    forger = Ed25519PrivateKey.generate()
    kid = key_id_of(public_raw(forger.public_key()))
    fields = dict(
        station_id=last.station_id,
        seq=12,
        at=last.at,
        actor="officer:x",
        action="stored",
        object_type="recording",
        object_id="forged",
        details="{}",
        prev_hash=last.event_hash,
        key_id=kid,
    )
    data = canonical_bytes(**fields)  # type: ignore[arg-type]
    import hashlib

    s.add(
        CustodyEvent(
            **fields, event_hash=hashlib.sha256(data).hexdigest(), signature=forger.sign(data).hex()
        )
    )


def resign_with_replaced_key(s: Session) -> None:
    """The strongest attack inside the catalog: swap the station's key and re-sign all."""
    forger = Ed25519PrivateKey.generate()
    pub = public_raw(forger.public_key())
    kid = key_id_of(pub)
    old = s.scalars(select(SigningKey)).one()
    s.add(SigningKey(key_id=kid, station_id=old.station_id, public_key=pub))
    s.flush()
    import hashlib

    prev = "0" * 64
    for ev in s.scalars(select(CustodyEvent).order_by(CustodyEvent.seq)):
        ev.key_id = kid
        ev.prev_hash = prev
        data = event_bytes(ev)
        ev.event_hash = hashlib.sha256(data).hexdigest()
        ev.signature = forger.sign(data).hex()
        prev = ev.event_hash
        s.flush()
    s.delete(old)


def replace_key_bytes(s: Session) -> None:
    key = s.scalars(select(SigningKey)).one()
    key.public_key = public_raw(Ed25519PrivateKey.generate().public_key())


TAMPERS: dict[str, tuple[Callable[[Session], None], str, str]] = {
    # name: (tamper, problem kind expected in the output, event named)
    "edited details": (edit_details, "edited", "event #5"),
    "edited time": (edit_time, "edited", "event #5"),
    "deleted row": (delete_row, "gap", "event #6"),
    "deleted and renumbered": (delete_and_renumber, "broken-link", "event #5"),
    "reordered rows": (reorder, "broken-link", "event #4"),
    "inserted forged event": (insert_forged, "unknown-key", "event #12"),
    "key replaced, all re-signed": (resign_with_replaced_key, "untrusted-key", "event #1"),
    "key bytes replaced": (replace_key_bytes, "bad-signature", "event #1"),
}


@pytest.mark.parametrize("name", list(TAMPERS))
def test_tampering_is_detected_and_named(
    name: str, station: Catalog, capsys: pytest.CaptureFixture[str]
) -> None:
    tamper, kind, named = TAMPERS[name]
    with station.transaction() as s:
        if station.is_postgres:
            s.execute(text("SET CONSTRAINTS ALL DEFERRED"))
        tamper(s)
    result = run_cli(capsys, "custody", "verify")
    assert result.code == 1, result.out + result.err
    assert kind in result.out
    assert named in result.out
    station.dispose()


def test_json_report_lists_every_problem(
    station: Catalog, capsys: pytest.CaptureFixture[str]
) -> None:
    with station.transaction() as s:
        event(s, 3).actor = "someone else"
        event(s, 8).object_id = "other"
    result = run_cli(capsys, "custody", "verify", "--json")
    import json

    report = json.loads(result.out)
    assert result.code == 1 and report["ok"] is False
    assert {p["seq"] for p in report["problems"] if p["kind"] == "edited"} == {3, 8}
    station.dispose()


def test_trusted_key_ring_catches_a_replaced_key(
    station: Catalog,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """An auditor without the station's key file pins the key id from a key ring."""
    with station.session() as s:
        original = s.scalars(select(SigningKey)).one().key_id
    ring = tmp_path / "keyring.txt"
    ring.write_text(f"# pinned at commissioning\nstation-01 {original}\n", encoding="utf-8")
    with station.transaction() as s:
        resign_with_replaced_key(s)
    (tmp_path / "home" / "keys" / "station.pem").unlink()  # no local anchor
    assert run_cli(capsys, "custody", "verify").code == 0  # nothing to compare with
    result = run_cli(capsys, "custody", "verify", "--trust", str(ring))
    assert result.code == 1 and "untrusted-key" in result.out
    station.dispose()


def test_problems_read_in_chinese_while_json_keeps_the_kind(
    station: Catalog, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    with station.transaction() as s:
        edit_details(s)
    monkeypatch.setenv("LIUHEN_LANG", "zh")
    shown = run_cli(capsys, "custody", "verify")
    assert shown.code == 1
    assert "内容被改动" in shown.out and "edited" not in shown.out
    as_json = run_cli(capsys, "custody", "verify", "--json")
    import json

    assert "edited" in [p["kind"] for p in json.loads(as_json.out)["problems"]]
    station.dispose()
