"""The docking outcome as a table: every combination of file states, recorder present or
not, stopped or not; and the journal refusing moves its state machine does not allow."""

from __future__ import annotations

import itertools
from pathlib import Path

import pytest

from ingest import journal as J
from ingest.docking_outcome import outcome
from ingest.journal import DockingState, FileState, IllegalTransition, Journal, JournalDocking
from storage.digest import DigestPair

P, S, D, C, R, Q = (
    FileState.PENDING,
    FileState.STAGED,
    FileState.DONE,
    FileState.CLEARED,
    FileState.REJECTED,
    FileState.QUARANTINED,
)
OFF, INC, SAFE = DockingState.OFFLOADING, DockingState.INCOMPLETE, DockingState.SAFE_TO_CLEAR

# (files' states, recorder present, stopped) → outcome, written out by hand.
TABLE = [
    # Work left, or stopped: the next run resumes it, whatever else is true.
    ((P,), True, False, OFF),
    ((S,), True, False, OFF),
    ((D, P), True, False, OFF),
    ((D, S, Q), False, False, OFF),
    ((D,), True, True, OFF),
    ((), True, True, OFF),
    ((Q,), False, True, OFF),
    # Finished, every file held (or rejected with a reason), the recorder still there.
    ((D,), True, False, SAFE),
    ((C,), True, False, SAFE),
    ((D, C), True, False, SAFE),
    ((D, R), True, False, SAFE),
    ((C, R), True, False, SAFE),
    # Finished, but not safe: a file not taken, the recorder gone, or nothing taken.
    ((D, Q), True, False, INC),
    ((Q,), True, False, INC),
    ((D,), False, False, INC),
    ((C,), False, False, INC),
    ((R,), True, False, INC),
    ((), True, False, INC),
    ((R, Q), True, False, INC),
]


@pytest.mark.parametrize(("states", "present", "stopped", "expected"), TABLE)
def test_outcome_table(
    states: tuple[FileState, ...], present: bool, stopped: bool, expected: DockingState
) -> None:
    assert outcome(states, recorder_present=present, stopped=stopped) == expected


ALL_COMBINATIONS = [
    (frozenset(states), present, stopped)
    for n in range(len(FileState) + 1)
    for states in itertools.combinations(FileState, n)
    for present in (True, False)
    for stopped in (True, False)
]


@pytest.mark.parametrize(("states", "present", "stopped"), ALL_COMBINATIONS)
def test_outcome_of_every_combination(
    states: frozenset[FileState], present: bool, stopped: bool
) -> None:
    """Every set of file states (each present once or many times: the outcome depends on
    which states occur), with the recorder there or not, stopped or not."""
    got = outcome(list(states) * 2, recorder_present=present, stopped=stopped)
    work_left = bool(states & {P, S})
    if stopped or work_left:
        assert got == OFF
        return
    # Safe to clear exactly when nothing was lost from view: the recorder is there, no file
    # is quarantined, and at least one file is held.
    safe = present and Q not in states and bool(states & {D, C})
    assert got == (SAFE if safe else INC)
    assert got.is_safe_to_clear == safe and J.is_safe_to_clear(got.value) == safe


def test_the_table_covers_every_outcome_and_state() -> None:
    assert {row[3] for row in TABLE} == {OFF, INC, SAFE}
    assert {s for row in TABLE for s in row[0]} == set(FileState)
    assert len(ALL_COMBINATIONS) == 2 ** len(FileState) * 4


# -- the journal's state machine ------------------------------------------------------------

DIGESTS = DigestPair.of_hex("a" * 64, "b" * 64)


@pytest.fixture
def journal(tmp_path: Path) -> Journal:
    j = Journal(tmp_path / "journal.sqlite3")
    j.add_docking(
        JournalDocking(
            uid="d1",
            slot="1",
            source_path="/dock/A",
            serial="A123456",
            identity={},
            state=DockingState.OFFLOADING,
            started_at="t",
            updated_at="t",
            waiting=None,
            message=None,
        )
    )
    j.add_files("d1", [(b"A.MP4", 5, 1), (b"B.MP4", 5, 1)])
    return j


def state_of(journal: Journal, name: bytes) -> FileState:
    (f,) = [f for f in journal.files("d1") if f.relpath == name]
    return f.state


def test_a_file_goes_pending_staged_done_cleared(journal: Journal) -> None:
    a = journal.files("d1")[0].id
    journal.staged(a, digests=DIGESTS, staged_at="t")
    f = journal.file(a)
    assert (f.state, f.digests) == (S, DIGESTS)
    journal.done([a])
    journal.cleared(a)
    assert journal.file(a).state == C


