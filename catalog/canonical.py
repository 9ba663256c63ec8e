"""The canonical bytes of a custody event: what is hashed and signed.

Kept apart from the catalog's database code so that an offline verifier (a bag's custody
excerpt) can check events without loading SQLAlchemy.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from json.encoder import c_make_encoder, encode_basestring  # type: ignore[attr-defined]
from typing import Any

GENESIS = "0" * 64
FORMAT_VERSION = 1


# One encoder for the process: json.dumps with these options builds a new one per call,
# which was a fifth of the cost of an event's canonical bytes.
_ENCODER = json.JSONEncoder(sort_keys=True, separators=(",", ":"), ensure_ascii=False)


_ONLY_STR = {str}


def canonical_json(value: Any) -> str:
    if type(value) is dict and c_make_encoder is not None:
        # What _ENCODER.encode does for a dict, without its Python layers: the C encoder
        # with the same options and a fresh circular-reference memo (every custody
        # event's details come through here).
        return "".join(
            c_make_encoder(
                {}, _ENCODER.default, encode_basestring, None, ":", ",", True, False, True
            )(value, 0)
        )
    return _ENCODER.encode(value)


def format_time(at: datetime) -> str:
    utc = at if at.tzinfo is UTC else at.astimezone(UTC)
    if utc.year >= 1000:
        # The same text as the strftime below (every custody event's time goes through
        # here), from isoformat, which costs half: its "+00:00" becomes the "Z".
        return utc.isoformat(timespec="microseconds")[:-6] + "Z"
    return utc.strftime("%Y-%m-%dT%H:%M:%S.%fZ")  # (years below 1000: platform padding)


def canonical_bytes(
    *,
    station_id: str,
    seq: int,
    at: str,
    actor: str,
    action: str,
    object_type: str,
    object_id: str,
    details: str,
    prev_hash: str,
    key_id: str,
) -> bytes:
    texts = (action, actor, at, details, key_id, object_id, object_type, prev_hash, station_id)
    if type(seq) is int and set(map(type, texts)) == _ONLY_STR:
        # The usual event, written out in the encoder's own form: keys in sorted order,
        # each text quoted by the function the encoder quotes with (ensure_ascii off), the
        # numbers as int's repr. Byte for byte what encoding the document below gives
        # (tests/test_canonical_event.py checks it), at a third of the cost: every
        # custody event is hashed and signed over these bytes (three per offloaded file).
        q = encode_basestring
        text = (
            f'{{"action":{q(action)},"actor":{q(actor)},"at":{q(at)},'
            f'"details":{q(details)},"key":{q(key_id)},"object_id":{q(object_id)},'
            f'"object_type":{q(object_type)},"prev":{q(prev_hash)},"seq":{seq!r},'
            f'"station":{q(station_id)},"v":{FORMAT_VERSION!r}}}'
        )
        return text.encode("utf-8")
    doc = {
        "v": FORMAT_VERSION,
        "station": station_id,
        "seq": seq,
        "at": at,
        "actor": actor,
        "action": action,
        "object_type": object_type,
        "object_id": object_id,
        "details": details,
        "prev": prev_hash,
        "key": key_id,
    }
    return canonical_json(doc).encode("utf-8")
