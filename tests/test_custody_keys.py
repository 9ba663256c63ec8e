"""Keys and trust, one rule for every verifier (catalog.chainrule).

An event signed by a key after the key's retirement, and a station an auditor's key ring
does not name, are reported by `liuhen custody verify` on the catalog, and by `liuhen
verify BUNDLE` and the four-properties check on a bag carrying the same events.
"""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from sqlalchemy import select

from archive_export.bagverify import verify_bag
from archive_export.bagview import DirBag
from archive_export.fourprops import check_bag
from bench.verify import write_bag
from catalog import Catalog, Signer, append_event, register_station
from catalog.models import CustodyEvent, SigningKey
from catalog.signing import load_key_file
from tests.cli_helpers import run_cli

STATION = "station-01"
OTHER = "station-02"
FIELDS = (
    "station_id",
    "seq",
    "at",
    "actor",
    "action",
    "object_type",
    "object_id",
    "details",
    "prev_hash",
    "event_hash",
    "key_id",
    "signature",
)


@pytest.fixture
def home(
    tmp_path: Path,
    catalog_url: str,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> Path:
    monkeypatch.setenv("LIUHEN_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("LIUHEN_CATALOG_URL", catalog_url)
    assert run_cli(capsys, "init").code == 0
    return tmp_path / "home"


def signer_of(home: Path) -> Signer:
    return Signer(STATION, load_key_file(home / "keys" / "station.pem"))


def append(cat: Catalog, signer: Signer, at: datetime, n: int) -> None:
    with cat.transaction() as s:
        append_event(
            s,
            signer,
            actor="officer:010203",
            action="stored",
            object_type="recording",
            object_id=f"{n:064x}",
            details={"size": n},
            at=at,
        )


def excerpt_bag(cat: Catalog, root: Path, signer: Signer, heads: str = "") -> Path:
    """A signed 留痕-layout bag whose custody excerpt is every event of the catalog, with
    the keys as the catalog holds them (retirement included)."""
    with cat.session() as s:
        events = [
            {f: getattr(e, f) for f in FIELDS}
            for e in s.scalars(
                select(CustodyEvent).order_by(CustodyEvent.station_id, CustodyEvent.seq)
            )
        ]
        keys = [
            {
                "key_id": k.key_id,
                "station_id": k.station_id,
                "public_key_hex": k.public_key.hex(),
                "created_at": "2026-11-01T00:00:00Z",
                "retired_at": (
                    k.retired_at.strftime("%Y-%m-%dT%H:%M:%SZ") if k.retired_at else None
                ),
            }
            for k in s.scalars(select(SigningKey))
        ]
    (root / "data" / "metadata").mkdir(parents=True)
    (root / "data" / "metadata" / "note.txt").write_text("payload\n")
    if heads:
        (root / "data" / "metadata" / "anchors.jsonl").write_text(heads)
    return write_bag(root, key=signer.private_key, custody=events, keys=keys)


def a4_problems(bag: Path) -> list[str]:
    report = check_bag(DirBag(bag))
    (a4,) = [c for p in report["properties"].values() for c in p["checks"] if c["id"] == "A4"]
    return list(a4["problems"])


# -- retired keys -------------------------------------------------------------------------------


def test_events_signed_after_the_key_was_retired_are_reported(
    home: Path, catalog_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cat = Catalog(catalog_url)
    signer = signer_of(home)
    t0 = datetime.now(UTC) + timedelta(hours=1)
    for i in range(1, 11):  # events #2..#11, one a minute
        append(cat, signer, t0 + timedelta(minutes=i), i)
    # The key goes on signing after it was retired; the last one even backdated, which
    # its place in the chain (after #11) gives away.
    append(cat, signer, t0 + timedelta(minutes=2), 99)
    with cat.transaction() as s:
        s.scalars(select(SigningKey)).one().retired_at = t0 + timedelta(minutes=5, seconds=30)
    assert run_cli(capsys, "custody", "verify").code == 1
    report = json.loads(run_cli(capsys, "custody", "verify", "--json").out)
    retired = sorted(p["seq"] for p in report["problems"] if p["kind"] == "retired-key")
    assert retired == [7, 8, 9, 10, 11, 12]  # #2..#6 were signed before the retirement
    assert {p["kind"] for p in report["problems"]} == {"retired-key"}

    # The same events in a bag: `verify BUNDLE` and four-properties apply the same rule.
    bag = excerpt_bag(cat, tmp_path / "bag", signer)
    found = verify_bag(bag)
    # One event a line, from key-registered #1: each finding's line is its event number.
    assert sorted({f.line for f in found.errors if f.kind == "custody-retired-key"}) == [
        7,
        8,
        9,
        10,
        11,
        12,
    ]
    cli = run_cli(capsys, "verify", str(bag))
    assert cli.code == 1 and "custody-retired-key" in cli.out and f"{STATION} event #7" in cli.out
    problems = a4_problems(bag)
    assert sum("retired-key" in p for p in problems) == 6, problems
    cat.dispose()


# -- stations an auditor's key ring does not name ----------------------------------------


def test_station_absent_from_the_key_ring_is_untrusted(
    home: Path, catalog_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cat = Catalog(catalog_url)
    signer = signer_of(home)
    other = Signer(OTHER, Ed25519PrivateKey.generate())  # registered in the catalog only
    with cat.transaction() as s:
        register_station(s, other)
    now = datetime.now(UTC)
    append(cat, signer, now, 1)
    append(cat, other, now, 2)
    ring = tmp_path / "district-keys.txt"
    ring.write_text(f"{STATION} {signer.key_id}\n", encoding="utf-8")
    assert run_cli(capsys, "custody", "verify").code == 0  # the catalog's own keys agree
    result = run_cli(capsys, "custody", "verify", "--trust", str(ring))
    assert result.code == 1, result.out
    assert (
        "untrusted-station" in result.out
        and f"station {OTHER} is not in the key ring" in result.out
    )
    assert f"station {STATION} event" not in result.out  # the ring's station is trusted

    bag = excerpt_bag(cat, tmp_path / "bag", signer)
    assert verify_bag(bag).ok
    report = verify_bag(bag, trusted={STATION: {signer.key_id}})
    untrusted = [f for f in report.errors if f.kind == "custody-untrusted-station"]
    assert untrusted and all(f"station {OTHER}" in f.detail for f in untrusted)
    cli = run_cli(capsys, "verify", str(bag), "--trust", str(ring))
    assert cli.code == 1 and "custody-untrusted-station" in cli.out
    cat.dispose()


# -- chain heads in a bag ------------------------------------------------------------------


def test_bag_chain_heads_checked_against_the_excerpt(
    home: Path, catalog_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from catalog.chainrule import sign_head

    cat = Catalog(catalog_url)
    signer = signer_of(home)
    for i in range(1, 4):
        append(cat, signer, datetime.now(UTC), i)
    good = sign_head(signer, 4, "a" * 64)  # beyond the excerpt: nothing to contradict
    wrong = sign_head(signer, 3, "b" * 64)  # names another event #3 than the excerpt's
    forged = sign_head(Signer(STATION, Ed25519PrivateKey.generate()), 4, "c" * 64)
    heads = "".join(h.to_line() + "\n" for h in (good, wrong, forged))
    bag = excerpt_bag(cat, tmp_path / "bag", signer, heads)
    report = verify_bag(bag)
    kinds = {(f.kind, f.path) for f in report.errors}
    assert kinds == {
        ("custody-rollback", "data/metadata/custody.jsonl"),
        ("custody-bad-anchor", "data/metadata/anchors.jsonl"),
    }, kinds
    assert report.custody["chain_heads"] == 2
    problems = a4_problems(bag)
    assert any("rollback" in p for p in problems) and any("bad-anchor" in p for p in problems)
    cat.dispose()


# -- the offline verifier stays light ------------------------------------------------------


@pytest.mark.parametrize("catalog_url", ["sqlite"], indirect=True)
def test_verify_bundle_loads_neither_sqlalchemy_nor_boto3(
    home: Path, catalog_url: str, tmp_path: Path
) -> None:
    cat = Catalog(catalog_url)
    bag = excerpt_bag(cat, tmp_path / "bag", signer_of(home))
    cat.dispose()
    probe = (
        "import sys\nfrom liuhen.cli import main\ntry:\n    main(['verify', sys.argv[1]])\n"
        "except SystemExit as e:\n    code = e.code\n"
        "print(code, 'sqlalchemy' in sys.modules, 'boto3' in sys.modules, file=sys.stderr)"
    )
    done = subprocess.run(
        [sys.executable, "-c", probe, str(bag)],
        capture_output=True,
        text=True,
        check=False,
        cwd=Path(__file__).parent.parent,
    )
    assert done.stderr.split()[-3:] == ["0", "False", "False"], done.stderr + done.stdout


def test_retire_key_command_then_later_events_of_that_key_are_reported(
    home: Path, catalog_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    cat = Catalog(catalog_url)
    own = signer_of(home)
    leaked = Signer(OTHER, Ed25519PrivateKey.generate())
    with cat.transaction() as s:
        register_station(s, leaked)  # OTHER #1
    append(cat, leaked, datetime.now(UTC), 1)  # OTHER #2, before the retirement
    refused = run_cli(capsys, "custody", "retire-key", own.key_id, "--reason", "test")
    assert refused.code == 65 and "the key this host signs with" in refused.err
    unknown = run_cli(capsys, "custody", "retire-key", "ed25519:" + "0" * 64, "--reason", "x")
    assert unknown.code == 65 and "no signing key ed25519:000" in unknown.err
    done = run_cli(
        capsys, "custody", "retire-key", leaked.key_id, "--reason", "key leaked", "--actor", "admin"
    )
    assert done.code == 0 and f"station {OTHER} retired at" in done.out
    with cat.session() as s:
        event = s.scalars(select(CustodyEvent).where(CustodyEvent.action == "key-retired")).one()
        assert (event.station_id, event.object_id, event.actor) == (STATION, leaked.key_id, "admin")
    append(cat, leaked, datetime.now(UTC) + timedelta(minutes=1), 3)  # OTHER #3, after
    report = json.loads(run_cli(capsys, "custody", "verify", "--json").out)
    retired = [
        (p["station_id"], p["seq"]) for p in report["problems"] if p["kind"] == "retired-key"
    ]
    assert retired == [(OTHER, 3)], report["problems"]
    cat.dispose()


def test_a_retirement_cleared_from_the_key_row_is_still_known_from_its_signed_event(
    home: Path, catalog_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The retirement is a signed custody event: an insider holding the leaked key and the
    catalog cannot undo it by clearing one column, then sign on with the leaked key."""
    cat = Catalog(catalog_url)
    own = signer_of(home)
    leaked = Signer(OTHER, Ed25519PrivateKey.generate())
    with cat.transaction() as s:
        register_station(s, leaked)  # OTHER #1
    append(cat, leaked, datetime.now(UTC), 1)  # OTHER #2, before the retirement
    assert (
        run_cli(
            capsys,
            "custody",
            "retire-key",
            leaked.key_id,
            "--reason",
            "key leaked",
            "--actor",
            "admin",
        ).code
        == 0
    )
    with cat.transaction() as s:  # the insider's edit: the row forgets the retirement
        s.get(SigningKey, leaked.key_id).retired_at = None  # type: ignore[union-attr]
    append(cat, leaked, datetime.now(UTC) + timedelta(minutes=1), 3)  # OTHER #3, after
    result = run_cli(capsys, "custody", "verify", "--json")
    assert result.code == 1, result.out
    retired = [
        (p["station_id"], p["seq"])
        for p in json.loads(result.out)["problems"]
        if p["kind"] == "retired-key"
    ]
    assert retired == [(OTHER, 3)], result.out

    # A bag carrying the same events (keys.json written from the edited row): the excerpt's
    # own key-retired event is enough for `verify BUNDLE` and four-properties.
    bag = excerpt_bag(cat, tmp_path / "bag", own)
    found = verify_bag(bag)
    assert [f.kind for f in found.errors] == ["custody-retired-key"], found.errors
    assert sum("retired-key" in p for p in a4_problems(bag)) == 1
    cat.dispose()
