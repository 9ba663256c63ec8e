"""The signature of an HTML access report: how it is made and how it is checked.

The report carries one signature block (``<section id="liuhen-signature">``). Its
content is every byte of the file outside that block; the block states the content's
SHA-256, the signing station and key (with the public key), when it was signed, what the
report is about, and an Ed25519 signature over a canonical statement of all of those.
The block itself is checked by writing it again from the fields it states and comparing
byte for byte, so a change of any single byte of the file, inside the block or out of
it, fails verification.

This module imports neither SQLAlchemy nor the catalog's models: a report can be checked
on a machine with only the report and a key ring (``--trust``).
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime
from html import escape, unescape

from catalog.canonical import canonical_json, format_time
from catalog.signing import Signer, key_id_of, verify_signature
from config.i18n import _

SIGNATURE_TYPE = "liuhen-access-report"
SIGNATURE_VERSION = 1
# Where the block goes while the content is hashed; not in any finished report.
PLACEHOLDER = "<!--liuhen-signature-->"
_FIELDS = ("sha256", "subject", "station", "key_id", "public_key", "at", "signature")
# Fixed, bilingual labels: the block must read the same whatever the language of the
# report, and in every later version of 留痕, or old reports would stop verifying.
_LABELS = {
    "sha256": "内容 SHA-256 / Content SHA-256",
    "subject": "报告对象 / Subject",
    "station": "签名主机 / Signed by station",
    "key_id": "签名密钥 / Signing key",
    "public_key": "公钥 (Ed25519) / Public key",
    "at": "签名时间 (UTC) / Signed at (UTC)",
    "signature": "Ed25519 签名 / Signature",
}
_BLOCK = re.compile(rb'<section id="liuhen-signature">.*?</section>\n', re.DOTALL)
_FIELD = re.compile(r'<code data-field="([a-z_0-9]+)">([^<]*)</code>')


def statement(fields: dict[str, str]) -> bytes:
    """The bytes the signature covers."""
    doc = {"type": SIGNATURE_TYPE, "v": SIGNATURE_VERSION}
    doc |= {k: fields[k] for k in _FIELDS if k not in ("signature", "public_key")}
    return canonical_json(doc).encode("utf-8")


def signature_block(fields: dict[str, str]) -> str:
    rows = "".join(
        f'<tr><th>{_LABELS[k]}</th><td><code data-field="{k}">{escape(fields[k])}</code>'
        "</td></tr>\n"
        for k in _FIELDS
    )
    return (
        '<section id="liuhen-signature">\n'
        "<h2>电子签名 / Electronic signature</h2>\n"
        f'<table class="signature">\n{rows}</table>\n'
        "<p>校验 / To verify: <code>liuhen audit verify-report FILE</code></p>\n"
        "</section>\n"
    )


def sign_html(body: str, signer: Signer, subject: str, at: datetime | None = None) -> str:
    """``body`` (holding :data:`PLACEHOLDER` once) with the signature block in its place."""
    if body.count(PLACEHOLDER) != 1:
        raise ValueError("the report must hold the signature placeholder exactly once")
    content = body.replace(PLACEHOLDER, "").encode("utf-8")
    fields = {
        "sha256": hashlib.sha256(content).hexdigest(),
        "subject": subject,
        "station": signer.station_id,
        "key_id": signer.key_id,
        "public_key": signer.public_key.hex(),
        "at": format_time(at or datetime.now(UTC)),
    }
    fields["signature"] = signer.sign(statement(fields)).hex()
    return body.replace(PLACEHOLDER, signature_block(fields))


@dataclass
class ReportCheck:
    """What checking a report found. ``ok``: the content is as signed, by the key named."""

    sha256: str = ""
    subject: str = ""
    station: str = ""
    key_id: str = ""
    at: str = ""
    problems: list[str] = field(default_factory=list)
    # How the key was judged: "catalog", "keyring", or "" (not judged: see problems).
    trusted_by: str = ""

    @property
    def ok(self) -> bool:
        return not self.problems


def check_report(data: bytes) -> ReportCheck:
    """The report's own consistency: its content hash, its block and its signature with
    the public key it states. Whether that key is the station's is for the caller
    (:attr:`ReportCheck.trusted_by`): the catalog's keys or an auditor's key ring."""
    check = ReportCheck()
    blocks = list(_BLOCK.finditer(data))
    if len(blocks) != 1:
        check.problems.append(
            _("not a signed 留痕 report: it holds {n} signature blocks, not one").format(
                n=len(blocks)
            )
        )
        return check
    block = blocks[0]
    try:
        text = block.group(0).decode("utf-8")
    except UnicodeDecodeError:
        check.problems.append(_("the signature block is not UTF-8 text"))
        return check
    fields = {k: unescape(v) for k, v in _FIELD.findall(text)}
    if sorted(fields) != sorted(_FIELDS):
        check.problems.append(_("the signature block lacks fields or has others"))
        return check
    check.sha256, check.subject = fields["sha256"], fields["subject"]
    check.station, check.key_id, check.at = fields["station"], fields["key_id"], fields["at"]
    if signature_block(fields) != text:
        check.problems.append(_("the signature block was changed"))
    content = data[: block.start()] + data[block.end() :]
    if hashlib.sha256(content).hexdigest() != fields["sha256"]:
        check.problems.append(
            _("the report's content was changed after signing (its SHA-256 differs)")
        )
    _check_signature(fields, check)
    return check


def _check_signature(fields: dict[str, str], check: ReportCheck) -> None:
    try:
        public = bytes.fromhex(fields["public_key"])
        signature = bytes.fromhex(fields["signature"])
    except ValueError:
        check.problems.append(_("the public key or signature is not hexadecimal"))
        return
    if len(public) != 32 or key_id_of(public) != fields["key_id"]:
        check.problems.append(
            _("the public key stated is not the key named {key}").format(key=fields["key_id"])
        )
        return
    if not verify_signature(public, signature, statement(fields)):
        check.problems.append(_("the Ed25519 signature does not verify"))
