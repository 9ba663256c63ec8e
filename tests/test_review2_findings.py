# ruff: noqa: F811 (the fixture rec, imported, is a parameter here)
"""Reproductions of the second independent review (changes since dda95a9). Each test
asserts the correct behaviour and fails on the reviewed main."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Any

import pyotp
import pytest
from sqlalchemy import update
from starlette.testclient import TestClient

from access.accounts import LoginFailed, authenticate
from access.roles import Role
from access.totp_seal import sealer_of
from catalog import Catalog
from catalog.access_models import User
from tests.test_access_accounts import GOOD, POLICY, T0, add, attempts
from tests.test_web_pages import rec  # noqa: F401 (a fixture: 徐汇分局 recording)


def test_a_locked_account_is_no_password_oracle(catalog: Catalog) -> None:
    """While an account is locked its failures are not counted, so guesses are
    unlimited; the answer must then not tell the right password from a wrong one, or the
    lockout turns into an unlimited password oracle (the password is used once it opens)."""
    add(catalog, "alice", Role.REVIEWER)
    for i in range(POLICY.lockout_failures):
        with pytest.raises(LoginFailed), catalog.transaction() as s:
            authenticate(
                s, "alice", "wrong", source="t", now=T0 + timedelta(seconds=i), policy=POLICY
            )
    answers = {}
    # Many guesses while locked: none counted, each told apart from the right one.
    for n, guess in enumerate(["guess-1", "guess-2", "guess-3", "guess-4", "guess-5", GOOD]):
        with pytest.raises(LoginFailed) as refused, catalog.transaction() as s:
            authenticate(
                s,
                "alice",
                guess,
                source="t",
                now=T0 + timedelta(minutes=1, seconds=n),
                policy=POLICY,
            )
        answers[guess] = (refused.value.reason, refused.value.message)
    assert answers[GOOD] == answers["guess-1"], (
        "a locked account answers the right password differently from a wrong one: "
        f"{answers[GOOD]} vs {answers['guess-1']}"
    )
    assert len(attempts(catalog, "alice")) >= POLICY.lockout_failures + 6


def test_a_second_host_without_the_totp_key_does_not_lock_the_first_out(
    catalog: Catalog, tmp_path: Path
) -> None:
    """Two hosts share the catalog (docs/security.md); the second lacks keys/totp.key.
    sealer_of makes a new key there silently, and the first login on that host reseals a
    plain seed under it: the first host can no longer open the seed (SealError)."""
    uid = add(catalog, "admin", Role.SYSTEM_ADMIN)
    seed = pyotp.random_base32()
    with catalog.transaction() as s:  # a seed stored before sealing (plain)
        s.execute(update(User).where(User.id == uid).values(totp_secret=seed, totp_enabled=True))
    totp = pyotp.TOTP(seed)
    host_a, host_b = sealer_of(tmp_path / "a"), sealer_of(tmp_path / "b")
    at_b = T0 + timedelta(minutes=1)
    with catalog.transaction() as s:
        authenticate(
            s, "admin", GOOD, totp=totp.at(at_b), source="b", now=at_b, policy=POLICY, sealer=host_b
        )
    at_a = T0 + timedelta(minutes=5)
    with catalog.transaction() as s:
        who = authenticate(
            s, "admin", GOOD, totp=totp.at(at_a), source="a", now=at_a, policy=POLICY, sealer=host_a
        )
    assert who.login == "admin"


def test_the_security_administrator_cannot_reopen_a_disabled_account(catalog: Catalog) -> None:
    """Disable and enable are the system administrator's (三员分立); lock and unlock the
    security administrator's. change_state lets 'lock' turn DISABLED into LOCKED, and then
    'unlock' makes the account ACTIVE: the security administrator re-enabled it alone."""
    from access.accounts import StateConflict, change_state, get_user

    add(catalog, "bob", Role.REVIEWER)
    with catalog.transaction() as s:
        change_state(s, get_user(s, "bob"), "disable")  # the system administrator
    # The security administrator: lock, then unlock.
    with catalog.transaction() as s:
        try:
            change_state(s, get_user(s, "bob"), "lock")
            change_state(s, get_user(s, "bob"), "unlock")
        except StateConflict:
            pass  # refused: the correct behaviour
    with catalog.session() as s:
        assert get_user(s, "bob").state == "disabled"


def test_a_new_store_folder_is_made_durable_in_its_parent(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The first object of a content-key folder creates the folder (mkdir parents=True);
    the folder's own name lives in its parent, which make_durable never syncs: by POSIX a
    power cut may lose the folder, and the catalogued object with it. (LOW: pre-existing
    in adopt/put; ext4 and XFS journal the mkdir with the leaf's fsync in practice.)"""
    import storage.local
    from storage import content_key, digest_bytes

    synced: list[Path] = []
    real = storage.local.fsync_dir

    def fsync_dir(folder: Path | str) -> None:
        real(folder)
        synced.append(Path(folder))

    monkeypatch.setattr(storage.local, "fsync_dir", fsync_dir)
    store = storage.local.LocalStore(tmp_path / "objects")
    staged = tmp_path / "one.staged"
    staged.write_bytes(b"evidence")
    digest = digest_bytes(b"evidence")
    key = content_key(digest)
    leaf = (tmp_path / "objects" / key).parent
    assert not leaf.exists()
    store.put_file(key, staged, expected=digest, durable=False)
    store.make_durable([key])
    assert leaf in synced
    assert leaf.parent in synced, f"the new folder {leaf.name} is not synced into {leaf.parent}"


