"""`liuhen verify REPORT.sig.json`: whose key signed the report, as for a bag.

Without a key ring a report's signature is only self-declared (anyone can re-sign edited
figures with a key of their own and name any station); with one, a key it does not name
fails. A signature file that covers none of the report, or is not one at all, fails too,
naming why (exit 1), never as an internal error.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from catalog.signing import Signer
from compliance.report import sign_files, verify_report
from tests.cli_helpers import Result, run_cli

STATION = "xuhui-station-1"


def _report(
    tmp_path: Path, signer: Signer, names: tuple[str, ...] = ("pdf", "json", "html")
) -> Path:
    files = []
    for suffix in names:
        path = tmp_path / f"自查报告-2026.{suffix}"
        path.write_text(f"figures ({suffix})", encoding="utf-8")
        files.append(path)
    sig = tmp_path / "自查报告-2026.sig.json"
    sig.write_text(json.dumps(sign_files(signer, files)), encoding="utf-8")
    return sig


def _ring(tmp_path: Path, signer: Signer, station: str = STATION) -> Path:
    ring = tmp_path / "ring.txt"
    ring.write_text(f"{station} {signer.key_id}\n", encoding="utf-8")
    return ring


def _verify(capsys: pytest.CaptureFixture[str], sig: Path, *args: str) -> Result:
    return run_cli(capsys, "verify", str(sig), *args)


@pytest.fixture
def station() -> Signer:
    return Signer(STATION, Ed25519PrivateKey.generate())


@pytest.fixture
def forger() -> Signer:
    return Signer(STATION, Ed25519PrivateKey.generate())  # names the station; not its key


def test_without_a_key_ring_the_signer_is_only_self_declared(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, forger: Signer
) -> None:
    sig = _report(tmp_path, forger)
    r = _verify(capsys, sig)
    assert r.code == 0, r.out + r.err
    assert "self-declared" in r.out and "--trust" in r.out
    assert "verifies" not in r.out
    data = json.loads(_verify(capsys, sig, "--json").out)
    assert data["ok"] and data["trust"] == "self-declared" and data["trusted_by"] == []


def test_a_report_re_signed_with_another_key_fails_against_the_key_ring(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, station: Signer, forger: Signer
) -> None:
    ring = _ring(tmp_path, station)
    r = _verify(capsys, _report(tmp_path, forger), "--trust", str(ring))
    assert r.code == 1
    assert f"key {forger.key_id} of {STATION} is in none of the given key rings" in r.out
    data = json.loads(
        _verify(capsys, tmp_path / "自查报告-2026.sig.json", "--trust", str(ring), "--json").out
    )
    assert not data["ok"] and data["trust"] == "untrusted"


def test_the_station_s_own_key_in_the_ring_is_trusted(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, station: Signer
) -> None:
    sig, ring = _report(tmp_path, station), _ring(tmp_path, station)
    r = _verify(capsys, sig, "--trust", str(ring))
    assert r.code == 0, r.out + r.err
    assert "trusted" in r.out and "verifies" in r.out and STATION in r.out
    data = json.loads(_verify(capsys, sig, "--trust", str(ring), "--json").out)
    assert data["trust"] == "trusted" and data["trusted_by"] == [STATION]


def test_a_trusted_key_naming_another_station_fails(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, station: Signer
) -> None:
    ring = _ring(tmp_path, station, station="minhang-station-2")
    r = _verify(capsys, _report(tmp_path, station), "--trust", str(ring))
    assert r.code == 1
    assert f"trusted for station minhang-station-2, not for {STATION}" in r.out


@pytest.mark.parametrize(
    ("names", "missing"),
    [((), ["PDF", "JSON", "HTML"]), (("json",), ["PDF", "HTML"]), (("pdf", "json"), ["HTML"])],
)
def test_a_signature_must_cover_the_report_s_pdf_json_and_html(
    tmp_path: Path, station: Signer, names: tuple[str, ...], missing: list[str]
) -> None:
    result = verify_report(_report(tmp_path, station, names), trusted=None)
    assert not result["ok"]
    assert result["problems"] == [
        f"the signature covers no {kind} file of the report" for kind in missing
    ]


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("[]", "the signature file is not a JSON object"),
        ('"signed"', "the signature file is not a JSON object"),
        ("{not json", "the signature file is not JSON"),
        ('{"files": []}', "the signature file's 'files' is missing or not an object"),
        ('{"key_id": 7, "files": {}}', "the signature file's 'key_id' is missing or not text"),
    ],
)
def test_a_malformed_signature_file_is_a_named_problem(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, text: str, problem: str
) -> None:
    sig = tmp_path / "r.sig.json"
    sig.write_text(text, encoding="utf-8")
    r = _verify(capsys, sig)
    assert r.code == 1, r.out + r.err
    assert problem in r.out
    data = json.loads(_verify(capsys, sig, "--json").out)
    assert problem in data["problems"] and not data["ok"]
