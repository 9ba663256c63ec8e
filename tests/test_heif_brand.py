"""One test of "is this a HEIF image", read from the whole ftyp box: the probe (heif_brand)
and the structure check (damage_reason) cannot disagree about a file."""

from __future__ import annotations

import struct
from pathlib import Path

import pytest

from ingest.media.heif import heif_brand, is_heif
from ingest.media.structure import damage_reason


def _box(kind: bytes, payload: bytes) -> bytes:
    return struct.pack(">I", 8 + len(payload)) + kind + payload


def _file(tmp_path: Path, major: bytes, compatible: list[bytes]) -> Path:
    """An ftyp box, then a meta box and no moov: an image, as a HEIF file is laid out."""
    path = tmp_path / "IMG_0001.HEIC"
    ftyp = _box(b"ftyp", major + b"\0\0\0\0" + b"".join(compatible))
    path.write_bytes(ftyp + _box(b"meta", b"\0\0\0\0") + _box(b"mdat", b"\0" * 64))
    return path


FILLER = [b"iso%d" % (i % 10) for i in range(20)]  # 80 bytes of other brands first


@pytest.mark.parametrize(
    ("major", "compatible", "brand"),
    [
        (b"heic", [b"mif1", b"heic"], "heic"),
        (b"isom", [b"mif1"], "isom"),
        (b"isom", [*FILLER, b"mif1"], "isom"),  # the HEIF brand past the first 64 bytes
        (b"avif", FILLER, "avif"),
    ],
)
def test_a_heif_brand_anywhere_in_ftyp_makes_it_an_image(
    tmp_path: Path, major: bytes, compatible: list[bytes], brand: str
) -> None:
    path = _file(tmp_path, major, compatible)
    assert heif_brand(path) == brand and is_heif(path)
    assert damage_reason(path) is None  # no moov: an image's index is its meta box


@pytest.mark.parametrize(
    "compatible", [[b"isom", b"mp41"], [*FILLER, b"mp42"], []], ids=["mp4", "long", "none"]
)
def test_without_a_heif_brand_no_moov_is_damage(tmp_path: Path, compatible: list[bytes]) -> None:
    path = _file(tmp_path, b"mp42", compatible)
    assert heif_brand(path) is None and not is_heif(path)
    assert damage_reason(path) == "no index (moov box): the recorder stopped before writing it"


def test_the_minor_version_is_not_a_brand(tmp_path: Path) -> None:
    path = tmp_path / "x.mp4"
    path.write_bytes(_box(b"ftyp", b"mp42" + b"heic" + b"isom") + _box(b"mdat", b"\0" * 8))
    assert heif_brand(path) is None
