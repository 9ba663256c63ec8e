"""Retention: every rule explained, holds and reviews, the sweep (a property over random
histories: it never deletes what must be kept, and every deletion is in the custody
chain), tombstones, derivatives, and S3 Object Lock refusing an early delete."""

from __future__ import annotations

import dataclasses
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import select

from catalog import verify_chain
from catalog.attach import attach_manual, detach
from catalog.cases import create_case
from catalog.errors import CatalogError
from catalog.models import (
    Case,
    CaseRecording,
    CustodyEvent,
    Derivative,
    LegalHold,
    Recording,
    Tombstone,
)
from catalog.retention import (
    explain,
    hold,
    release,
    review,
    sweep,
    sync_cases_store_retention,
)
from storage import RetentionRefused
from tests.case_helpers import cst, make_recording, put_object
from tests.cli_helpers import run_cli
from tests.offload_helpers import make_app

DAYS = 183  # retention.unattached_days


def decision(app: Any, rec_id: int, now: datetime) -> Any:
    with app.catalog.session() as s:
        rec = s.get(Recording, rec_id)
        return explain(s, rec, app.settings.retention, now)


def test_each_rule_explained(app: Any, capsys: pytest.CaptureFixture[str]) -> None:
    start = cst(2026, 1, 10, 9, 0)
    later = start + timedelta(days=400)
    plain = make_recording(app, start=start)
    important = make_recording(app, start=start, important=True)
    held = make_recording(app, start=start)
    attached = make_recording(app, start=start)
    d = decision(app, plain, later)
    # From the later of capture and receipt (docked 8 hours after it began).
    assert (d.rule, d.keep_until, d.expired, d.deletable) == (
        "unattached",
        start + timedelta(hours=8, days=DAYS),
        True,
        True,
    )
    assert decision(app, plain, start + timedelta(days=DAYS, hours=7)).expired is False
    d = decision(app, important, later)
    assert (d.rule, d.keep_until, d.deletable) == ("important", None, False)
    with app.catalog.transaction() as s:
        hold(s, app.signer, app.store, s.get(Recording, held), reason="诉讼", actor="法务")
        case = create_case(
            s,
            app.signer,
            number="沪徐市监罚〔2026〕1号",
            retention="10年",
            status="closed",
            actor="a",
        )
        case.closed_at = start + timedelta(days=30)
        attach_manual(
            s,
            app.signer,
            case_number=case.number,
            rec=s.get(Recording, attached),
            reason="证据",
            actor="a",
            policy=app.settings.retention,
        )
    d = decision(app, held, later)
    assert (d.rule, d.keep_until, d.deletable) == ("legal-hold", None, False)
    assert d.holds[0]["reason"] == "诉讼"
    d = decision(app, attached, later)
    # 10年 from the case's closing (2026-02-09): 2036-02-09.
    assert d.rule == "case" and d.keep_until == cst(2036, 2, 9, 9, 0) and not d.deletable
    # The longest of the cases wins; a permanent one keeps it indefinitely.
    with app.catalog.transaction() as s:
        create_case(s, app.signer, number="沪徐市监罚〔2026〕2号", retention="永久", actor="a")
        attach_manual(
            s,
            app.signer,
            case_number="沪徐市监罚〔2026〕2号",
            rec=s.get(Recording, attached),
            reason="证据",
            actor="a",
            policy=app.settings.retention,
        )
    d = decision(app, attached, later)
    assert d.rule == "case" and d.keep_until is None
    assert any("永久" in line for line in d.reasons)
    # Reviewed and released: back to the unattached rule.
    with app.catalog.transaction() as s:
        review(s, app.signer, s.get(Recording, important), reason="已复核", actor="审核员")
        release(s, app.signer, app.store, s.get(Recording, held), reason="结案", actor="法务")
    assert decision(app, important, later).rule == "unattached"
    assert decision(app, held, later).deletable
    r = run_cli(capsys, "retention", "explain", str(attached), "--json")
    assert r.code == 0, r.err
    assert json.loads(r.out)["rule"] == "case"
    r = run_cli(capsys, "retention", "explain", str(plain))
    assert "rule: unattached" in r.out and "183 days from receipt" in r.out


