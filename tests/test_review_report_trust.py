"""Review repro: `liuhen verify REPORT.sig.json` without --trust accepts a report that
anyone re-signed with a key of their own, naming whatever station they like, and a
signature file that names no files at all; bags in the same situation say
"self-declared" (archive_export/bagverify._judge_trust)."""

from __future__ import annotations

import json
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from catalog.signing import Signer
from compliance.report import sign_files, verify_report


def _forge(tmp_path: Path, files: list[Path]) -> Path:
    forger = Signer("xuhui-station-1", Ed25519PrivateKey.generate())  # not the station's key
    sig = tmp_path / "r.sig.json"
    sig.write_text(json.dumps(sign_files(forger, files)))
    return sig


def test_forged_report_is_not_called_verified_without_a_key_ring(tmp_path: Path) -> None:
    data = tmp_path / "r.json"
    data.write_text('{"summary": "全部完整"}')  # edited figures
    result = verify_report(_forge(tmp_path, [data]), trusted=None)
    # Fails today: ok is True, and the CLI prints "report signed by xuhui-station-1 ... verifies".
    assert not result["ok"] or result.get("trust") == "self-declared"


def test_signature_file_naming_no_files_does_not_verify(tmp_path: Path) -> None:
    result = verify_report(_forge(tmp_path, []), trusted=None)
    assert not result["ok"]  # fails today: nothing was checked, and it "verifies"
