"""A docking's outcome, from its files' states alone (no I/O: a table test covers it)."""

from __future__ import annotations

from collections.abc import Iterable

from ingest.journal import DockingState, FileState


def outcome(states: Iterable[FileState], *, recorder_present: bool, stopped: bool) -> DockingState:
    """What a docking whose files are in ``states`` has come to.

    OFFLOADING while work is left (a file pending or staged) or the docking was stopped:
    the next run resumes it. Otherwise INCOMPLETE when a file could not be taken
    (quarantined), the recorder is gone (nothing vouches for what it holds now), or no
    file at all was taken (every one rejected: as with an empty folder, nothing vouches
    that the recorder's recordings are held). SAFE_TO_CLEAR only when every file is held
    or rejected with a reason, at least one is held, and the recorder is still there.
    """
    seen = set(states)
    if stopped or any(s.is_open for s in seen):
        return DockingState.OFFLOADING
    took_none = not any(s.is_held for s in seen)
    if FileState.QUARANTINED in seen or not recorder_present or took_none:
        return DockingState.INCOMPLETE
    return DockingState.SAFE_TO_CLEAR