def test_sweep_dry_run_then_apply(app: Any, capsys: pytest.CaptureFixture[str]) -> None:
    old = datetime.now(UTC) - timedelta(days=DAYS + 10)
    expired = make_recording(app, start=old, data=b"the same bytes" * 100)
    # The same bytes docked again (another docking file): still one recording.
    assert make_recording(app, start=old, data=b"the same bytes" * 100) == expired
    young = make_recording(app, start=datetime.now(UTC) - timedelta(days=10))
    with app.catalog.transaction() as s:
        rec = s.get(Recording, expired)
        assert rec is not None
        access = b"derived access copy of " + rec.sha256.encode()
        key = put_object(app, access)
        import hashlib

        s.add(
            Derivative(
                recording_id=rec.id,
                kind="access",
                sha256=hashlib.sha256(access).hexdigest(),
                sm3="0" * 64,
                size=len(access),
                object_key=key,
            )
        )
        original_key = rec.object_key
    r = run_cli(capsys, "retention", "sweep", "--json")
    assert r.code == 0, r.err
    listed = json.loads(r.out)
    assert [d["recording"] for d in listed["due"]] == [expired] and listed["deleted"] == []
    assert app.store.exists(original_key)
    r = run_cli(capsys, "retention", "sweep", "--apply", "--yes", "--actor", "管理员")
    assert r.code == 0, r.err
    assert not app.store.exists(original_key) and not app.store.exists(key)
    with app.catalog.session() as s:
        rec = s.get(Recording, expired)
        assert rec is not None and rec.state == "EXPIRED"
        stone = s.scalars(select(Tombstone).where(Tombstone.recording_id == expired)).one()
        assert stone.sha256 == rec.sha256 and stone.actor == "管理员"
        assert stone.objects["derivatives"][0]["key"] == key
        assert stone.captured_at == old
        events = [
            e.object_type
            for e in s.scalars(select(CustodyEvent).where(CustodyEvent.action == "expired-deleted"))
        ]
        assert sorted(events) == ["derivative", "recording"]
        assert len(s.scalars(select(Tombstone)).all()) == 1
        assert verify_chain(s).ok
        assert s.get(Recording, young).state == "PROBED"
    r = run_cli(capsys, "retention", "explain", str(expired))
    assert "rule: expired" in r.out and "deleted at expiry" in r.out
    # Nothing more to do; an expired recording cannot be attached or held.
    r = run_cli(capsys, "retention", "sweep", "--apply", "--yes", "--json")
    assert json.loads(r.out)["due"] == []
    with app.catalog.transaction() as s:
        create_case(s, app.signer, number="沪徐市监罚〔2026〕9号", actor="a")
    r = run_cli(capsys, "case", "attach", "沪徐市监罚〔2026〕9号", str(expired), "--reason", "x")
    assert r.code == 65 and "EXPIRED" in r.err


# --- the property ---------------------------------------------------------------------------

OPS = st.sampled_from(["attach", "detach", "hold", "release", "review", "nothing"])


@st.composite
def histories(draw: Any) -> list[dict[str, Any]]:
    n = draw(st.integers(1, 6))
    return [
        {
            "age_days": draw(st.integers(0, 2 * DAYS)),
            "unknown_capture": draw(st.booleans()),
            "important": draw(st.booleans()),
            "ops": draw(st.lists(OPS, max_size=4)),
        }
        for _ in range(n)
    ]


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_sweep_never_deletes_what_must_be_kept(
    tmp_path_factory: pytest.TempPathFactory, backend: str, request: pytest.FixtureRequest
) -> None:
    if backend == "postgresql":
        url = request.getfixturevalue("pg_url")
    else:
        url = f"sqlite:///{tmp_path_factory.mktemp('prop') / 'catalog.sqlite3'}"
    app = make_app(tmp_path_factory.mktemp("data"), catalog_url=url)
    with app.catalog.transaction() as s:
        create_case(s, app.signer, number="沪徐市监罚〔2026〕1号", retention="10年", actor="a")
    now = datetime.now(UTC)

    @settings(
        max_examples=25,
        deadline=None,
        suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    )
    @given(histories())
    def run(history: list[dict[str, Any]]) -> None:
        ids = []
        for h in history:
            captured = now - timedelta(days=h["age_days"], hours=1)
            rec_id = make_recording(
                app,
                start=captured,
                important=h["important"],
                received=captured + timedelta(hours=1),
                probe=not h["unknown_capture"],
            )
            if h["unknown_capture"]:
                with app.catalog.transaction() as s:
                    rec = s.get(Recording, rec_id)
                    rec.captured_at = None  # type: ignore[union-attr]
            with app.catalog.transaction() as s:
                rec = s.get(Recording, rec_id)
                assert rec is not None
                for op in h["ops"]:
                    apply_op(app, s, rec, op)
            ids.append(rec_id)
        # What must be kept, as the rules say, computed independently of explain().
        keep = {}
        with app.catalog.session() as s:
            for rec_id in ids:
                rec = s.get(Recording, rec_id)
                attached = (
                    s.scalars(
                        select(CaseRecording.id).where(
                            CaseRecording.recording_id == rec_id,
                            CaseRecording.detached_at.is_(None),
                        )
                    ).first()
                    is not None
                )
                held = (
                    s.scalars(
                        select(LegalHold.id).where(
                            LegalHold.recording_id == rec_id, LegalHold.released_at.is_(None)
                        )
                    ).first()
                    is not None
                )
                assert rec is not None
                since = (
                    rec.received_at
                    if rec.captured_at is None
                    else max(rec.captured_at, rec.received_at)
                )
                unexpired = since + timedelta(days=DAYS) > now
                important = rec.important and rec.reviewed_at is None  # type: ignore[union-attr]
                keep[rec_id] = attached or held or important or unexpired
        report = sweep(
            app.catalog,
            app.signer,
            app.store,
            app.settings.retention,
            actor="sweeper",
            apply=True,
            now=now,
        )
        deleted = {d["recording"] for d in report.deleted}
        assert not report.refused
        with app.catalog.session() as s:
            for rec_id in ids:
                rec = s.get(Recording, rec_id)
                assert rec is not None
                if keep[rec_id]:
                    assert rec_id not in deleted and rec.state != "EXPIRED"
                    assert app.store.exists(rec.object_key)
                else:  # and what may go, goes, with its tombstone and custody event
                    assert rec_id in deleted and rec.state == "EXPIRED"
                    assert not app.store.exists(rec.object_key)
                    assert (
                        s.scalars(select(Tombstone).where(Tombstone.recording_id == rec_id))
                        .one()
                        .sha256
                        == rec.sha256
                    )
                    assert (
                        s.scalars(
                            select(CustodyEvent).where(
                                CustodyEvent.action == "expired-deleted",
                                CustodyEvent.object_id == rec.sha256,
                            )
                        )
                        .one()
                        .actor
                        == "sweeper"
                    )

    run()
    with app.catalog.session() as s:
        assert verify_chain(s).ok
    app.close()


