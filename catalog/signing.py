"""Station signing keys: Ed25519, stored as PEM with mode 0600; signature verification.

Verifying is the cost of every custody check (one Ed25519 signature per event). OpenSSL's
Ed25519 verification runs at 100–230 µs a signature on the reference machine, libsodium's
at about 50 µs, and a ctypes call releases the GIL, so a batch spreads over the cores. When
libsodium is there (Debian's ``libsodium23``) it answers first; OpenSSL (``cryptography``)
stays the reference: a signature libsodium rejects is asked of OpenSSL too, so a verdict
is always OpenSSL's (libsodium accepts a subset of what OpenSSL accepts: it also refuses
small-order and non-canonical points, which no honest signer produces). Without
libsodium, or with ``LIUHEN_ED25519=openssl``, OpenSSL alone verifies.
"""

from __future__ import annotations

import ctypes
import hashlib
import itertools
import os
import threading
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from functools import cached_property, lru_cache
from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from catalog.errors import KeyFileError
from config.i18n import _


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
        # libsodium through ctypes lets go of the interpreter lock while it signs (about
        # 50 µs, three events per docked file); OpenSSL's binding holds it. Ed25519 is
        # deterministic (RFC 8032): both give the same signature, byte for byte.
        sodium = self._sodium_signing
        if sodium is not None:
            return sodium.sign(data)
        return self.private_key.sign(data)

    def sign_many(self, datas: Sequence[bytes]) -> list[bytes]:
        """:meth:`sign` of each, in order; with libsodium spread over the cores (its
        calls let go of the interpreter lock): a batch of registrations signs three
        events per file."""
        sodium = self._sodium_signing
        if sodium is None:
            return [self.private_key.sign(data) for data in datas]
        signatures = [b""] * len(datas)

        def one(i: int) -> None:
            signatures[i] = sodium.sign(datas[i])

        _spread(len(datas), one)
        return signatures

    @cached_property
    def _sodium_signing(self) -> _SodiumSign | None:
        """libsodium's signer for this key, made once (None: OpenSSL signs)."""
        # cached_property takes no lock from Python 3.12 on: without this one, threads
        # signing first at once would each expand the secret key.
        with _signing_lock:
            made = self.__dict__.get("_sodium_signing", _UNMADE)
            if made is not _UNMADE:
                return made  # type: ignore[no-any-return]
            verifier = _sodium()
            if verifier is None:
                return None
            return _SodiumSign.of(verifier.lib, self.private_key)


ENGINE_ENV = "LIUHEN_ED25519"  # "openssl": never use libsodium (tests run both paths)
_SODIUM_NAMES = ("libsodium.so.23", "libsodium.so.26", "libsodium.so", "libsodium.dylib")
# Below this many signatures a batch is verified on the calling thread: starting threads
# costs more than it saves.
PARALLEL_MIN = 64

_sodium_lock = threading.Lock()
_signing_lock = threading.Lock()
_UNMADE = object()
_sodium_state: list[_SodiumVerify | None] = []  # [] until first looked for


class _SodiumVerify:
    """libsodium's ``crypto_sign_ed25519_verify_detached``, loaded once per process."""

    def __init__(self, lib: ctypes.CDLL) -> None:
        fn = lib.crypto_sign_ed25519_verify_detached
        fn.argtypes = (ctypes.c_char_p, ctypes.c_char_p, ctypes.c_ulonglong, ctypes.c_char_p)
        fn.restype = ctypes.c_int
        self._fn = fn
        self.lib = lib  # for signing too (_SodiumSign)

    def __call__(self, public_key: bytes, signature: bytes, data: bytes) -> bool:
        # The C function reads exactly 32 and 64 bytes: anything else never reaches it.
        if len(public_key) != 32 or len(signature) != 64:
            return False
        return bool(self._fn(signature, data, len(data), public_key) == 0)


