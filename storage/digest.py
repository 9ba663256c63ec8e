"""Digests as values: a frozen ``Digest(algorithm, hex)`` travels through the code."""

from __future__ import annotations

import base64
import hashlib
import re
from dataclasses import dataclass
from typing import BinaryIO, Protocol

_HEX_LENGTH = {"sha256": 64, "sm3": 64, "sha512": 128}
_HEX = re.compile(r"^[0-9a-f]+$")
READ_SIZE = 1 << 20


class Hasher(Protocol):
    def update(self, data: bytes | memoryview, /) -> None: ...
    def hexdigest(self) -> str: ...


@dataclass(frozen=True, slots=True)
class Digest:
    algorithm: str
    hex: str

    def __post_init__(self) -> None:
        want = _HEX_LENGTH.get(self.algorithm)
        if want is None:
            raise ValueError(f"unknown digest algorithm {self.algorithm!r}")
        if len(self.hex) != want or not _HEX.match(self.hex):
            raise ValueError(f"not a {self.algorithm} digest: {self.hex!r}")

    def __str__(self) -> str:
        return f"{self.algorithm}:{self.hex}"

    @property
    def b64(self) -> str:
        """Base64 of the raw digest, the form S3 checksum headers take."""
        return base64.b64encode(bytes.fromhex(self.hex)).decode("ascii")

    @classmethod
    def parse(cls, text: str) -> Digest:
        """Parse ``algorithm:hex``."""
        alg, _, hexpart = text.partition(":")
        return cls(alg, hexpart.lower())


@dataclass(frozen=True, slots=True)
class DigestPair:
    """A recording's two digests, taken in one read: SHA-256 (its identity and object key)
    and SM3 (the national standard's), carried together from the read to the catalog."""

    sha256: Digest
    sm3: Digest

    def __post_init__(self) -> None:
        if self.sha256.algorithm != "sha256" or self.sm3.algorithm != "sm3":
            raise ValueError(f"not a SHA-256 and SM3 pair: {self.sha256}, {self.sm3}")

    @classmethod
    def of_hex(cls, sha256: str, sm3: str) -> DigestPair:
        return cls(Digest("sha256", sha256), Digest("sm3", sm3))


def new_hasher(algorithm: str) -> Hasher:
    """A fresh hasher. SM3 comes from OpenSSL through hashlib when it has it."""
    if algorithm == "sm3":
        try:
            return hashlib.new("sm3")
        except ValueError:  # OpenSSL built without SM3: fall back to `cryptography`
            return _CryptographySM3()
    if algorithm not in _HEX_LENGTH:
        raise ValueError(f"unknown digest algorithm {algorithm!r}")
    return hashlib.new(algorithm)


class _CryptographySM3:
    def __init__(self) -> None:
        from cryptography.hazmat.primitives import hashes

        self._h = hashes.Hash(hashes.SM3())

    def update(self, data: bytes | memoryview, /) -> None:
        self._h.update(bytes(data))

    def hexdigest(self) -> str:
        return self._h.finalize().hex()


def digest_bytes(data: bytes, algorithm: str = "sha256") -> Digest:
    h = new_hasher(algorithm)
    h.update(data)
    return Digest(algorithm, h.hexdigest())


def digest_stream(stream: BinaryIO, algorithms: tuple[str, ...] = ("sha256",)) -> dict[str, Digest]:
    """Digests of everything left in ``stream``, in one pass."""
    hashers = {alg: new_hasher(alg) for alg in algorithms}
    while chunk := stream.read(READ_SIZE):
        for h in hashers.values():
            h.update(chunk)
    return {alg: Digest(alg, h.hexdigest()) for alg, h in hashers.items()}