def apply_op(app: Any, s: Any, rec: Recording, op: str) -> None:
    attached = s.scalars(
        select(CaseRecording).where(
            CaseRecording.recording_id == rec.id, CaseRecording.detached_at.is_(None)
        )
    ).first()
    if op == "attach":
        attach_manual(
            s,
            app.signer,
            case_number="沪徐市监罚〔2026〕1号",
            rec=rec,
            reason="r",
            actor="a",
            policy=app.settings.retention,
            store=app.store,
        )
    elif op == "detach" and attached is not None:
        detach(s, app.signer, case_number="沪徐市监罚〔2026〕1号", rec=rec, reason="r", actor="a")
    elif op == "hold":
        hold(s, app.signer, app.store, rec, reason="r", actor="a")
    elif op == "release" and (
        held := s.scalars(
            select(LegalHold).where(
                LegalHold.recording_id == rec.id, LegalHold.released_at.is_(None)
            )
        ).first()
    ):
        release(s, app.signer, app.store, rec, reason="r", actor="a", hold_id=held.id)
    elif op == "review" and rec.important and rec.reviewed_at is None:
        review(s, app.signer, rec, reason="r", actor="a")


# --- S3 Object Lock -----------------------------------------------------------------------


def test_object_lock_refuses_an_early_delete_and_attach_extends(
    tmp_path: Path, s3_endpoint: Any, s3_lock_bucket: str
) -> None:
    """On a bucket with Object Lock, the store itself keeps a retained original: a
    delete through the store fails, the sweep reports the refusal and changes nothing,
    and attaching to a permanent case pushes the retain-until date far ahead."""
    app = make_app(
        tmp_path / "data",
        store_url=f"s3://{s3_lock_bucket}/ev",
        store_env={"LIUHEN_STORE_ENDPOINT_URL": s3_endpoint.url},
    )
    now = datetime.now(UTC)
    # Captured 200 days ago, but stored today with the default 183-day lock from receipt:
    # the catalog's rule lets it go, the store does not.
    rec_id = make_recording(
        app, start=now - timedelta(days=200), retain_until=now + timedelta(days=183)
    )
    with app.catalog.session() as s:
        rec = s.get(Recording, rec_id)
        assert rec is not None
        key = rec.object_key
    locked_until = app.store.head(key).retain_until
    assert locked_until is not None
    with app.catalog.session() as s:  # the worker's probe step recorded the store's date
        assert s.get(Recording, rec_id).retain_until == locked_until  # type: ignore[union-attr]
    with pytest.raises(RetentionRefused):
        app.store.delete(key)
    report = sweep(
        app.catalog, app.signer, app.store, app.settings.retention, actor="s", apply=True, now=now
    )
    assert [r["recording"] for r in report.refused] == [rec_id] and not report.deleted
    assert "retained until" in report.refused[0]["error"]
    with app.catalog.session() as s:
        assert s.get(Recording, rec_id).state == "PROBED"  # type: ignore[union-attr]
        assert s.scalars(select(Tombstone)).first() is None
    assert app.store.exists(key)
    # Attach to a permanent case: retain-until moves ~100 years ahead, in the store and
    # in the catalog.
    with app.catalog.transaction() as s:
        create_case(s, app.signer, number="沪徐市监罚〔2026〕8号", retention="永久", actor="a")
        attach_manual(
            s,
            app.signer,
            case_number="沪徐市监罚〔2026〕8号",
            rec=s.get_one(Recording, rec_id),
            reason="证据",
            actor="a",
            policy=app.settings.retention,
            store=app.store,
        )
    until = app.store.head(key).retain_until
    # ~100 years, or the latest date an S3 server keeps (storage.s3.MAX_RETAIN_UNTIL).
    assert until is not None and until >= min(
        now + timedelta(days=99 * 365), datetime(2106, 2, 7, 6, 28, 15, tzinfo=UTC)
    )
    with app.catalog.session() as s:
        stored = s.get(Recording, rec_id).retain_until  # type: ignore[union-attr]
        assert stored is not None and abs((stored - until).total_seconds()) <= 1
    # A 10年 case attached while open pushes now + 10 years; when it closes, the period
    # runs from the closing, and the store's date follows.
    other = make_recording(app, start=now - timedelta(days=1))
    with app.catalog.transaction() as s:
        create_case(s, app.signer, number="沪徐市监罚〔2026〕10号", retention="10年", actor="a")
        attach_manual(
            s,
            app.signer,
            case_number="沪徐市监罚〔2026〕10号",
            rec=s.get_one(Recording, other),
            reason="证据",
            actor="a",
            policy=app.settings.retention,
            store=app.store,
        )
        other_key = s.get_one(Recording, other).object_key
    at_attach = app.store.head(other_key).retain_until
    assert at_attach is not None and at_attach > now + timedelta(days=3650)
    with app.catalog.transaction() as s:
        case = s.scalars(select(Case).where(Case.number == "沪徐市监罚〔2026〕10号")).one()
        case.status, case.closed_at = "closed", now + timedelta(days=40)
        assert sync_cases_store_retention(s, app.store, [case.id], app.settings.retention) == 1
    closed_until = app.store.head(other_key).retain_until
    assert closed_until is not None and closed_until >= at_attach + timedelta(days=39)
    # A legal hold is mirrored in the store.
    with app.catalog.transaction() as s:
        hold(s, app.signer, app.store, s.get_one(Recording, rec_id), reason="诉讼", actor="法务")
    assert app.store.head(key).legal_hold
    app.close()


