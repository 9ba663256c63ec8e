"""Derivation, damage checks and salvage on real recordings (issue 13, points 3-5, 7, 8).

The real files are the corpus beside the repository (``MANIFEST.tsv`` names each one's
origin). Cases the corpus lacks (a cut AVI or WAV, a variable-frame-rate video whose
first frame comes after its audio) are made here with ffmpeg, and each test says so.
Every check is made from outside the code under test: ffprobe's JSON, file bytes.
"""

from __future__ import annotations

import json
import struct
import subprocess
from pathlib import Path
from typing import Any

import pytest

from formats import mp4box
from ingest.media.derive import (
    DamagedSourceError,
    make_access_copy,
    make_photo_access,
    make_poster,
    make_proxy,
    make_thumbnail,
)
from ingest.media.recover import ReferenceCandidate, choose_reference, recover_truncated_mp4
from ingest.media.structure import damage_reason
from tests.fixtures.corpus import corpus_path


def ffprobe(path: Path) -> dict[str, Any]:
    proc = subprocess.run(
        ["ffprobe", "-v", "error", "-of", "json", "-show_format", "-show_streams", str(path)],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    data: dict[str, Any] = json.loads(proc.stdout)
    return data


def stream(path: Path, codec_type: str) -> dict[str, Any]:
    return next(s for s in ffprobe(path)["streams"] if s["codec_type"] == codec_type)


def ffmpeg(*args: str) -> None:
    subprocess.run(["ffmpeg", "-nostdin", "-v", "error", "-y", *args], check=True, timeout=120)


# --- point 3: the poster of a short clip --------------------------------------------


@pytest.mark.parametrize(
    ("name", "size"),
    [
        ("android_with_gps.mp4", (1280, 720)),  # 0.17 s, three frames, the last at 0.067 s
        ("sony_a7m3.mts", (1280, 720)),  # 0.54 s AVCHD whose only keyframe is its first
    ],
)
def test_poster_of_a_short_clip_is_a_picture(
    name: str, size: tuple[int, int], tmp_path: Path
) -> None:
    src = corpus_path(name)
    duration = float(ffprobe(src)["format"]["duration"])

    d = make_poster(src, tmp_path, duration_s=duration)

    video = stream(d.path, "video")
    assert (video["codec_name"], video["width"], video["height"]) == ("mjpeg", *size)
    assert d.path.stat().st_size > 10_000  # a picture, not an empty file
    assert sorted(p.name for p in tmp_path.iterdir()) == [d.path.name]


# --- point 4: damage found in the structure -----------------------------------------


@pytest.mark.parametrize(
    ("name", "reason"),
    [
        ("issue515_trunc60.mp4", "cut short: the media data (mdat)"),
        ("gopro_karma_trunc60.mp4", "cut short: the media data (mdat)"),
        ("pp_quicktime_jpeg.mov", "media data is in another file"),
        ("exiftool_stub_QuickTime.mov", "only 0 of its 149 samples are placed in the file"),
        ("exiftool_stub_RIFF.wav", "WAV data chunk holds no audio samples"),
        ("exiftool_stub_M2TS.mts", "PES packet of stream PID 0x1100"),
        ("android_with_gps.mp4", None),
        ("canon_MVI_4823.AVI", None),
        ("gopro_karma.mp4", None),
        ("iphone6.jpg", None),
        ("iphone_IMG_2927.HEIC", None),  # no moov: a HEIF image has none
        ("issue337.m4a", None),
        ("issue515.mp4", None),
        ("pp_quicktime_hvc1.mov", None),
        ("sony_a7m3.mts", None),
        ("sounddevices_A101_1.WAV", None),
        ("yuan.amr", None),
    ],
)
def test_damage_found_in_the_structure_of_real_files(name: str, reason: str | None) -> None:
    found = damage_reason(corpus_path(name))
    if reason is None:
        assert found is None
    else:
        assert found is not None and reason in found, found


def test_a_derivative_shorter_than_its_streams_is_damage_not_a_failure(tmp_path: Path) -> None:
    # The moov-first phone MP4 cut at 60%: ffprobe still says 3.635 s.
    src = corpus_path("issue515_trunc60.mp4")
    info = {"kind": "video", "video_codec": "h264", "pix_fmt": "yuv420p", "audio_codec": "aac"}
    with pytest.raises(DamagedSourceError) as caught:
        make_access_copy(src, tmp_path, info=info, duration_s=3.635)
    assert "of the 3.635 s its index declares" in caught.value.reason
    assert list(tmp_path.iterdir()) == []


def _riff_chunks(data: bytes) -> dict[bytes, tuple[int, int]]:
    at, found = 12, {}
    while at + 8 <= len(data):
        ckid, size = struct.unpack_from("<4sI", data, at)
        kind = data[at + 8 : at + 12] if ckid == b"LIST" else ckid
        found[kind] = (at, size)
        at += 8 + size + (size & 1)
    return found


def test_reserved_space_cut_short_is_not_damage(tmp_path: Path) -> None:
    # Made here: a healthy MP4 followed by a 'free' box (space a writer reserved) that
    # claims more than is left; nothing of the recording is missing.
    src = corpus_path("issue515.mp4")
    padded = tmp_path / "padded.mp4"
    padded.write_bytes(src.read_bytes() + struct.pack(">I4s", 1 << 20, b"free") + bytes(64))
    assert damage_reason(padded) is None
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(src.read_bytes()[:-1000])
    assert "cut short" in str(damage_reason(cut))


def test_cut_avi_and_wav_are_damaged(tmp_path: Path) -> None:
    # Made here with ffmpeg (the corpus has no cut AVI or WAV): an MJPEG+PCM AVI like the
    # Canon's, and a PCM WAV; then cut, stripped of the index, or given a bad index.
    avi, wav = tmp_path / "cam.avi", tmp_path / "rec.wav"
    ffmpeg(
        *("-f", "lavfi", "-i", "testsrc2=size=320x240:rate=25:duration=2"),
        *("-f", "lavfi", "-i", "sine=duration=2", "-c:v", "mjpeg", "-c:a", "pcm_s16le"),
        str(avi),
    )
    ffmpeg("-f", "lavfi", "-i", "sine=duration=2", "-c:a", "pcm_s16le", str(wav))
    assert damage_reason(avi) is None and damage_reason(wav) is None
    data = avi.read_bytes()
    chunks = _riff_chunks(data)
    variants = {
        "cut.avi": bytearray(data[: len(data) * 6 // 10]),
        "noindex.avi": bytearray(data[: chunks[b"idx1"][0]]),
        "badindex.avi": bytearray(data),
        "cut.wav": bytearray(wav.read_bytes()[: wav.stat().st_size * 6 // 10]),
    }
    last_entry = chunks[b"idx1"][0] + 8 + chunks[b"idx1"][1] - 16
    struct.pack_into("<I", variants["badindex.avi"], last_entry + 8, len(data) * 2)
    expected = {
        "cut.avi": "cut short: the AVI movi list claims",
        "noindex.avi": "no AVI index (idx1)",
        "badindex.avi": "the AVI index (idx1) points to byte",
        "cut.wav": "cut short: the WAV data chunk claims",
    }
    for name, content in variants.items():
        path = tmp_path / name
        path.write_bytes(bytes(content))
        found = damage_reason(path)
        assert found is not None and expected[name] in found, (name, found)


# --- point 7 (recovery side): the right reference, the right size --------------------


def test_recovery_takes_the_reference_with_the_same_codec_parameters(tmp_path: Path) -> None:
    damaged = corpus_path("gopro_karma_trunc60.mp4")
    names = ["issue515.mp4", "android_with_gps.mp4", "pp_quicktime_hvc1.mov", "gopro_karma.mp4"]
    candidates = [
        # The phone videos are listed first and "closer in time": the old rule (lowest
        # id, any resolution) took one of them and salvaged nothing.
        ReferenceCandidate(key, corpus_path(name), same_device=False, seconds_apart=float(key))
        for key, name in enumerate(names)
    ]

    choice = choose_reference(damaged, candidates)

    assert choice.key == 3, choice.reason
    assert "854x480" in choice.reason
    refused = {f.key: f.reason for f in choice.fits}
    assert "differs from the one in the damaged data" in str(refused[0])
    assert "not H.264" in str(refused[2])
    d = recover_truncated_mp4(damaged, candidates[3].path, tmp_path)
    assert d is not None
    video = stream(d.path, "video")
    assert (video["width"], video["height"]) == (854, 480)  # not 864x480
    frames = subprocess.run(
        ["ffmpeg", "-nostdin", "-v", "error", "-i", str(d.path), "-f", "framemd5", "-"],
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    ).stdout.splitlines()
    assert 200 <= len([f for f in frames if f and f[0] != "#"]) <= 230  # ~214 of 362


def test_no_fitting_reference_is_none_with_the_reason() -> None:
    damaged = corpus_path("gopro_karma_trunc60.mp4")
    phone = ReferenceCandidate(7, corpus_path("android_with_gps.mp4"), same_device=True)
    choice = choose_reference(damaged, [phone])
    assert choice.key is None
    assert "no recording has matching codec parameters" in choice.reason
    assert "#7: its SPS (1920x1080" in choice.reason
    assert choose_reference(damaged, []).key is None


def test_same_device_then_closest_in_time_among_fitting_references(tmp_path: Path) -> None:
    damaged = corpus_path("gopro_karma_trunc60.mp4")
    ref = corpus_path("gopro_karma.mp4")
    far = ReferenceCandidate(1, ref, same_device=True, seconds_apart=86_400.0)
    near = ReferenceCandidate(2, ref, same_device=True, seconds_apart=-60.0)
    other = ReferenceCandidate(3, ref, same_device=False, seconds_apart=1.0)
    assert choose_reference(damaged, [far, other, near]).key == 2


# --- point 5: photos ----------------------------------------------------------------


def test_jpeg_photo_access_copy_is_the_jpeg_and_a_thumbnail(tmp_path: Path) -> None:
    src = corpus_path("iphone6.jpg")
    access = make_photo_access(src, tmp_path)
    thumb = make_thumbnail(src, tmp_path)
    assert (access.kind, access.method) == ("access", "remux")
    assert access.path.read_bytes() == src.read_bytes()  # never recompressed
    video = stream(thumb.path, "video")
    assert (thumb.kind, video["codec_name"], video["width"], video["height"]) == (
        "thumbnail",
        "mjpeg",
        320,
        240,
    )


def test_access_copy_of_a_photo_is_its_jpeg(tmp_path: Path) -> None:
    # The probe calls a still image kind "photo"; the worker asks for the access copy.
    src = corpus_path("iphone_IMG_2927.HEIC")
    d = make_access_copy(src, tmp_path, info={"kind": "photo"})
    assert (d.kind, d.path.name) == ("access", "iphone_IMG_2927.access.jpg")
    assert stream(d.path, "video")["codec_name"] == "mjpeg"


def test_heic_photo_gets_a_jpeg_access_copy_and_a_thumbnail(tmp_path: Path) -> None:
    # ffmpeg 5.1 cannot open HEIF at all ("moov atom not found").
    src = corpus_path("iphone_IMG_2927.HEIC")
    access = make_photo_access(src, tmp_path)
    thumb = make_thumbnail(src, tmp_path)
    full = stream(access.path, "video")
    small = stream(thumb.path, "video")
    assert (full["codec_name"], full["width"], full["height"]) == ("mjpeg", 3024, 4032)
    assert (small["width"], small["height"]) == (240, 320)
    assert access.method == "reencode" and access.path.stat().st_size > 200_000
    # The tiles are in their places: the picture is a white sign in the middle of dark
    # glass, so the middle is lighter than the middle of either side.
    gray = subprocess.run(
        [
            *("ffmpeg", "-nostdin", "-v", "error", "-i", str(thumb.path)),
            *("-vf", "scale=3:3,format=gray", "-f", "rawvideo", "-"),
        ],
        capture_output=True,
        check=True,
        timeout=60,
    ).stdout
    assert len(gray) == 9 and gray[4] > max(gray[3], gray[5]) + 40, list(gray)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([access.path.name, thumb.path.name])


# --- point 8: variable frame rate ---------------------------------------------------


def _timing(path: Path) -> dict[str, tuple[float, float]]:
    """codec_type -> (start, end) of the first video and audio streams."""
    out: dict[str, tuple[float, float]] = {}
    for s in ffprobe(path)["streams"]:
        kind = s["codec_type"]
        if kind in ("video", "audio") and kind not in out:
            start = float(s["start_time"])
            out[kind] = (start, start + float(s["duration"]))
    return out


def _assert_same_timing(src: Path, copy: Path, frame_s: float) -> None:
    want, got = _timing(src), _timing(copy)
    for kind in want:
        length = want[kind][1] - want[kind][0]
        assert abs((got[kind][1] - got[kind][0]) - length) <= 0.1, (kind, want, got)
    offset = want["video"][0] - want["audio"][0]
    assert abs((got["video"][0] - got["audio"][0]) - offset) <= frame_s, (want, got)


def test_variable_frame_rate_keeps_durations_and_sync(tmp_path: Path) -> None:
    # Made here with ffmpeg: 5 s at 30 fps, then 20 fps, the first frame 0.27 s after the
    # audio starts (as phones write). 4:2:2 so that the access copy is re-encoded too.
    src = tmp_path / "vfr.mp4"
    ffmpeg(
        *("-f", "lavfi", "-i", "testsrc2=size=320x240:rate=30:duration=11.08"),
        *("-f", "lavfi", "-i", "sine=frequency=440:sample_rate=48000:duration=11.35"),
        *("-vf", "setpts='(if(lt(N,150),N/30,5+(N-150)/20)+0.27)/TB'", "-fps_mode:v"),
        *("passthrough", "-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv422p"),
        *("-c:a", "aac", "-t", "11.35", str(src)),
    )
    info = {"kind": "video", "video_codec": "h264", "pix_fmt": "yuv422p", "audio_codec": "aac"}
    access = make_access_copy(src, tmp_path / "a", info=info, duration_s=11.35)
    proxy = make_proxy(src, tmp_path / "p", info=info, duration_s=11.35)
    assert access.method == "reencode"
    for copy in (access.path, proxy.path):
        _assert_same_timing(src, copy, frame_s=1 / 20)


@pytest.mark.parametrize("name", ["pp_quicktime_hvc1.mov", "issue515.mp4"])
def test_real_variable_frame_rate_videos_keep_their_timing(name: str, tmp_path: Path) -> None:
    src = corpus_path(name)
    video = stream(src, "video")
    info = {
        "kind": "video",
        "video_codec": video["codec_name"],
        "pix_fmt": video["pix_fmt"],
        "audio_codec": stream(src, "audio")["codec_name"],
    }
    duration = float(ffprobe(src)["format"]["duration"])
    proxy = make_proxy(src, tmp_path / "p", info=info, duration_s=duration)
    access = make_access_copy(src, tmp_path / "a", info=info, duration_s=duration)
    for copy in (proxy.path, access.path):
        _assert_same_timing(src, copy, frame_s=1 / 30)


# --- 19.3: one box walker -----------------------------------------------------------


def test_box_walker_reads_memory_and_files_alike_and_marks_a_cut_box() -> None:
    src = corpus_path("issue515_trunc60.mp4")
    data = src.read_bytes()
    with src.open("rb") as f:
        from_file = list(mp4box.walk(f))
    from_memory = list(mp4box.walk(data))
    assert from_file == from_memory
    assert [b.name for b in from_memory] == ["ftyp", "moov", "mdat"]
    mdat = from_memory[-1]
    assert mdat.cut and mdat.end == len(data) and mdat.declared_end > len(data)
    assert (mdat.start, mdat.payload) == (3570, 3586)  # a 64-bit size: 16-byte header
    tree = [b.name for b in mp4box.walk_tree(data)]
    assert tree.count("trak") == 2 and tree.count("stco") == 2
    moov = from_memory[1]
    stbl = [
        mp4box.descend(data, t, b"mdia", b"minf", b"stbl")
        for t in mp4box.walk(data, moov.payload, moov.end)
        if t.type == b"trak"
    ]
    assert all(s is not None and s.type == b"stbl" for s in stbl)
