"""The custody check's fast path (issue 18 point 3): signatures verified in one batch, by
libsodium where it is installed, with OpenSSL's verdict kept. Each tampering the rule
caught before is still caught, on both engines, and the batch gives the same findings as
checking the events one by one."""

from __future__ import annotations

import hashlib
import json
import threading
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from bench.verify import key_row, signed_events
from catalog import signing
from catalog.chainrule import (
    ChainChecker,
    Issue,
    Key,
    Trust,
    check_excerpt,
    event_from_json,
)
from catalog.signing import key_id_of, public_raw, verify_signature, verify_signatures

STATION = "st-01"
ENGINES = ["libsodium", "openssl"]


def _reset_engine() -> None:
    signing._sodium_state.clear()  # looked for again on next use


@pytest.fixture(params=ENGINES)
def engine(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    if request.param == "openssl":
        monkeypatch.setenv(signing.ENGINE_ENV, "openssl")
    else:
        monkeypatch.delenv(signing.ENGINE_ENV, raising=False)
    _reset_engine()
    if request.param == "libsodium" and not signing.fast_verify_available():
        pytest.skip("libsodium is not installed here")
    yield request.param
    _reset_engine()


def _objects(n: int) -> list[tuple[str, str, int]]:
    return [
        (hashlib.sha256(b"o%d" % i).hexdigest(), hashlib.sha256(b"s%d" % i).hexdigest(), 100 + i)
        for i in range(n)
    ]


def _excerpt(events: list[dict[str, Any]]) -> bytes:
    return "".join(json.dumps(e, sort_keys=True) + "\n" for e in events).encode()


def _keys(*rows: dict[str, Any]) -> bytes:
    return json.dumps({"keys": list(rows)}).encode()


def _kinds(issues: list[Issue]) -> set[tuple[str, int | None]]:
    return {(i.kind, i.line) for i in issues}


def _flip(ev: dict[str, Any]) -> None:
    sig = bytearray(bytes.fromhex(ev["signature"]))
    sig[5] ^= 1
    ev["signature"] = sig.hex()


def _flip_signature(evs: list[dict[str, Any]]) -> None:
    _flip(evs[40])


def _edit_details(evs: list[dict[str, Any]]) -> None:
    evs[40]["details"] = '{"size":1}'


def _drop_event(evs: list[dict[str, Any]]) -> None:
    del evs[40]  # #40 and #42 are then not consecutive: no link to check, nothing else


def _broken_link(evs: list[dict[str, Any]]) -> None:
    evs[40]["prev_hash"] = "1" * 64  # also changes its bytes: edited, badly signed


def _duplicate(evs: list[dict[str, Any]]) -> None:
    evs.insert(41, dict(evs[40]))


def _not_hex(evs: list[dict[str, Any]]) -> None:
    evs[40]["signature"] = "zz" + evs[40]["signature"][2:]


def _short_signature(evs: list[dict[str, Any]]) -> None:
    evs[40]["signature"] = evs[40]["signature"][:-2]


TAMPERINGS: dict[str, tuple[Callable[[list[dict[str, Any]]], None], set[tuple[str, int]]]] = {
    "flipped signature bit": (_flip_signature, {("bad-signature", 41)}),
    "edited details": (_edit_details, {("edited", 41), ("bad-signature", 41)}),
    "broken link": (
        _broken_link,
        {("broken-link", 41), ("edited", 41), ("bad-signature", 41)},
    ),
    "repeated event": (_duplicate, {("duplicate", 42)}),
    "signature not hex": (_not_hex, {("bad-signature", 41)}),
    "signature too short": (_short_signature, {("bad-signature", 41)}),
}


@pytest.mark.parametrize("name", sorted(TAMPERINGS))
def test_each_tampering_is_still_caught(engine: str, name: str) -> None:
    key = Ed25519PrivateKey.generate()
    evs = signed_events(key, STATION, _objects(100))  # 300 events: a threaded batch
    tamper, expected = TAMPERINGS[name]
    tamper(evs)
    result = check_excerpt(_excerpt(evs), _keys(key_row(key, STATION)))
    assert _kinds(result.issues) == expected


def test_untouched_excerpt_is_clean_and_every_link_counted(engine: str) -> None:
    key = Ed25519PrivateKey.generate()
    evs = signed_events(key, STATION, _objects(100))
    result = check_excerpt(_excerpt(evs), _keys(key_row(key, STATION)))
    assert result.issues == []
    assert result.links == 299 and result.stations == {STATION: 300}
    _drop_event(evs)
    result = check_excerpt(_excerpt(evs), _keys(key_row(key, STATION)))
    assert result.issues == [] and result.links == 297


def test_event_signed_by_another_key_under_the_same_id_is_rejected(engine: str) -> None:
    """The excerpt's key id names key A; the events were signed by key B."""
    a, b = Ed25519PrivateKey.generate(), Ed25519PrivateKey.generate()
    a_id = key_id_of(public_raw(a.public_key()))
    evs = signed_events(a, STATION, _objects(30))
    forged = signed_events(b, STATION, _objects(30))
    for ev in forged:
        ev["key_id"] = a_id  # claims A's id; the hash is recomputed below, so not "edited"
    # Re-sign B's events over bytes that name A's id, so only the signature is wrong.
    for good, bad in zip(evs, forged, strict=True):
        bad["event_hash"] = good["event_hash"]
        bad["prev_hash"] = good["prev_hash"]
        bad["signature"] = b.sign(_canonical(good)).hex()
    mixed = evs[:45] + forged[45:]
    result = check_excerpt(_excerpt(mixed), _keys(key_row(a, STATION)))
    assert _kinds(result.issues) == {("bad-signature", n) for n in range(46, 91)}


def _canonical(ev: dict[str, Any]) -> bytes:
    from catalog.chainrule import event_bytes

    return event_bytes(event_from_json(ev))


def test_key_cache_is_by_key_bytes_not_by_key_id(engine: str) -> None:
    """A checker that has verified with key A under id I must not go on using A when a
    key with other bytes is presented under the same id."""
    a, b = Ed25519PrivateKey.generate(), Ed25519PrivateKey.generate()
    key_a = Key(key_id_of(public_raw(a.public_key())), STATION, public_raw(a.public_key()))
    key_b_same_id = replace(key_a, public_key=public_raw(b.public_key()))
    data = b"chain head"
    checker = ChainChecker({key_a.key_id: key_a}, Trust(), whole=False)
    assert checker.verifies(key_a, a.sign(data).hex(), data)
    assert not checker.verifies(key_b_same_id, a.sign(data).hex(), data)
    assert checker.verifies(key_b_same_id, b.sign(data).hex(), data)


def test_batch_gives_the_findings_of_one_by_one(engine: str) -> None:
    """Damage spread over the batch's chunks and threads: signatures broken in the middle
    and at a chunk's edge, an edited event, a broken link, an event signed by another key
    under the excerpt's key id, and one naming a key the verifier does not hold."""
    key, other = Ed25519PrivateKey.generate(), Ed25519PrivateKey.generate()
    evs = signed_events(key, STATION, _objects(120))
    for i in (3, 150, 151, 359, signing.CHUNK - 1, signing.CHUNK):
        _flip(evs[i])
    evs[200]["actor"] = "station:other"
    evs[250]["prev_hash"] = "1" * 64
    evs[300]["signature"] = other.sign(_canonical(evs[300])).hex()  # the wrong key
    evs[310]["key_id"] = key_id_of(public_raw(other.public_key()))  # a key not held
    kid = key_id_of(public_raw(key.public_key()))
    keys = {kid: Key(kid, STATION, public_raw(key.public_key()))}
    records = [(n, event_from_json(e)) for n, e in enumerate(evs, 1)]
    one_by_one = ChainChecker(keys, whole=False)
    expected = [i for n, ev in records for i in one_by_one.check(ev, n)]
    batched = ChainChecker(keys, whole=False)
    assert batched.check_all(records) == expected
    assert {i.kind for i in expected} == {"bad-signature", "edited", "broken-link", "unknown-key"}
    assert {i.line for i in expected if i.kind == "bad-signature"} == {
        4,
        151,
        152,
        360,
        signing.CHUNK,
        signing.CHUNK + 1,
        201,
        251,
        301,
    }
    assert (batched.links, batched.stations) == (one_by_one.links, one_by_one.stations)
    excerpt = check_excerpt(_excerpt(evs), _keys(key_row(key, STATION)))
    assert [(i.kind, i.line, i.detail) for i in excerpt.issues] == [
        (i.kind, i.line, i.detail) for i in expected
    ]


def test_verify_signatures_keeps_order_across_threads(engine: str) -> None:
    key = Ed25519PrivateKey.generate()
    pub = public_raw(key.public_key())
    jobs = []
    for i in range(500):
        data = b"event %d" % i
        sig = key.sign(data)
        if i % 7 == 0:
            sig = sig[:10] + bytes([sig[10] ^ 0x80]) + sig[11:]
        jobs.append((pub, sig, data))
    assert verify_signatures(jobs, workers=2) == [i % 7 != 0 for i in range(500)]


def test_verify_signatures_raises_what_a_thread_raised(
    engine: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An error on a helper thread is not a verdict: the batch raises it."""
    key = Ed25519PrivateKey.generate()
    pub = public_raw(key.public_key())
    jobs = [(pub, key.sign(b"%d" % i), b"%d" % i) for i in range(300)]
    jobs[250] = (pub, bytes(64), b"250")  # rejected: asked of OpenSSL, which fails here

    def broken(public_key: bytes, signature: bytes, data: bytes) -> bool:
        raise MemoryError("injected")

    monkeypatch.setattr(signing, "_openssl_verifies", broken)
    monkeypatch.setattr(signing, "_openssl_key", broken)
    if engine == "openssl":
        monkeypatch.setattr(signing, "verify_signature", broken)
    with pytest.raises(MemoryError, match="injected"):
        verify_signatures(jobs, workers=2)
    assert not [t for t in threading.enumerate() if t.name.startswith("ed25519")]


@pytest.mark.parametrize(
    "line",
    [
        '{"a": 1}',
        '  {"a": 1}',
        '{"a": 1}  ',
        '{"a": 1} {"b": 2}',
        '{"a": 1},',
        '\ufeff{"a": 1}',
        '{"a": "\x01"}',
        '{"a": }',
        "[" * 100_000,
        '"text"',
        "12",
        "",
        "NaN",
    ],
)
def test_line_parser_answers_as_json_loads(line: str) -> None:
    """The custody lines' direct scan gives parse_json's value, or its error."""
    from catalog.chainrule import parse_json, parse_json_line

    try:
        expected: object = parse_json(line)
    except ValueError as exc:
        with pytest.raises(ValueError) as got:
            parse_json_line(line)
        assert str(got.value) == str(exc)
    else:
        assert repr(parse_json_line(line)) == repr(expected)  # (NaN is not equal to itself)


def test_wrong_lengths_are_rejected_not_read_past(engine: str) -> None:
    key = Ed25519PrivateKey.generate()
    pub, sig = public_raw(key.public_key()), key.sign(b"x")
    assert verify_signature(pub, sig, b"x")
    assert not verify_signature(pub[:31], sig, b"x")
    assert not verify_signature(pub, sig[:63], b"x")
    assert not verify_signature(pub, sig + b"\0", b"x")
    assert not verify_signature(b"", b"", b"x")


def test_verdict_is_openssls_where_libsodium_is_stricter(engine: str) -> None:
    """libsodium refuses small-order points; OpenSSL, the reference, accepts this
    degenerate signature. The verdict must not depend on which library is installed."""
    identity = bytes([1]) + bytes(31)
    signature = identity + bytes(32)
    assert verify_signature(identity, signature, b"anything") == signing._openssl_verifies(
        identity, signature, b"anything"
    )


def test_large_excerpt_beside_other_threads_is_checked_on_a_thread(
    engine: str, tmp_path: Path
) -> None:
    """Where a fork is unsafe (other threads run), libsodium lets the check run on a
    thread beside the hashing; with OpenSSL it runs inline first. Same findings."""
    from archive_export import bagverify
    from archive_export.bagverify import verify_bag
    from bench.verify import write_bag

    root = tmp_path / "bag"
    objects = []
    for i in range(200):
        data = b"original %d" % i
        p = root / "data" / "originals" / "D1" / "2026-11-26" / f"IMG_{i:04d}.JPG"
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(data)
        objects.append(
            (hashlib.sha256(data).hexdigest(), hashlib.new("sm3", data).hexdigest(), len(data))
        )
    key = Ed25519PrivateKey.generate()
    events = signed_events(key, STATION, objects)
    assert len(events) > bagverify.CUSTODY_FORK_MIN
    events[400]["actor"] = "station:forged"
    _flip(events[500])
    write_bag(root, key=key, custody=events, keys=[key_row(key, STATION)])
    started: list[str] = []
    real = bagverify.check_custody_excerpt

    def spy(inp: bagverify.CustodyInput) -> bagverify.CustodyResult:
        started.append(threading.current_thread().name)
        return real(inp)

    stop = threading.Event()
    other = threading.Thread(target=stop.wait, daemon=True)
    other.start()
    try:
        with pytest.MonkeyPatch.context() as mp:
            mp.setattr(bagverify, "check_custody_excerpt", spy)
            report = verify_bag(root)
    finally:
        stop.set()
        other.join()
    assert started == (["custody"] if engine == "libsodium" else ["MainThread"])
    assert report.custody["checked_in"] == "this process"
    assert report.custody["events"] == 600 and report.custody["links_checked"] == 599
    assert {(f.kind, f.line) for f in report.errors} == {
        ("custody-edited", 401),
        ("custody-bad-signature", 401),
        ("custody-bad-signature", 501),
    }


@pytest.mark.parametrize(
    ("change", "why"),
    [
        (lambda e: e.update(seq=True), "seq not a number"),
        (lambda e: e.update(seq="7"), "seq not a number"),
        (lambda e: e.update(actor=None), "not text: actor"),
        (lambda e: e.update(signature=5), "not text: signature"),
        (lambda e: e.pop("prev_hash"), "missing prev_hash"),
    ],
)
def test_malformed_event_lines_are_format_findings(
    change: Callable[[dict[str, Any]], object], why: str
) -> None:
    """The one-pass reading of a well-formed line refuses what the full checks refused."""
    key = Ed25519PrivateKey.generate()
    evs = signed_events(key, STATION, _objects(2))
    change(evs[3])
    result = check_excerpt(_excerpt(evs), _keys(key_row(key, STATION)))
    assert [(i.kind, i.line) for i in result.issues] == [("format", 4)]
    assert result.issues[0].detail.endswith(why)
    assert len(result.events) == 5


def test_doctor_says_which_library_verifies_signatures(engine: str) -> None:
    """An operator sees whether custody checks run at libsodium's speed or OpenSSL's."""
    from liuhen.doctor import _signature_engine

    check = _signature_engine()
    if engine == "libsodium":
        assert (check.status, check.detail) == ("ok", "libsodium, OpenSSL for rejections")
    else:
        assert check.status == "warn" and "OpenSSL only" in check.detail
        assert "libsodium" in check.fix