# --- a sweep killed between the store delete and the catalog commit ----------------------


class SweepKilled(BaseException):
    """The sweep process dying right after the store deleted an object (kill -9, power)."""


class DiesAfterDelete:
    """The real store; its first delete succeeds and then the process 'dies'."""

    def __init__(self, store: Any) -> None:
        self.store = store

    def __getattr__(self, name: str) -> Any:
        return getattr(self.store, name)

    def delete(self, key: str) -> None:
        self.store.delete(key)
        raise SweepKilled(key)


def test_sweep_killed_after_the_store_delete_is_completed_not_forgotten(app: Any) -> None:
    """The deletion is decided durably before any byte goes: a sweep killed after the
    store delete leaves a recording nobody can attach or hold (its bytes may be gone),
    and the next sweep writes the tombstone and the custody event even if the rules
    would no longer let it go (here: a longer unattached period configured since)."""
    now = datetime.now(UTC)
    rec_id = make_recording(app, start=now - timedelta(days=DAYS + 10))
    with app.catalog.session() as s:
        key = s.get_one(Recording, rec_id).object_key
    with pytest.raises(SweepKilled):
        sweep(
            app.catalog,
            app.signer,
            DiesAfterDelete(app.store),
            app.settings.retention,
            actor="sweeper",
            apply=True,
            now=now,
        )
    assert not app.store.exists(key)
    with app.catalog.transaction() as s:
        create_case(s, app.signer, number="沪徐市监罚〔2026〕77号", retention="永久", actor="a")
    # A person finds the recording and attaches it: refused, its bytes are not held.
    with pytest.raises(CatalogError), app.catalog.transaction() as s:
        attach_manual(
            s,
            app.signer,
            case_number="沪徐市监罚〔2026〕77号",
            rec=s.get_one(Recording, rec_id),
            reason="证据",
            actor="a",
            policy=app.settings.retention,
            store=app.store,
        )
    with pytest.raises(CatalogError), app.catalog.transaction() as s:
        hold(s, app.signer, app.store, s.get_one(Recording, rec_id), reason="诉讼", actor="法务")
    longer = dataclasses.replace(app.settings.retention, unattached_days=10 * DAYS)
    assert decision(app, rec_id, now).rule == "expired"
    report = sweep(app.catalog, app.signer, app.store, longer, actor="sweeper", apply=True, now=now)
    assert [d["recording"] for d in report.deleted] == [rec_id] and not report.refused
    with app.catalog.session() as s:
        assert s.get_one(Recording, rec_id).state == "EXPIRED"
        stone = s.scalars(select(Tombstone).where(Tombstone.recording_id == rec_id)).one()
        assert f"{DAYS} days" in stone.reason
        event = s.scalars(
            select(CustodyEvent).where(
                CustodyEvent.action == "expired-deleted", CustodyEvent.object_type == "recording"
            )
        ).one()
        assert json.loads(event.details)["store"] == "already gone"
        assert event.actor == "sweeper"
        assert verify_chain(s).ok


