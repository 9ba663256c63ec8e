"""TOTP seeds sealed at rest: AES-256-GCM under a key file of the data directory.

A seed in the catalog is what a stolen database dump would need to make an
administrator's codes; sealed, the dump alone is not enough. The key is
``<data dir>/keys/totp.key`` (32 random bytes, mode 0600, made on first use and never
replaced, as the custody signing key beside it is kept). Hosts that share one catalog
(a PostgreSQL server, the CLI on one host and the API on another) need the same key file.

No migration: a sealed seed is ``s1:`` and the Base85 of nonce, ciphertext and tag
(``s``, ``:`` never occur in Base32, so a seed stored plain before sealing is told
apart); a plain one is still read, and sealed the next time it is used. The user's id is
the associated data, so a sealed seed copied onto another account does not open.
"""

from __future__ import annotations

import base64
import os
import secrets
from pathlib import Path
from typing import Final

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from config.errors import EXIT_CONFIG, LiuhenError
from config.i18n import _

PREFIX: Final = "s1:"
KEY_FILE: Final = "totp.key"
KEY_BYTES: Final = 32
NONCE_BYTES: Final = 12


class SealError(LiuhenError):
    """The TOTP key file is missing, unreadable, or not the key a seed was sealed with."""

    exit_code = EXIT_CONFIG


def is_sealed(stored: str) -> bool:
    return stored.startswith(PREFIX)


def _seed_bytes(seed: str) -> bytes:
    text = seed.strip().upper()
    return base64.b32decode(text + "=" * (-len(text) % 8))


class TotpSealer:
    """Seals and opens the TOTP seeds of one catalog."""

    def __init__(self, key: bytes) -> None:
        if len(key) != KEY_BYTES:
            raise SealError(_("the TOTP key is not {n} bytes").format(n=KEY_BYTES))
        self._aead = AESGCM(key)

    @classmethod
    def in_dir(cls, keys_dir: Path, *, create: bool = False) -> TotpSealer | None:
        """The sealer of ``keys_dir/totp.key``; None when there is none, unless
        ``create``: then the file is made (0600)."""
        path = keys_dir / KEY_FILE
        try:
            if not path.exists():
                if not create:
                    return None
                _write_new_key(path)
            return cls(path.read_bytes())
        except OSError as exc:
            raise SealError(
                _("TOTP key {path}: {error}").format(path=path, error=exc.strerror or exc),
                hint=_("run liuhen as the user owning the data directory"),
            ) from exc

    def seal(self, user_id: int, seed: str) -> str:
        nonce = secrets.token_bytes(NONCE_BYTES)
        sealed = self._aead.encrypt(nonce, _seed_bytes(seed), _aad(user_id))
        return PREFIX + base64.b85encode(nonce + sealed).decode("ascii")

    def open(self, user_id: int, stored: str) -> str:
        """The Base32 seed of a stored value (sealed or, from before sealing, plain)."""
        if not is_sealed(stored):
            return stored
        raw = base64.b85decode(stored[len(PREFIX) :])
        try:
            seed = self._aead.decrypt(raw[:NONCE_BYTES], raw[NONCE_BYTES:], _aad(user_id))
        except InvalidTag as exc:
            raise SealError(
                _("a two-factor seed does not open with this data directory's TOTP key"),
                hint=_(
                    "use the keys/totp.key the seed was sealed with, or reset the second "
                    "factor (liuhen user 2fa reset)"
                ),
            ) from exc
        return base64.b32encode(seed).decode("ascii").rstrip("=")


def _aad(user_id: int) -> bytes:
    return f"liuhen-totp:{user_id}".encode()


def _write_new_key(path: Path) -> None:
    """32 random bytes, mode 0600, never replacing a key another process wrote first."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    # A name of this call's own: threads of one server may make the key at once.
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(8)}.new")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        os.write(fd, secrets.token_bytes(KEY_BYTES))
        os.fsync(fd)
    finally:
        os.close(fd)
    try:
        os.link(tmp, path)  # no-replace: an existing key is never overwritten
    except FileExistsError:
        pass  # another process or thread made it first: theirs is the key
    finally:
        os.unlink(tmp)
    folder = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(folder)  # the key's name survives a power cut, as the seeds it seals do
    finally:
        os.close(folder)


def sealer_of(data_dir: Path) -> TotpSealer | None:
    """The sealer of a data directory's ``keys/totp.key``, None when it has none: a login
    never makes a key (a host sharing the catalog that lacked the key would make another
    one, and seal seeds that the other hosts could then not open)."""
    return TotpSealer.in_dir(data_dir / "keys")


def sealer_for_new_seed(data_dir: Path, sealed_seeds_exist: bool) -> TotpSealer:
    """The sealer for a seed being enrolled: this data directory's key, made now when
    no seed is sealed yet anywhere in the catalog; when seeds are sealed and this host
    has no key, the key must be copied here, not made anew."""
    found = TotpSealer.in_dir(data_dir / "keys", create=not sealed_seeds_exist)
    if found is None:
        raise SealError(
            _(
                "this host has no keys/totp.key, and the catalog's two-factor seeds are "
                "sealed with another host's key"
            ),
            hint=_(
                "copy keys/totp.key (mode 0600) from the host that enrolled them into "
                "{path}; every host sharing the catalog needs the same key"
            ).format(path=data_dir / "keys"),
        )
    return found
