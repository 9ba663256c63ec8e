"""Issue 13's acceptance: every real-corpus file through ingest and `liuhen worker --drain`
on the embedded default (SQLite catalog, directory store), with the outcome a person
would expect of each, in one table.

The corpus (tests.fixtures.corpus) has no file this installation cannot decode; the
"unsupported" case is made here with ffmpeg: an MPEG-TS carrying an AVS2 video stream
(GB/T 33475.2), which this ffmpeg can mux but not decode (as in
tests/test_media_probe_corpus.py).

Capture times are the times the devices wrote, in UTC; local times without a zone
(AVI IDIT, broadcast WAV bext, EXIF without an offset) are read in the station's time
zone, Asia/Shanghai (UTC+8) by default; an EXIF offset or a QuickTime creationdate
offset wins; MP4/MOV creation_time is UTC by definition.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from catalog.models import WorkItem
from storage import Digest
from tests.cli_helpers import run_cli
from tests.fixtures.corpus import corpus_dir, corpus_names
from tests.offload_helpers import make_app

FFMPEG = shutil.which("ffmpeg") or "ffmpeg"
FFPROBE = shutil.which("ffprobe") or "ffprobe"
AVS2 = "avs2_clip.ts"  # made here: see avs2_clip()
SHANGHAI = "Asia/Shanghai (UTC+08:00)"


@dataclass(frozen=True)
class Expect:
    """What a person expects of one file.

    ``outcome``: "video" (access copy, proxy, poster), "audio" (audio copy), "photo"
    (JPEG access copy and thumbnail), "damaged" or "unsupported". ``access``: how the
    access copy is made ("remux" or "reencode", as the codecs require). ``reason``:
    words the damaged/unsupported reason must contain. ``captured``: the capture start
    in UTC as the device wrote it, with ``zone_rule`` words from how it was read
    (None: the file carries no time of its own). ``recovered``: (reference file, at
    least this many frames salvaged) for a truncated MP4; "none" when nothing fits.
    """

    outcome: str
    access: str = ""
    reason: str = ""
    captured: str | None = None
    zone_rule: str = ""
    recovered: tuple[str, int] | str | None = None


TABLE: dict[str, Expect] = {
    # Healthy video: H.264/AAC is remuxed; MJPEG+PCM, HEVC and AC3/interlaced re-encoded.
    "android_with_gps.mp4": Expect(
        "video", "remux", captured="2017-02-22T08:20:28+00:00", zone_rule="in UTC"
    ),
    "canon_MVI_4823.AVI": Expect(  # IDIT "MON SEP 10 20:52:00 2012", local time
        "video", "reencode", captured="2012-09-10T12:52:00+00:00", zone_rule=SHANGHAI
    ),
    "gopro_karma.mp4": Expect(
        "video", "remux", captured="2017-04-17T19:27:57+00:00", zone_rule="in UTC"
    ),
    "issue515.mp4": Expect(
        "video", "remux", captured="2020-11-20T14:04:36+00:00", zone_rule="in UTC"
    ),
    "pp_quicktime_hvc1.mov": Expect(  # creationdate "2023-09-22T18:34:05+0200"
        "video", "reencode", captured="2023-09-22T16:34:05+00:00", zone_rule="offset +02:00"
    ),
    "sony_a7m3.mts": Expect("video", "reencode"),  # 0.54 s AVCHD: no embedded time
    # Healthy audio: ALAC, 24-bit PCM and AMR-NB are re-encoded to AAC.
    "issue337.m4a": Expect("audio", "reencode"),  # creation_time stored as zero: unset
    "sounddevices_A101_1.WAV": Expect(  # bext 2018-12-31 12:40:00, local time
        "audio", "reencode", captured="2018-12-31T04:40:00+00:00", zone_rule=SHANGHAI
    ),
    "yuan.amr": Expect("audio", "reencode"),
    # Photos: a JPEG is kept as it is, a HEIC decoded from its HEVC tiles.
    "iphone6.jpg": Expect(  # DateTimeOriginal 2014:09:16 14:05:12.133, no offset
        "photo", "remux", captured="2014-09-16T06:05:12.133000+00:00", zone_rule=SHANGHAI
    ),
    "iphone_IMG_2927.HEIC": Expect(  # 2020:05:04 18:39:11.644 at -04:00
        "photo",
        "reencode",
        captured="2020-05-04T22:39:11.644000+00:00",
        zone_rule="OffsetTimeOriginal -04:00",
    ),
    # Damaged: the reason names what is wrong.
    "exiftool_stub_M2TS.mts": Expect("damaged", reason="PES packet"),
    "exiftool_stub_QuickTime.mov": Expect(
        "damaged", reason="only 0 of its 149 samples", recovered="none"
    ),
    "exiftool_stub_RIFF.wav": Expect("damaged", reason="WAV data chunk holds no audio"),
    "pp_quicktime_jpeg.mov": Expect("damaged", reason="in another file", recovered="none"),
    "issue515_trunc60.mp4": Expect(
        "damaged", reason="media data (mdat)", recovered=("issue515.mp4", 30)
    ),
    # Recovered from the whole clip of the same camera although the device is unknown
    # (a card docked without a device file): the SPS in the cut file's data matches.
    "gopro_karma_trunc60.mp4": Expect(
        "damaged", reason="media data (mdat)", recovered=("gopro_karma.mp4", 200)
    ),
    # Unsupported here: no AVS2 decoder in this ffmpeg.
    AVS2: Expect("unsupported", reason="no decoder for avs2"),
}


def avs2_clip(path: Path) -> None:
    """An MPEG-TS holding an AVS2 stream (start codes only: ffmpeg copies it undecoded)."""
    sequence = b"\x00\x00\x01\xb0" + bytes([0x20, 0x42, 0x00, 0x80, 0x0B, 0x40, 0x20, 0, 0, 0])
    raw = path.with_suffix(".avs2")
    raw.write_bytes((sequence + (b"\x00\x00\x01\xb3" + bytes(40)) * 3) * 5)
    demux = ["-fflags", "+genpts", "-f", "avs2", "-framerate", "25"]
    made = subprocess.run(
        [FFMPEG, "-v", "error", *demux, "-i", str(raw), "-c", "copy", str(path)],
        capture_output=True,
        check=False,
    )
    raw.unlink()
    if made.returncode != 0:
        pytest.skip(f"this ffmpeg cannot mux AVS2 into MPEG-TS: {made.stderr[-200:]!r}")


def ffprobe(path: Path) -> dict[str, Any]:
    what = ["-count_packets", "-show_streams", "-show_format", "-of", "json"]
    out = subprocess.run(
        [FFPROBE, "-v", "error", *what, str(path)], capture_output=True, check=True
    )
    data: dict[str, Any] = json.loads(out.stdout)
    return data


def stream_duration(info: dict[str, Any]) -> float:
    """The longest audio/video stream of a derivative, as ffprobe reads it back."""
    durations = [
        float(s["duration"])
        for s in info["streams"]
        if s.get("codec_type") in ("audio", "video") and s.get("duration") not in (None, "N/A")
    ]
    return max(durations) if durations else float(info["format"]["duration"])


def test_every_corpus_file_gets_the_outcome_a_person_expects(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    corpus = corpus_dir()
    assert sorted(corpus_names()) == sorted(n for n in TABLE if n != AVS2)  # all, no more
    card = tmp_path / "card" / "DCIM"  # a card docked with no device file
    card.mkdir(parents=True)
    for name in corpus_names():
        shutil.copy2(corpus / name, card / name)
    avs2_clip(card / AVS2)
    app = make_app(tmp_path / "data")
    station = app.station()
    assert station.run_docking(card.parent).state == "SAFE_TO_CLEAR"
    station.close()
    app.close()

    monkeypatch.setenv("LIUHEN_HOME", str(tmp_path / "data"))
    drained = run_cli(capsys, "worker", "--drain")
    assert drained.code == 0, drained.err

    app = make_app(tmp_path / "data")
    with app.catalog.session() as s:
        items = list(s.scalars(select(WorkItem)))
    # Nothing FAILED, nothing waiting for a retry: every item of every file is done.
    assert {(i.kind, i.state, i.failure) for i in items if i.state != "DONE"} == set()
    shown = {}
    for rec_id in range(1, len(TABLE) + 1):
        report = json.loads(run_cli(capsys, "show", str(rec_id), "--json").out)
        shown[report["name"]] = report
    assert sorted(shown) == sorted(TABLE)
    ids = {name: r["id"] for name, r in shown.items()}
    for name, expect in TABLE.items():
        check_file(app, tmp_path, name, expect, shown[name], ids)
        human = run_cli(capsys, "show", str(ids[name])).out
        for flag, reason in (shown[name]["flags"] or {}).items():
            if isinstance(reason, str):  # every flag with its reason, as `show` prints it
                assert f"flag {flag}: {reason}" in human, (name, flag)
    app.close()


def check_file(
    app: Any, tmp_path: Path, name: str, expect: Expect, shown: dict[str, Any], ids: dict[str, int]
) -> None:
    flags = shown["flags"] or {}
    made = {d["kind"]: d for d in shown["derivatives"]}
    assert shown["failures"] == [], name
    assert shown["state"] == "DERIVED", name
    if expect.outcome in ("video", "audio", "photo"):
        assert not {"damaged", "unsupported", "unreadable"} & set(flags), (name, flags)
    if expect.outcome == "video":
        assert sorted(made) == ["access", "poster", "proxy"], name
        assert made["access"]["method"] == expect.access, name
        for kind in ("access", "proxy"):
            back = ffprobe(stored(app, tmp_path, made[kind]))
            assert stream_duration(back) == pytest.approx(shown["duration_s"], abs=0.1), (
                name,
                kind,
            )
        poster = ffprobe(stored(app, tmp_path, made["poster"]))
        assert poster["streams"][0]["codec_name"] == "mjpeg", name
    elif expect.outcome == "audio":
        assert sorted(made) == ["audio"], name
        assert made["audio"]["method"] == expect.access, name
        back = ffprobe(stored(app, tmp_path, made["audio"]))
        assert stream_duration(back) == pytest.approx(shown["duration_s"], abs=0.1), name
    elif expect.outcome == "photo":
        check_photo(app, tmp_path, name, expect, shown, made)
    elif expect.outcome == "damaged":
        assert expect.reason in flags["damaged"], (name, flags)
        check_recovery(app, tmp_path, name, expect, flags, made, ids)
    else:
        assert expect.outcome == "unsupported"
        assert expect.reason in flags["unsupported"] and made == {}, (name, flags)
        assert shown["probe"]["missing_decoder"] == "avs2"
        assert "damaged" not in flags and "unreadable" not in flags
    if expect.captured is not None:
        assert shown["capture_start"] == expect.captured, name
        assert shown["time_evidence"]["source"] == "embedded", name
        assert expect.zone_rule in shown["probe"]["creation_time_rule"], name


def check_photo(
    app: Any,
    tmp_path: Path,
    name: str,
    expect: Expect,
    shown: dict[str, Any],
    made: dict[str, dict[str, Any]],
) -> None:
    assert sorted(made) == ["access", "thumbnail"], name
    assert made["access"]["method"] == expect.access, name
    width, height = shown["probe"]["width"], shown["probe"]["height"]
    access = ffprobe(stored(app, tmp_path, made["access"]))["streams"][0]
    thumb = ffprobe(stored(app, tmp_path, made["thumbnail"]))["streams"][0]
    assert access["codec_name"] == thumb["codec_name"] == "mjpeg", name
    # Full size (turned upright for a HEIC's irot), and a thumbnail of at most 320.
    assert {access["width"], access["height"]} == {width, height}, name
    assert max(thumb["width"], thumb["height"]) <= 320, name


def check_recovery(
    app: Any,
    tmp_path: Path,
    name: str,
    expect: Expect,
    flags: dict[str, Any],
    made: dict[str, dict[str, Any]],
    ids: dict[str, int],
) -> None:
    if expect.recovered is None:
        assert made == {} and "recovery" not in flags, name
    elif expect.recovered == "none":
        assert made == {} and "no recording has matching codec parameters" in flags["recovery"]
    else:
        reference, frames = expect.recovered
        assert sorted(made) == ["recovered"] and "recovery" not in flags, name
        back = ffprobe(stored(app, tmp_path, made["recovered"]))
        video = next(s for s in back["streams"] if s["codec_type"] == "video")
        assert int(video["nb_read_packets"]) >= frames, name
        source = ffprobe(corpus_dir() / reference)
        ref_video = next(s for s in source["streams"] if s["codec_type"] == "video")
        assert (video["width"], video["height"]) == (ref_video["width"], ref_video["height"])
        assert ids[reference] != ids[name]


def stored(app: Any, tmp_path: Path, derivative: dict[str, Any]) -> Path:
    """A derivative's object, read from the store (checked against its SHA-256)."""
    out = tmp_path / "back" / derivative["sha256"]
    out.parent.mkdir(exist_ok=True)
    if not out.exists():
        digest = Digest("sha256", derivative["sha256"])
        with app.store.local_file(derivative["object_key"], digest, scratch=out.parent) as p:
            shutil.copyfile(p, out)
    return out