class RefusesDelete:
    """The real store, whose delete of one key is refused the way Object Lock refuses it
    (a legal hold put on in the store between the sweep's decision and its delete)."""

    def __init__(self, store: Any, key: str) -> None:
        self.store, self.key = store, key

    def __getattr__(self, name: str) -> Any:
        return getattr(self.store, name)

    def delete(self, key: str) -> None:
        if key == self.key:
            raise RetentionRefused(f"{key}: the store keeps it (legal hold True)")
        self.store.delete(key)


def _with_access_copy(app: Any, rec_id: int) -> str:
    """Record an access-copy derivative of the recording; its object key."""
    import hashlib

    with app.catalog.transaction() as s:
        rec = s.get_one(Recording, rec_id)
        access = b"derived access copy of " + rec.sha256.encode()
        key = put_object(app, access)
        s.add(
            Derivative(
                recording_id=rec.id,
                kind="access",
                sha256=hashlib.sha256(access).hexdigest(),
                sm3="0" * 64,
                size=len(access),
                object_key=key,
            )
        )
    return key


def _actions(app: Any, sha256: str) -> list[str]:
    with app.catalog.session() as s:
        return list(
            s.scalars(
                select(CustodyEvent.action)
                .where(CustodyEvent.object_id == sha256)
                .order_by(CustodyEvent.id)
            )
        )


def test_a_store_refusing_the_original_undoes_the_decided_expiry(app: Any) -> None:
    """The store refuses the original's delete after the sweep decided the expiry:
    nothing is deleted, the sweep reports the refusal, and the recording is live again in
    the state it had, with an expiry-undone event saying why; a later sweep deletes it."""
    now = datetime.now(UTC)
    rec_id = make_recording(app, start=now - timedelta(days=DAYS + 10))
    access_key = _with_access_copy(app, rec_id)
    with app.catalog.session() as s:
        rec = s.get_one(Recording, rec_id)
        key, sha, state = rec.object_key, rec.sha256, rec.state
    policy = app.settings.retention
    refusing = RefusesDelete(app.store, key)
    report = sweep(app.catalog, app.signer, refusing, policy, actor="s", apply=True, now=now)
    assert [r["recording"] for r in report.refused] == [rec_id] and not report.deleted
    assert "legal hold" in report.refused[0]["error"]
    assert app.store.exists(key) and app.store.exists(access_key)
    with app.catalog.session() as s:
        rec = s.get_one(Recording, rec_id)
        assert (rec.state, "expiry" in rec.flags) == (state, False)
        assert s.scalars(select(Tombstone)).first() is None
        assert verify_chain(s).ok
    assert _actions(app, sha)[-2:] == ["expiry-decided", "expiry-undone"]
    report = sweep(app.catalog, app.signer, app.store, policy, actor="s", apply=True, now=now)
    assert [d["recording"] for d in report.deleted] == [rec_id] and not report.refused
    assert not app.store.exists(key) and not app.store.exists(access_key)