@pytest.mark.parametrize(
    ("how", "before"),
    [
        ("done", P),  # stored and registered without ever being staged
        ("cleared", P),
        ("cleared", S),  # cleared from the recorder before it is registered
        ("staged_twice", S),
        ("quarantine_done", D),  # a file held cannot be quarantined afterwards
        ("reject_staged", S),
        ("repair_pending", P),
        ("grew_staged", S),
    ],
)
def test_a_move_the_state_machine_does_not_allow_raises_and_writes_nothing(
    journal: Journal, how: str, before: FileState
) -> None:
    a = journal.files("d1")[0].id
    if before in (S, D):
        journal.staged(a, digests=DIGESTS, staged_at="t")
    if before == D:
        journal.done([a])
    moves = {
        "done": lambda: journal.done([a]),
        "cleared": lambda: journal.cleared(a),
        "staged_twice": lambda: journal.staged(a, digests=DIGESTS, staged_at="t2"),
        "quarantine_done": lambda: journal.quarantined(a, "why"),
        "reject_staged": lambda: journal.rejected(a, "why"),
        "repair_pending": lambda: journal.repair_noted(a, "{}"),
        "grew_staged": lambda: journal.grew(a, size=9, mtime_ns=2),
    }
    with pytest.raises(IllegalTransition, match=r"A\.MP4"):
        moves[how]()
    f = journal.file(a)
    assert (f.state, f.reason, f.size) == (before, None, 5)


def test_a_batch_with_one_file_not_staged_marks_none_done(journal: Journal) -> None:
    a, b = (f.id for f in journal.files("d1"))
    journal.staged(a, digests=DIGESTS, staged_at="t")
    with pytest.raises(IllegalTransition, match=r"B\.MP4 is PENDING"):
        journal.done([a, b])
    assert (state_of(journal, b"A.MP4"), state_of(journal, b"B.MP4")) == (S, P)


def test_quarantined_files_get_another_try_when_docked_again(journal: Journal) -> None:
    a, b = (f.id for f in journal.files("d1"))
    journal.quarantined(a, "vanished")
    journal.staged(b, digests=DIGESTS, staged_at="t")
    journal.finished("d1", state=INC, message="A.MP4: vanished")
    journal.resumed("d1", source_path="/dock/A2", slot="2")
    journal.retry_quarantined("d1")
    f = journal.file(a)
    assert (f.state, f.reason, journal.file(b).state) == (P, None, S)
    d = journal.docking("d1")
    assert d is not None and (d.state, d.source_path, d.message) == (OFF, "/dock/A2", None)


@pytest.mark.parametrize(
    ("first", "then"),
    [
        (SAFE, SAFE),  # finished twice
        (INC, SAFE),  # an incomplete docking is resumed first, never declared safe
        (INC, DockingState.CLEARED),
    ],
)
def test_a_finished_docking_cannot_be_finished_again(
    journal: Journal, first: DockingState, then: DockingState
) -> None:
    journal.finished("d1", state=first, message=None)
    with pytest.raises(IllegalTransition, match=f"docking d1 is {first.value}"):
        journal.finished("d1", state=then, message=None)
    d = journal.docking("d1")
    assert d is not None and d.state == first


def test_offloading_is_not_an_outcome_and_a_docking_without_files_never_resumes(
    journal: Journal,
) -> None:
    with pytest.raises(IllegalTransition):
        journal.finished("d1", state=OFF, message=None)
    journal.add_docking(
        JournalDocking("d2", "1", "/dock/B", None, {}, DockingState.NO_FILES, "t", "t", None, None)
    )
    with pytest.raises(IllegalTransition, match="docking d2 is NO_FILES"):
        journal.resumed("d2", source_path="/dock/B", slot="1")
    with pytest.raises(IllegalTransition, match="not in the journal"):
        journal.recorder_cleared("nope")


def test_a_safe_docking_whose_recorder_was_cleared(journal: Journal) -> None:
    journal.finished("d1", state=SAFE, message=None)
    journal.recorder_cleared("d1")
    d = journal.docking("d1")
    assert d is not None and d.state == DockingState.CLEARED and d.state.is_safe_to_clear


def test_the_summary_counts_unfinished_dockings_and_staged_files(
    journal: Journal, tmp_path: Path
) -> None:
    a = journal.files("d1")[0].id
    journal.staged(a, digests=DIGESTS, staged_at="t")
    assert journal.summary() == J.JournalSummary(None, 1, 1)
    assert J.read_summary(tmp_path / "journal.sqlite3") == J.JournalSummary(None, 1, 1)
    journal.done([a])
    journal.finished("d1", state=SAFE, message=None)
    assert journal.summary() == J.JournalSummary(None, 0, 0)