class _SodiumSign:
    """libsodium's ``crypto_sign_ed25519_detached`` with one key (its 64-byte secret
    expanded from the key's seed once, and checked against the key's public half)."""

    def __init__(self, lib: ctypes.CDLL, secret: ctypes.Array[ctypes.c_char]) -> None:
        fn = lib.crypto_sign_ed25519_detached
        fn.argtypes = (
            ctypes.c_char_p,
            ctypes.c_void_p,
            ctypes.c_char_p,
            ctypes.c_ulonglong,
            ctypes.c_char_p,
        )
        fn.restype = ctypes.c_int
        self._fn = fn
        self._secret = secret

    @classmethod
    def of(cls, lib: ctypes.CDLL, key: Ed25519PrivateKey) -> _SodiumSign | None:
        try:
            keypair = lib.crypto_sign_ed25519_seed_keypair
        except AttributeError:
            return None
        keypair.argtypes = (ctypes.c_char_p, ctypes.c_char_p, ctypes.c_char_p)
        keypair.restype = ctypes.c_int
        public = ctypes.create_string_buffer(32)
        secret = ctypes.create_string_buffer(64)
        if keypair(public, secret, key.private_bytes_raw()) != 0:
            return None
        if public.raw != public_raw(key.public_key()):
            return None  # never sign with a key other than the one named
        return cls(lib, secret)

    def sign(self, data: bytes) -> bytes:
        signature = ctypes.create_string_buffer(64)
        if self._fn(signature, None, data, len(data), self._secret) != 0:
            raise RuntimeError("libsodium could not sign")
        return signature.raw


def _load_sodium() -> _SodiumVerify | None:
    if os.environ.get(ENGINE_ENV, "").lower() == "openssl":
        return None
    for name in _SODIUM_NAMES:
        try:
            lib = ctypes.CDLL(name)  # CDLL, not PyDLL: calls release the GIL
            if lib.sodium_init() < 0:
                continue
            return _SodiumVerify(lib)
        except (OSError, AttributeError):
            continue
    return None


def _sodium() -> _SodiumVerify | None:
    """The libsodium verifier, looked for once per process (None: OpenSSL only)."""
    if not _sodium_state:
        with _sodium_lock:
            if not _sodium_state:
                _sodium_state.append(_load_sodium())
    return _sodium_state[0]


def fast_verify_available() -> bool:
    """Whether libsodium verifies here (its calls release the GIL; OpenSSL's do not)."""
    return _sodium() is not None


def signature_engine() -> str:
    """Which library verifies Ed25519 signatures in this process (for ``doctor``, benches)."""
    return "libsodium, OpenSSL for rejections" if fast_verify_available() else "OpenSSL"


@lru_cache(maxsize=256)
def _openssl_key(public_key: bytes) -> Ed25519PublicKey | None:
    """A parsed key, cached by its bytes (never by a key id, which a forged entry can
    reuse for other bytes)."""
    try:
        return Ed25519PublicKey.from_public_bytes(public_key)
    except ValueError:
        return None


def _openssl_verifies(public_key: bytes, signature: bytes, data: bytes) -> bool:
    key = _openssl_key(bytes(public_key))
    if key is None:
        return False
    try:
        key.verify(signature, data)
    except InvalidSignature:
        return False
    return True


def verify_signature(public_key: bytes, signature: bytes, data: bytes) -> bool:
    """Whether ``signature`` is ``public_key``'s Ed25519 signature of ``data``."""
    sodium = _sodium()
    if sodium is not None and sodium(public_key, signature, data):
        return True
    return _openssl_verifies(public_key, signature, data)


# verify_signatures hands out this many signatures at a time: small enough that a thread
# whose core is taken by another process leaves little for the others to wait on.
CHUNK = 32


