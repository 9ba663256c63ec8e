"""Station signing keys: Ed25519, stored as PEM with mode 0600."""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from catalog.errors import KeyFileError


def key_id_of(public_raw: bytes) -> str:
    """A key's id commits to its bytes, so a swapped key cannot keep an old id."""
    return "ed25519:" + hashlib.sha256(public_raw).hexdigest()


def public_raw(key: Ed25519PublicKey) -> bytes:
    return key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


@dataclass(frozen=True)
class Signer:
    """What a station signs custody events with."""

    station_id: str
    private_key: Ed25519PrivateKey

    @property
    def public_key(self) -> bytes:
        return public_raw(self.private_key.public_key())

    @property
    def key_id(self) -> str:
        return key_id_of(self.public_key)

    def sign(self, data: bytes) -> bytes:
        return self.private_key.sign(data)


def verify_signature(public_key: bytes, signature: bytes, data: bytes) -> bool:
    try:
        Ed25519PublicKey.from_public_bytes(public_key).verify(signature, data)
    except (InvalidSignature, ValueError):
        return False
    return True


def generate_key_file(path: Path) -> Ed25519PrivateKey:
    """Write a new private key to ``path`` (mode 0600), never replacing an existing one."""
    key = Ed25519PrivateKey.generate()
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    tmp = path.with_name(path.name + ".new")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.write(fd, pem)
        os.fsync(fd)
    finally:
        os.close(fd)
    try:
        os.link(tmp, path)  # no-replace: an existing key is never overwritten
    finally:
        os.unlink(tmp)
    return key


def load_key_file(path: Path) -> Ed25519PrivateKey:
    try:
        data = path.read_bytes()
    except FileNotFoundError as exc:
        raise KeyFileError(
            f"station signing key {path} not found",
            hint="run 'liuhen init' to create it, or set station.key_file",
        ) from exc
    except PermissionError as exc:
        raise KeyFileError(f"station signing key {path}: permission denied") from exc
    mode = path.stat().st_mode & 0o777
    if mode & 0o077:
        raise KeyFileError(
            f"station signing key {path} is readable by others (mode {mode:o})",
            hint=f"run 'chmod 600 {path}'",
        )
    try:
        key = serialization.load_pem_private_key(data, password=None)
    except ValueError as exc:
        raise KeyFileError(f"station signing key {path} is not a PEM private key") from exc
    if not isinstance(key, Ed25519PrivateKey):
        raise KeyFileError(f"station signing key {path} is not an Ed25519 key")
    return key


def load_keyring(path: Path) -> dict[str, set[str]]:
    """Trusted keys from a key ring file: ``<station id> <key id>`` per line, ``#`` comments.

    An auditor keeps this outside the catalog (for example, from the stations' own key
    files or an earlier export), so a key replaced inside the catalog is caught.
    """
    ring: dict[str, set[str]] = {}
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError as exc:
        raise KeyFileError(f"key ring {path}: cannot read: {exc.strerror}") from exc
    for number, line in enumerate(lines, 1):
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        parts = line.split()
        if len(parts) != 2 or not parts[1].startswith("ed25519:"):
            raise KeyFileError(
                f"key ring {path}, line {number}: expected '<station id> ed25519:<hex>'"
            )
        ring.setdefault(parts[0], set()).add(parts[1])
    return ring