def test_a_store_refusing_a_derivative_leaves_the_expiry_to_finish(app: Any) -> None:
    """Refused after the original went (a derivative's delete): the expiry is not undone,
    since the recording's bytes are gone; it stays EXPIRING, reported, and the next sweep
    finishes it with the tombstone."""
    now = datetime.now(UTC)
    rec_id = make_recording(app, start=now - timedelta(days=DAYS + 10))
    access_key = _with_access_copy(app, rec_id)
    with app.catalog.session() as s:
        key = s.get_one(Recording, rec_id).object_key
    policy = app.settings.retention
    refusing = RefusesDelete(app.store, access_key)
    report = sweep(app.catalog, app.signer, refusing, policy, actor="s", apply=True, now=now)
    assert [r["recording"] for r in report.refused] == [rec_id] and not report.deleted
    assert not app.store.exists(key) and app.store.exists(access_key)
    with app.catalog.session() as s:
        assert s.get_one(Recording, rec_id).state == "EXPIRING"
    report = sweep(app.catalog, app.signer, app.store, policy, actor="s", apply=True, now=now)
    assert [d["recording"] for d in report.deleted] == [rec_id] and not report.refused
    assert not app.store.exists(access_key)
    with app.catalog.session() as s:
        assert s.get_one(Recording, rec_id).state == "EXPIRED"
        stone = s.scalars(select(Tombstone).where(Tombstone.recording_id == rec_id)).one()
        assert stone.objects["original"]["store"] == "already gone"
        assert verify_chain(s).ok


def test_a_derivative_finished_after_the_sweep_is_not_kept(tmp_path: Path) -> None:
    """A transcode that finishes after the sweep deleted its recording (the sweep committed
    while ffmpeg ran) must not leave a derivative of an expired recording in the store
    and the catalog, kept for ever with nothing to expire it."""
    from ingest.synthetic import make_recorder
    from ingest.worker import Worker
    from storage import Digest, content_key

    rec = make_recorder(
        tmp_path / "dock" / "A123456",
        h265=0,
        wav=0,
        jpeg=0,
        truncated=0,
        segments=0,
        start=datetime.now(UTC) - timedelta(days=DAYS + 10),
    )
    app = make_app(tmp_path / "data")
    station = app.station()
    assert station.run_docking(rec.root).state == "SAFE_TO_CLEAR"
    station.close()
    late: list[str] = []
    later = datetime.now(UTC) + timedelta(days=DAYS + 1)  # the minimum keep runs from receipt

    class SweptWhileTranscoding(Worker):
        def _keep(self, rec_id: int, d: Any, **how: Any) -> None:
            if d.kind == "poster":  # the last one: the sweep ran while ffmpeg made it
                report = sweep(
                    self.catalog,
                    self.signer,
                    self.store,
                    self.settings.retention,
                    actor="sweeper",
                    apply=True,
                    now=later,
                )
                assert rec_id in [x["recording"] for x in report.deleted]
                import hashlib

                late.append(
                    content_key(
                        Digest("sha256", hashlib.sha256(Path(d.path).read_bytes()).hexdigest())
                    )
                )
            super()._keep(rec_id, d, **how)

    worker = SweptWhileTranscoding(
        app.settings, catalog=app.catalog, store=app.store, signer=app.signer
    )
    stats = worker.run(drain=True, idle_s=0.1)
    assert stats.failed == 0, stats.errors
    assert len(late) == 1 and not app.store.exists(late[0])
    with app.catalog.session() as s:
        recording = s.scalars(select(Recording).where(Recording.media_kind == "video")).one()
        assert recording.state == "EXPIRED"
        kinds = sorted(d.kind for d in s.scalars(select(Derivative)))
        assert kinds == ["access", "proxy"]  # recorded before the sweep, listed in its tombstone
        stone = s.scalars(select(Tombstone).where(Tombstone.recording_id == recording.id)).one()
        assert sorted(d["kind"] for d in stone.objects["derivatives"]) == kinds
        for d in s.scalars(select(Derivative)):
            assert not app.store.exists(d.object_key)
        actions = [
            e.action
            for e in s.scalars(
                select(CustodyEvent)
                .where(CustodyEvent.object_type == "derivative")
                .order_by(CustodyEvent.id)
            )
        ]
        assert "derived" not in actions[actions.index("expired-deleted") :]
        assert verify_chain(s).ok
    app.close()