def test_a_recovery_code_logs_in_when_the_totp_key_does_not_open_the_seed(
    catalog: Catalog, tmp_path: Path
) -> None:
    """Recovery codes are the way back when the authenticator is lost. check_second_factor
    opens the seed first, whatever the code given: with the key file lost, moved or made
    anew (sealer_of makes one silently), every 2FA account, administrators included, is
    refused with SealError even with a recovery code, and `2fa reset` needs an
    administrator who can log in."""
    from access.accounts import confirm_totp, get_user, start_totp

    add(catalog, "admin", Role.SYSTEM_ADMIN)
    first_key = sealer_of(tmp_path / "first")
    with catalog.transaction() as s:
        user = get_user(s, "admin")
        uri = start_totp(s, user, sealer=first_key)
        seed = pyotp.parse_uri(uri).secret
        codes = confirm_totp(
            s, user, pyotp.TOTP(seed).at(T0), policy=POLICY, now=T0, sealer=first_key
        )
    other_key = sealer_of(tmp_path / "restored")  # keys/ not in the restored data dir
    later = T0 + timedelta(minutes=5)
    with catalog.transaction() as s:
        who = authenticate(
            s, "admin", GOOD, totp=codes[0], source="t", now=later, policy=POLICY,
            sealer=other_key,
        )  # fmt: skip
    assert who.login == "admin"


def test_the_custody_log_does_not_name_a_case_its_reader_may_not_see(app: Any, rec: int) -> None:
    """web/recordings._cases_of and api.recordings.hide_unseen_cases hide a case the
    reader may not see (case.view) on a recording page. A unit's archivist holds
    custody.view on their unit's recording, and the recording's custody log in the API
    (GET /api/v1/recordings/{id}/custody, which the page links to) names the same case,
    with the reason it was attached: the hidden case is told one request away."""
    from catalog.attach import attach_manual
    from catalog.cases import create_case
    from catalog.models import Recording
    from tests import test_web_pages as pages
    from tests.api_helpers import add_user
    from web.app import create_app

    rec_id = rec
    number = "沪静市监罚〔2026〕5号"
    reason = "线人举报内容核实"
    with app.catalog.transaction() as s:
        create_case(s, app.signer, number=number, title="涉密案件", unit="静安分局", actor="t")
        recording = s.get(Recording, rec_id)
        assert recording is not None
        attach_manual(
            s, app.signer, case_number=number, rec=recording, reason=reason, actor="t",
            policy=app.settings.retention,
        )  # fmt: skip
    add_user(app, "li", "archivist", unit=pages.UNIT)
    with TestClient(create_app(app.settings), follow_redirects=False) as web:
        pages._login(web, "li")
        assert web.get(f"/cases/{number}").status_code == 403  # not theirs to see
        page = web.get(f"/recordings/{rec_id}")
        assert page.status_code == 200, page.text
        custody = web.get(f"/api/v1/recordings/{rec_id}/custody")
        assert custody.status_code == 200, custody.text
    assert number not in page.text and reason not in page.text, "the page's custody table"
    assert number not in custody.text and reason not in custody.text, "the custody API"
