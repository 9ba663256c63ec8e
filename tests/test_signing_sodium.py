"""Signer.sign through libsodium (which lets go of the interpreter lock) gives OpenSSL's
signature byte for byte (Ed25519 is deterministic), and OpenSSL signs without it."""

from __future__ import annotations

import os

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from catalog import signing
from catalog.signing import Signer


@pytest.mark.skipif(not signing.fast_verify_available(), reason="libsodium not installed")
def test_libsodium_signatures_are_openssls() -> None:
    for _ in range(20):
        key = Ed25519PrivateKey.generate()
        signer = Signer("station", key)
        assert signer._sodium_signing is not None
        for size in (0, 1, 63, 64, 65, 400, 4096):
            data = os.urandom(size)
            signature = signer.sign(data)
            assert signature == key.sign(data)
            key.public_key().verify(signature, data)  # raises if it does not verify


def test_without_libsodium_openssl_signs(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(signing, "_sodium", lambda: None)
    key = Ed25519PrivateKey.generate()
    signer = Signer("station", key)
    assert signer._sodium_signing is None
    assert signer.sign(b"event") == key.sign(b"event")


@pytest.mark.parametrize("sodium", [True, False], ids=["libsodium", "openssl"])
def test_signing_many_at_once_gives_each_its_own_signature_in_order(
    monkeypatch: pytest.MonkeyPatch, sodium: bool
) -> None:
    """A registration batch signs its events together, spread over the cores: every
    signature is the one OpenSSL gives that event, in the events' order (500 events:
    several chunks per thread)."""
    if not sodium:
        monkeypatch.setattr(signing, "_sodium", lambda: None)
    elif not signing.fast_verify_available():
        pytest.skip("libsodium not installed")
    key = Ed25519PrivateKey.generate()
    signer = Signer("station", key)
    sodium_calls = []
    real = signing._SodiumSign.sign

    def counted(self: signing._SodiumSign, data: bytes) -> bytes:
        sodium_calls.append(len(data))
        return real(self, data)

    monkeypatch.setattr(signing._SodiumSign, "sign", counted)
    datas = [os.urandom(i % 300) + i.to_bytes(4, "big") for i in range(500)]
    assert signer.sign_many(datas) == [key.sign(d) for d in datas]
    assert signer.sign_many([]) == []
    # Equal bytes either way (Ed25519 is deterministic): which library signed is seen here.
    assert len(sodium_calls) == (500 if sodium else 0)
