"""Who is asking, and may they: the one dependency every endpoint takes (``caller``).

A request proves who it is by ``Authorization: Bearer <secret>`` (an API token, or a
session secret such as ``liuhen login`` keeps) or by the session cookie a login over
``POST /api/v1/session`` sets (HttpOnly, SameSite=Strict, Secure over TLS). A cookie
request that changes something (POST, PATCH, PUT, DELETE) must also carry the CSRF token
the login answered, in ``X-CSRF-Token``: another site's page can make the browser send
the cookie, never read the token. There is no anonymous access, also not on an install
without accounts (the CLI's local operator has no network counterpart).

Permissions are decided by ``access.policy`` only: :meth:`Caller.authorize` asks it,
and a refusal becomes an ``access.denied`` audit event before the 403 goes out;
:meth:`Caller.audit` records the accesses of issue 15 point 4.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
from dataclasses import dataclass, field
from typing import Any, Final, NoReturn

from fastapi import Request
from sqlalchemy import ColumnElement
from sqlalchemy.orm import Session

from access import policy
from access.audit import playing_already, record_access
from access.policy import AccessDenied, Principal, Target
from access.roles import Permission
from api.context import ApiContext
from api.errors import ApiError
from config.i18n import _

SESSION_COOKIE: Final = "liuhen_session"
CSRF_COOKIE: Final = "liuhen_csrf"
CSRF_HEADER: Final = "X-CSRF-Token"
SAFE_METHODS: Final = frozenset({"GET", "HEAD", "OPTIONS"})


class NotAuthenticated(ApiError):
    http_status = 401

    def __init__(self, message: str, hint: str) -> None:
        super().__init__(message, hint=hint)
        self.headers = {"WWW-Authenticate": 'Bearer realm="liuhen"'}


def csrf_token(session_secret: str) -> str:
    """The CSRF token of a session: derived from its secret, so nothing more is stored
    and only who holds the secret (the logged-in browser, via the login answer) has it."""
    return hashlib.sha256(b"liuhen-csrf:" + session_secret.encode()).hexdigest()


def context(request: Request) -> ApiContext:
    ctx: ApiContext = request.app.state.ctx
    return ctx


def source_of(request: Request) -> str:
    return request.client.host if request.client else ""


@dataclass
class Caller:
    """The principal of one request, with what handlers ask about it."""

    ctx: ApiContext
    principal: Principal
    source: str
    # The recordings this request asked the policy about, as the policy sees them: a
    # page asks several times (its view, its player, its custody table) and each look-up
    # is five queries. One request sees one state of the recording.
    _recording_targets: dict[int, Target] = field(default_factory=dict, repr=False)

    @property
    def actor(self) -> str:
        return self.principal.actor

    def authorize(self, permission: str, target: Target | None = None) -> None:
        """Raise AccessDenied (403) unless the principal holds ``permission`` on
        ``target``; the refusal is audited first."""
        try:
            with self.ctx.catalog.session() as s:
                policy.authorize(s, self.principal, Permission(permission), target)
        except AccessDenied as exc:
            self.refuse(exc, permission, target)

    def refuse(self, exc: AccessDenied, permission: str, target: Target | None) -> NoReturn:
        """Audit a refusal the policy decided (``policy.authorize`` in a session of the
        handler's own), then raise it: called once that session is closed, so the
        audit's transaction never waits for a second connection while holding one."""
        kind = target.kind if target is not None else "system"
        ident = (target.id if target is not None else None) or permission
        self.audit("access.denied", kind, ident, result="denied", permission=permission)
        raise exc

    def allowed(self, permission: str, target: Target | None = None) -> bool:
        """Whether the principal holds ``permission`` (to shape an answer, not to refuse)."""
        with self.ctx.catalog.session() as s:
            return policy.allowed(s, self.principal, Permission(permission), target)

    def audit(
        self,
        action: str,
        object_type: str,
        object_id: int | str,
        *,
        result: str = "ok",
        **details: Any,
    ) -> None:
        """One access event (issue 15 point 4) in its own transaction: it stays recorded
        whatever becomes of the request."""
        with self.ctx.catalog.transaction() as s:
            record_access(
                s,
                self.ctx.signer,
                actor=self.actor,
                action=action,
                object_type=object_type,
                object_id=str(object_id),
                result=result,
                source=self.source or None,
                details={**details, "via": f"api:{self.principal.via}"},
            )

    def playing(self, rec_id: int) -> bool:
        """Whether this caller has a playback of the recording going (started within
        the last 30 minutes)."""
        with self.ctx.catalog.session() as s:
            return playing_already(s, self.actor, rec_id)

    def recording_target(self, rec_id: int, session: Session | None = None) -> Target:
        """The recording as the policy sees it (looked up once a request); ``session``:
        the handler's own, which then holds the recording's rows for what it shows."""
        found = self._recording_targets.get(rec_id)
        if found is None:
            if session is None:
                with self.ctx.catalog.session() as s:
                    found = policy.target_for_recording(s, rec_id)
            else:
                found = policy.target_for_recording(session, rec_id)
            self._recording_targets[rec_id] = found
        return found

    def case_target(self, number: str) -> Target:
        """The case as the policy sees it, found as people write its number."""
        from catalog.cases import CaseError, CaseNotFound, get_case

        with self.ctx.catalog.session() as s:
            # Not found: the handler says so, if the policy lets the caller ask.
            with contextlib.suppress(CaseNotFound, CaseError):
                number = get_case(s, number).number
            return policy.target_for_case(s, number)

    def scope(self, permission: str = "recording.view") -> ColumnElement[bool] | None:
        return policy.recording_scope(self.principal, Permission(permission))

    def case_scope(self) -> ColumnElement[bool] | None:
        return policy.case_scope(self.principal)


def caller(request: Request) -> Caller:
    """The dependency of every endpoint but login: the request's principal, or 401."""
    ctx = context(request)
    source = source_of(request)
    scheme, _sep, credential = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() == "bearer" and credential.strip():
        return Caller(ctx, _bearer(ctx, credential.strip()), source)
    secret = request.cookies.get(SESSION_COOKIE)
    if secret:
        if request.method not in SAFE_METHODS:
            _check_csrf(request, secret)
        return Caller(ctx, _session(ctx, secret), source)
    raise NotAuthenticated(
        _("log in first: this request carries no session and no API token"),
        hint=_(
            "send Authorization: Bearer <API token> (liuhen token issue), or log in with "
            "POST /api/v1/session"
        ),
    )


def _bearer(ctx: ApiContext, secret: str) -> Principal:
    from access.sessions import SESSION_PREFIX

    if secret.startswith(SESSION_PREFIX):
        return _session(ctx, secret)
    from access.sessions import principal_for_token

    with ctx.catalog.look_up() as s:
        return principal_for_token(s, secret, zone=ctx.zone)


def _session(ctx: ApiContext, secret: str) -> Principal:
    from access.sessions import principal_for_session

    with ctx.catalog.look_up() as s:
        return principal_for_session(s, secret, policy=ctx.settings.access)


def _check_csrf(request: Request, secret: str) -> None:
    sent = request.headers.get(CSRF_HEADER, "")
    if not hmac.compare_digest(sent.encode(), csrf_token(secret).encode()):
        raise ApiError(
            _("this request changes something and lacks the session's CSRF token"),
            hint=_("send the csrf_token the login answered in the X-CSRF-Token header"),
            status=403,
        )