def test_an_attach_the_sweep_waits_for_wins(tmp_path: Path, pg_url: str) -> None:
    """PostgreSQL, two connections: the sweep lists a recording while a person's attach of
    it is not yet committed, then waits on the recording's row lock; once the attach
    commits, the sweep's re-check sees it and deletes nothing."""
    import threading

    from sqlalchemy import create_engine, text

    app = make_app(tmp_path / "data", catalog_url=pg_url)
    now = datetime.now(UTC)
    rec_id = make_recording(app, start=now - timedelta(days=DAYS + 10))
    with app.catalog.transaction() as s:
        create_case(s, app.signer, number="沪徐市监罚〔2026〕5号", retention="永久", actor="a")
        key = s.get_one(Recording, rec_id).object_key
    result: dict[str, Any] = {}

    def run_sweep() -> None:
        result["report"] = sweep(
            app.catalog,
            app.signer,
            app.store,
            app.settings.retention,
            actor="sweeper",
            apply=True,
            now=now,
        )

    watcher = create_engine(pg_url.replace("postgresql://", "postgresql+psycopg://", 1))
    sweeper = threading.Thread(target=run_sweep)
    with app.catalog.transaction() as s:
        attach_manual(
            s,
            app.signer,
            case_number="沪徐市监罚〔2026〕5号",
            rec=s.get_one(Recording, rec_id),
            reason="证据",
            actor="a",
            policy=app.settings.retention,
            store=app.store,
        )
        pid = s.execute(text("SELECT pg_backend_pid()")).scalar_one()
        sweeper.start()
        with watcher.connect() as conn:
            for _ in range(600):  # until the sweep waits on our lock (at most 60 s)
                blocked = conn.execute(
                    text(
                        "SELECT count(*) FROM pg_stat_activity WHERE "
                        ":pid = ANY(pg_blocking_pids(pid))"
                    ),
                    {"pid": pid},
                ).scalar_one()
                # pg_stat_activity is a snapshot kept until the transaction ends: without
                # this, a first look taken before the sweep blocked is all the loop sees.
                conn.rollback()
                if blocked:
                    break
                threading.Event().wait(0.1)
            else:
                pytest.fail("the sweep never waited on the attach's row lock")
    sweeper.join(60)
    watcher.dispose()
    report = result["report"]
    assert [d.recording_id for d in report.due] == [rec_id]  # listed before the commit
    assert report.deleted == [] and report.refused == []
    assert app.store.exists(key)
    with app.catalog.session() as s:
        assert s.get_one(Recording, rec_id).state == "PROBED"
        assert decision(app, rec_id, now).rule == "case"
    app.close()


