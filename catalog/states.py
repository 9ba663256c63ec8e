"""The states of a recording (``recordings.state``) and of a docking (``dockings.state``),
defined once.

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


class DockingState(StrEnum):
    """A docking's state: in the station journal, and in the catalog (``dockings.state``).

    Defined here, not in ingest, so the district check (archive_export, which may not
    import ingest) judges "safe to clear" by the same rule the station clears by.
    """

    OFFLOADING = "OFFLOADING"  # under way, or interrupted: the next run resumes it
    SAFE_TO_CLEAR = "SAFE_TO_CLEAR"  # every file stored, verified and registered
    CLEARED = "CLEARED"  # safe to clear, and the recorder was cleared
    INCOMPLETE = "INCOMPLETE"  # finished with files not taken: do not clear
    # Nothing at all was found on the recorder (an empty or unmounted folder). Never safe
    # to clear: 0 of 0 files stored proves nothing about what the recorder holds.
    NO_FILES = "NO_FILES"

    @property
    def is_safe_to_clear(self) -> bool:
        return self in (DockingState.SAFE_TO_CLEAR, DockingState.CLEARED)

    @property
    def is_unfinished(self) -> bool:
        """A docking of the recorder continues it (and its staged files get stored)."""
        return self in (DockingState.OFFLOADING, DockingState.INCOMPLETE)