def verify_signatures(
    jobs: Sequence[tuple[bytes, bytes, bytes]], workers: int | None = None
) -> list[bool]:
    """:func:`verify_signature` of each ``(public key, signature, data)``, in order; with
    libsodium, spread over ``workers`` threads (default: the cores), the caller's included.

    The threads take chunks of ``CHUNK`` signatures from one counter rather than a fixed
    share each: on a shared machine one core is often busy elsewhere, and with fixed
    shares the batch took as long as the slowest thread's share."""
    sodium = _sodium()
    if sodium is None:
        return [verify_signature(*job) for job in jobs]
    verdicts = [False] * len(jobs)

    def one(i: int) -> None:
        public_key, signature, data = jobs[i]
        verdicts[i] = sodium(public_key, signature, data) or _openssl_verifies(
            public_key, signature, data
        )

    _spread(len(jobs), one, workers)
    return verdicts


def _spread(n: int, one: Callable[[int], None], workers: int | None = None) -> None:
    """``one(i)`` for every i below ``n``, on ``workers`` threads (default: the cores),
    the caller's included, for work that lets go of the GIL (libsodium's calls).

    The threads take chunks of ``CHUNK`` indexes from one counter rather than a fixed
    share each: on a shared machine one core is often busy elsewhere, and with fixed
    shares the batch took as long as the slowest thread's share. Below ``PARALLEL_MIN``
    items a thread each, the caller does it all: starting threads costs more."""
    workers = min(workers or os.cpu_count() or 1, max(1, n // PARALLEL_MIN))
    if workers <= 1:
        for i in range(n):
            one(i)
        return
    chunks = itertools.count()  # next() is atomic under the GIL
    errors: list[BaseException] = []

    def run() -> None:
        try:
            while (start := next(chunks) * CHUNK) < n:
                for i in range(start, min(start + CHUNK, n)):
                    one(i)
        except BaseException as exc:  # raised on the caller's thread, once all have stopped
            errors.append(exc)

    threads = [
        threading.Thread(target=run, name=f"ed25519-{k}", daemon=True) for k in range(workers - 1)
    ]
    for thread in threads:
        thread.start()
    run()
    for thread in threads:
        thread.join()
    if errors:
        raise errors[0]


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
            _("station signing key {path} not found").format(path=path),
            hint=_("run 'liuhen init' to create it, or set station.key_file"),
        ) from exc
    except PermissionError as exc:
        raise KeyFileError(
            _("station signing key {path}: permission denied").format(path=path)
        ) from exc
    mode = path.stat().st_mode & 0o777
    if mode & 0o077:
        raise KeyFileError(
            _("station signing key {path} is readable by others (mode {mode})").format(
                path=path, mode=f"{mode:o}"
            ),
            hint=_("run 'chmod 600 {path}'").format(path=path),
        )
    try:
        key = serialization.load_pem_private_key(data, password=None)
    except ValueError as exc:
        raise KeyFileError(
            _("station signing key {path} is not a PEM private key").format(path=path)
        ) from exc
    if not isinstance(key, Ed25519PrivateKey):
        raise KeyFileError(_("station signing key {path} is not an Ed25519 key").format(path=path))
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
        raise KeyFileError(
            _("key ring {path}: cannot read: {error}").format(path=path, error=exc.strerror)
        ) from exc
    for number, line in enumerate(lines, 1):
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        parts = line.split()
        if len(parts) != 2 or not parts[1].startswith("ed25519:"):
            raise KeyFileError(
                _("key ring {path}, line {number}: expected '<station id> ed25519:<hex>'").format(
                    path=path, number=number
                )
            )
        ring.setdefault(parts[0], set()).add(parts[1])
    return ring


def judge_trust(key_id: str, trusted: Mapping[str, Iterable[str]] | None) -> tuple[str, list[str]]:
    """How far a signature's key is believed, and the stations a key ring trusts it for.

    A signature names its own key, so without a key ring it proves only that the holder of
    that key signed: "self-declared". With a ring, "trusted" when the ring names the key,
    else "untrusted" (an empty ring trusts nothing; it is not "no ring"). Every signed
    thing a user checks offline (bags, reports) is judged here, so they cannot disagree.
    """
    stations = sorted(s for s, ids in (trusted or {}).items() if key_id in set(ids))
    if stations:
        return "trusted", stations
    return ("untrusted" if trusted is not None else "self-declared"), []