def test_an_unprobed_recording_is_kept_from_receipt(
    app: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    """Until the probe has weighed a recording's times, its capture time is only what the
    file name says: a recorder whose clock was never set names files 1970 (or any wrong
    date). A recording docked today and not yet probed (workers behind) is kept from
    its receipt, not deleted by tonight's sweep."""
    now = datetime.now(UTC)
    rec_id = make_recording(
        app, start=datetime(1970, 1, 1, tzinfo=UTC), received=now - timedelta(hours=2), probe=False
    )
    with app.catalog.session() as s:
        rec = s.get_one(Recording, rec_id)
        assert rec.state == "STORED" and rec.captured_at == datetime(1970, 1, 1, tzinfo=UTC)
        key = rec.object_key
    d = decision(app, rec_id, now)
    assert (d.rule, d.expired, d.deletable) == ("unattached", False, False)
    assert d.keep_until == now - timedelta(hours=2) + timedelta(days=DAYS)
    assert "from receipt" in d.reasons[0]
    report = sweep(
        app.catalog,
        app.signer,
        app.store,
        app.settings.retention,
        actor="sweeper",
        apply=True,
        now=now,
    )
    assert report.due == [] and report.deleted == []
    assert app.store.exists(key)
    # Still unprobed half a year after receipt: then it goes, from receipt.
    later = now + timedelta(days=DAYS)
    report = sweep(
        app.catalog,
        app.signer,
        app.store,
        app.settings.retention,
        actor="sweeper",
        apply=True,
        now=later,
    )
    assert [x["recording"] for x in report.deleted] == [rec_id]


def test_the_important_mark_is_in_the_custody_chain(app: Any) -> None:
    """Marked important on the recorder (file-name tag, read by the station) changes how
    long the recording is kept: the custody chain says so once, whoever set it."""
    rec_id = make_recording(app, start=datetime.now(UTC) - timedelta(days=1), important=True)
    with app.catalog.session() as s:
        rec = s.get_one(Recording, rec_id)
        assert rec.important
        events = list(
            s.scalars(
                select(CustodyEvent).where(
                    CustodyEvent.action == "marked-important", CustodyEvent.object_id == rec.sha256
                )
            )
        )
        assert len(events) == 1
        assert json.loads(events[0].details)["source"] == "file-name"


def test_expired_bytes_docked_again_are_held_again(tmp_path: Path) -> None:
    """A recorder that still holds a file whose recording expired and was deleted: docking
    it again stores the bytes again, the recording is live again (its tombstone stays),
    the custody chain says so, and the worker makes its derivatives anew. The station
    never says SAFE TO CLEAR over bytes the store no longer has."""
    from ingest.synthetic import make_recorder
    from ingest.worker import Worker

    rec = make_recorder(
        tmp_path / "dock" / "A123456",
        h265=0,
        wav=0,
        jpeg=0,
        truncated=0,
        segments=0,
        start=datetime.now(UTC) - timedelta(days=DAYS + 10),
    )
    app = make_app(tmp_path / "data")

    def dock_and_work() -> None:
        station = app.station()
        assert station.run_docking(rec.root).state == "SAFE_TO_CLEAR"
        station.close()
        stats = Worker(app.settings, catalog=app.catalog, store=app.store, signer=app.signer).run(
            drain=True, idle_s=0.1
        )
        assert stats.failed == 0, stats.errors

    dock_and_work()
    report = sweep(
        app.catalog,
        app.signer,
        app.store,
        app.settings.retention,
        actor="sweeper",
        apply=True,
        now=datetime.now(UTC) + timedelta(days=DAYS + 1),
    )
    assert report.deleted
    with app.catalog.session() as s:
        video = s.scalars(select(Recording).where(Recording.media_kind == "video")).one()
        assert video.state == "EXPIRED" and not app.store.exists(video.object_key)
        video_id = video.id
    dock_and_work()
    with app.catalog.session() as s:
        again = s.get(Recording, video_id)
        assert again is not None and again.state == "DERIVED"
        assert app.store.exists(again.object_key)
        derivatives = s.scalars(select(Derivative).where(Derivative.recording_id == video_id))
        kinds = sorted(d.kind for d in derivatives)
        assert kinds == ["access", "poster", "proxy"]
        for d in s.scalars(select(Derivative).where(Derivative.recording_id == video_id)):
            assert app.store.exists(d.object_key)
        assert s.scalars(select(Tombstone).where(Tombstone.recording_id == video_id)).one()
        actions = [
            e.action
            for e in s.scalars(
                select(CustodyEvent)
                .where(CustodyEvent.object_id == again.sha256)
                .order_by(CustodyEvent.id)
            )
        ]
        assert "restored-after-expiry" in actions[actions.index("expired-deleted") :]
        assert verify_chain(s).ok
    app.close()


def test_bytes_docked_during_their_expiry_wait_for_it_then_are_held_again(
    tmp_path: Path,
) -> None:
    """A sweep decided to expire a recording (EXPIRING) and was killed before deleting:
    the same bytes docked now are not linked to it (its object may go any moment); the
    docking waits, visibly, and completes once a sweep has finished the expiry."""
    import threading
    from dataclasses import replace

    from ingest import journal as J
    from ingest.synthetic import make_recorder

    rec = make_recorder(
        tmp_path / "dock" / "A123456", h264=1, h265=0, wav=0, jpeg=0, truncated=0, segments=0
    )
    app = make_app(tmp_path / "data")
    app.settings = replace(
        app.settings, ingest=replace(app.settings.ingest, retry_initial_s=0.1, retry_max_s=0.2)
    )
    station = app.station()
    assert station.run_docking(rec.root).state == "SAFE_TO_CLEAR"
    with app.catalog.transaction() as s:
        video = s.scalars(select(Recording).where(Recording.original_name.like("%.MP4"))).one()
        video.state = "EXPIRING"  # what a sweep killed between its two phases leaves
        video.flags = {**video.flags, "expiry": {"reason": "test", "from_state": "STORED"}}
        video_id = video.id
    result: list[Any] = []
    thread = threading.Thread(target=lambda: result.append(station.run_docking(rec.root)))
    thread.start()
    try:
        deadline = datetime.now(UTC) + timedelta(seconds=60)
        while datetime.now(UTC) < deadline:
            waiting = [d.waiting for d in station.journal.dockings() if d.waiting]
            if any("expiry" in w for w in waiting):
                break
            thread.join(0.1)
        assert any("expiry" in w for w in waiting), waiting
        assert thread.is_alive()  # not SAFE TO CLEAR while the expiry is pending
        sweep(
            app.catalog, app.signer, app.store, app.settings.retention, actor="sweeper", apply=True
        )
    finally:
        thread.join(60)
    assert result and result[0].state == "SAFE_TO_CLEAR"
    assert all(d.state in (J.SAFE_TO_CLEAR, J.CLEARED) for d in station.journal.dockings())
    station.close()
    with app.catalog.session() as s:
        again = s.get(Recording, video_id)
        assert again is not None and again.state == "STORED"
        assert app.store.exists(again.object_key)
        assert verify_chain(s).ok
    app.close()
