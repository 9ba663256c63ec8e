"""An event's canonical bytes written out by hand (the station's hot path) are byte for
byte those of the JSON encoder's sorted, compact, non-ASCII document, for every text a
field may hold; anything else goes through the encoder itself."""

from __future__ import annotations

import json
import random
from typing import Any

import pytest

from catalog.canonical import FORMAT_VERSION, canonical_bytes

FIELDS = (
    "station_id",
    "at",
    "actor",
    "action",
    "object_type",
    "object_id",
    "details",
    "prev_hash",
    "key_id",
)
TRICKY = [
    "",
    "plain",
    'quote " and backslash \\',
    "control \x00\x01\x1f\x7f tab\t newline\n cr\r",
    "中文 警号 001234",
    "line sep \u2028 para sep \u2029",
    "emoji \U0001f4f7 and é",
    "/slashes/ and </script>",
    '{"path":"DCIM/100/A.MP4","size":100}',
]


def _by_encoder(fields: dict[str, Any]) -> bytes:
    doc = {
        "v": FORMAT_VERSION,
        "station": fields["station_id"],
        "seq": fields["seq"],
        "at": fields["at"],
        "actor": fields["actor"],
        "action": fields["action"],
        "object_type": fields["object_type"],
        "object_id": fields["object_id"],
        "details": fields["details"],
        "prev": fields["prev_hash"],
        "key": fields["key_id"],
    }
    return json.dumps(doc, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


@pytest.mark.parametrize("text", TRICKY)
def test_every_field_holding_a_tricky_text_encodes_as_the_encoder_does(text: str) -> None:
    for name in FIELDS:
        fields: dict[str, Any] = dict.fromkeys(FIELDS, "x") | {"seq": 7, name: text}
        assert canonical_bytes(**fields) == _by_encoder(fields), name


def test_random_texts_and_numbers() -> None:
    rng = random.Random(18)
    alphabet = [chr(c) for c in range(0, 0x250)] + ["中", "文", "\u2028", "\U0001f600", '"', "\\"]
    for _ in range(500):
        fields: dict[str, Any] = {
            name: "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 12)))
            for name in FIELDS
        }
        fields["seq"] = rng.choice([0, 1, 2**31, 2**63 - 1, rng.randint(0, 10**12)])
        assert canonical_bytes(**fields) == _by_encoder(fields)


def test_other_types_take_the_encoders_own_path() -> None:
    fields: dict[str, Any] = dict.fromkeys(FIELDS, "x") | {"seq": 3, "object_id": 42}
    assert canonical_bytes(**fields) == _by_encoder(fields)
    assert b'"object_id":42' in canonical_bytes(**fields)
    fields = dict.fromkeys(FIELDS, "x") | {"seq": True}  # a bool is not an int here
    assert canonical_bytes(**fields) == _by_encoder(fields)


def test_event_times_are_written_as_strftime_writes_them() -> None:
    from datetime import UTC, datetime, timedelta, timezone

    from catalog.canonical import format_time

    rng = random.Random(8)
    shanghai = timezone(timedelta(hours=8))
    times = [
        datetime(2026, 12, 6, 19, 31, 17, tzinfo=UTC),  # no microseconds
        datetime(2026, 12, 6, 19, 31, 17, 5, tzinfo=UTC),
        datetime(2026, 1, 1, 3, 0, 0, 999999, tzinfo=shanghai),  # the day before, in UTC
        datetime(1000, 1, 1, tzinfo=UTC),
        datetime(9999, 12, 31, 23, 59, 59, 999999, tzinfo=UTC),
    ]
    times += [
        datetime(2000, 1, 1, tzinfo=UTC) + timedelta(microseconds=rng.randint(0, 10**15))
        for _ in range(1000)
    ]
    for at in times:
        expected = at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
        assert format_time(at) == expected, at


def test_details_encode_as_the_encoder_does() -> None:
    from catalog.canonical import canonical_json

    def by_encoder(value: Any) -> str:
        return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)

    values: list[Any] = [
        {},
        {"b": 1, "a": [1, 2.5, None, True, False], "c": {"z": "中文\n", "y": -0.0}},
        {"size": 2**70, "ratio": 1e-300, "path": 'a"b\\c\u2028', "nested": [{"k": []}]},
        {2: "int keys", 1: "sorted as numbers"},
    ]
    for value in values:
        assert canonical_json(value) == by_encoder(value)
    loop: dict[str, Any] = {}
    loop["self"] = loop
    with pytest.raises(ValueError, match="Circular"):
        canonical_json(loop)
    with pytest.raises(TypeError):
        canonical_json({"when": object()})
