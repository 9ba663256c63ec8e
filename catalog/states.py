"""The states of a recording (``recordings.state``), defined once.

A recording is STORED when its docking registers it, PROBED once ffprobe has read it and
DERIVED once its derivatives are made. A retention sweep makes it EXPIRING (the deletion
is decided and committed) and then EXPIRED (its objects deleted, its tombstone written);
bytes that come back on a recorder make an EXPIRED recording STORED again.

The members are ``StrEnum`` so that the database holds the same text as ever: a row read
back gives a plain ``str``, which compares equal to its member.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Final


class RecordingState(StrEnum):
    STORED = "STORED"
    PROBED = "PROBED"
    DERIVED = "DERIVED"
    EXPIRING = "EXPIRING"
    EXPIRED = "EXPIRED"


# The states whose original bytes are held (attach, hold, review and expiry accept them);
# EXPIRING and EXPIRED are on their way out or gone.
LIVE_STATES: Final = (RecordingState.STORED, RecordingState.PROBED, RecordingState.DERIVED)
# The states a probe may (re)run in: registered, or probed and not yet derived.
PROBE_STATES: Final = (RecordingState.STORED, RecordingState.PROBED)
# The states whose probe result is recorded.
PROBED_STATES: Final = (RecordingState.PROBED, RecordingState.DERIVED)
