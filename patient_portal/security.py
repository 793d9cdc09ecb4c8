"""Security headers, the Content-Security-Policy and the server-side session store.

The session cookie carries only a random token; the row keyed by its SHA-256 holds the owner,
the limits and the little state a session needs (the CSRF token, a ceremony's key). Rows can be
revoked one by one or all at once, which a signed cookie cannot (ASVS 7.4.1).

A visitor who has not started signing in has nothing to revoke: their CSRF token travels in a
signed cookie of the same name, and no row is written for them (a row per page view would let
anyone fill the table). The row is created when a passkey ceremony starts.
"""

from __future__ import annotations

import hashlib
import secrets
from datetime import datetime, timedelta
from typing import cast

import sqlalchemy as sa
from flask import Flask, Request, Response, request
from flask.sessions import SessionInterface, SessionMixin
from itsdangerous import BadSignature, URLSafeTimedSerializer
from sqlalchemy.orm import joinedload
from werkzeug.datastructures import CallbackDict

from patient_portal import clock
from patient_portal.accounts.models import (
    AuthSession,
    Participant,
    StaffUser,
    WebAuthnCeremony,
    owner_columns,
)
from patient_portal.extensions import db

CONTENT_SECURITY_POLICY = "; ".join(
    [
        "default-src 'self'",
        "script-src 'self'",
        "style-src 'self'",
        "img-src 'self' data:",
        "font-src 'self'",
        "connect-src 'self'",
        "manifest-src 'self'",
        "worker-src 'self'",
        "object-src 'none'",
        "base-uri 'none'",
        "form-action 'self'",
        "frame-ancestors 'none'",
    ]
)

# Two years, the subdomains too: the portal is only ever served over HTTPS (ASVS 3.4.1).
STRICT_TRANSPORT_SECURITY = "max-age=63072000; includeSubDomains"

# (idle, absolute) lifetimes by kind of owner, from DESIGN §2.
SESSION_LIMITS: dict[str, tuple[timedelta, timedelta]] = {
    "staff": (timedelta(minutes=30), timedelta(hours=12)),
    "participant": (timedelta(days=14), timedelta(days=90)),
    "anonymous": (timedelta(hours=12), timedelta(hours=12)),
}
# What an anonymous visitor's signed cookie may hold; anything more (a ceremony) needs a row.
ANONYMOUS_KEYS = frozenset({"csrf_token"})
# Writing last_seen on every request would turn every read into a write; a minute is precise
# enough for idle limits counted in minutes and days.
LAST_SEEN_RESOLUTION = timedelta(minutes=1)


def token_digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def owner_kind(owner: Participant | StaffUser | None) -> str:
    if owner is None:
        return "anonymous"
    return owner.kind


def session_is_live(record: AuthSession, now: datetime) -> bool:
    """Not revoked, not past its absolute end, not idle for longer than its owner may be."""
    if record.revoked_at is not None or record.expires_at <= now:
        return False
    idle, _ = SESSION_LIMITS[owner_kind(record.owner)]
    return now - record.last_seen_at < idle


class ServerSession(CallbackDict, SessionMixin):
    def __init__(self, initial: dict | None = None, record_id: str | None = None):
        def on_update(self: ServerSession) -> None:
            self.modified = True

        super().__init__(initial or {}, on_update)
        self.record_id = record_id
        self.record: AuthSession | None = None
        self.new_token: str | None = None
        # How long the cookie of a new token may live: the absolute limit of its owner's kind.
        self.lifetime = SESSION_LIMITS["anonymous"][1]
        self.ended = False
        self.modified = False
        self.touched = False


def _anonymous_serializer(app: Flask) -> URLSafeTimedSerializer:
    return URLSafeTimedSerializer(app.secret_key or "", salt="portal-anonymous-session")


def _anonymous_data(app: Flask, value: str) -> dict:
    """The signed cookie's data, if it is ours, recent and holds only what it may."""
    _, absolute = SESSION_LIMITS["anonymous"]
    try:
        data = _anonymous_serializer(app).loads(value, max_age=int(absolute.total_seconds()))
    except BadSignature:
        return {}
    if not isinstance(data, dict) or not set(data) <= ANONYMOUS_KEYS:
        return {}
    return data


# Loader options are immutable: built once, not for every request.
_WITH_OWNER = (joinedload(AuthSession.participant), joinedload(AuthSession.staff))


class ServerSessionInterface(SessionInterface):
    def open_session(self, app: Flask, request: Request) -> ServerSession:
        token = request.cookies.get(self.get_cookie_name(app))
        if not token or len(token) > 200:
            return ServerSession()
        if "." in token:
            # A signed anonymous cookie: server tokens are URL-safe base64, without dots.
            return ServerSession(_anonymous_data(app, token))
        # The row and its owner in one statement: every signed-in page needs both.
        record = db.session.get(AuthSession, token_digest(token), options=_WITH_OWNER)
        now = clock.now()
        if record is None or not session_is_live(record, now):
            return ServerSession()
        session = ServerSession(dict(record.data), record_id=record.id)
        # The identity map only holds weak references: keeping the row (and so its owner) alive
        # for the request lets the sign-in check find both without querying them again.
        session.record = record
        session.touched = now - record.last_seen_at >= LAST_SEEN_RESOLUTION
        return session

    def save_session(  # type: ignore[override]  # open_session only ever makes ServerSessions
        self, app: Flask, session: ServerSession, response: Response
    ) -> None:
        name = self.get_cookie_name(app)
        response.vary.add("Cookie")
        if session.ended:
            # With the attributes it was set with: a Secure cookie is only replaced by another.
            response.delete_cookie(
                name,
                path="/",
                domain=self.get_cookie_domain(app),
                secure=self.get_cookie_secure(app),
                httponly=True,
                samesite=self.get_cookie_samesite(app),
            )
            return
        now = clock.now()
        # Its own short transaction: the request's unit of work has committed or rolled back
        # by now, and session bookkeeping must never commit half of a failed request.
        statement: sa.Executable | None
        if session.record_id is None:
            if not session.modified:
                return
            if set(session) <= ANONYMOUS_KEYS:
                self._save_anonymous(app, session, response)
                return
            session.new_token = secrets.token_urlsafe(32)
            _, absolute = SESSION_LIMITS["anonymous"]
            statement = sa.insert(AuthSession).values(
                id=token_digest(session.new_token),
                data=dict(session),
                created_at=now,
                last_seen_at=now,
                expires_at=now + absolute,
                user_agent=request.user_agent.string[:200],
            )
        elif session.modified or session.touched:
            values: dict = {"last_seen_at": now}
            if session.modified:
                values["data"] = dict(session)
            statement = (
                sa.update(AuthSession).where(AuthSession.id == session.record_id).values(**values)
            )
        else:
            statement = None
        if statement is not None:
            with db.engine.begin() as connection:
                connection.execute(statement)
        if session.new_token:
            self._set_cookie(app, response, session.new_token, session.lifetime)

    def _save_anonymous(self, app: Flask, session: ServerSession, response: Response) -> None:
        _, absolute = SESSION_LIMITS["anonymous"]
        value = _anonymous_serializer(app).dumps(dict(session))
        self._set_cookie(app, response, value, absolute)

    def _set_cookie(self, app: Flask, response: Response, value: str, lifetime: timedelta) -> None:
        """A persistent cookie that lives as long as the session may (its absolute limit), so an
        installed app that drops session cookies keeps the participant signed in as promised."""
        response.set_cookie(
            self.get_cookie_name(app),
            value,
            max_age=int(lifetime.total_seconds()),
            httponly=True,
            secure=self.get_cookie_secure(app),
            samesite=self.get_cookie_samesite(app),
            path="/",
            domain=self.get_cookie_domain(app),
        )


def start_authenticated_session(
    flask_session: SessionMixin, owner: Participant | StaffUser
) -> AuthSession:
    """A new session row and token for this owner (never reuse the pre-login id); flushes."""
    session = cast(ServerSession, flask_session)
    now = clock.now()
    if session.record_id is not None:
        db.session.execute(sa.delete(AuthSession).where(AuthSession.id == session.record_id))
    _, absolute = SESSION_LIMITS[owner.kind]
    token = secrets.token_urlsafe(32)
    record = AuthSession(
        id=token_digest(token),
        created_at=now,
        last_seen_at=now,
        expires_at=now + absolute,
        user_agent=request.user_agent.string[:200],
        data={key: value for key, value in session.items() if key == "csrf_token"},
        **owner_columns(owner),
    )
    db.session.add(record)
    db.session.flush()
    session.record_id = record.id
    session.new_token = token
    session.lifetime = absolute
    return record


def end_session(session: ServerSession) -> None:
    """Revoke the current session row and drop the cookie; flushes."""
    if session.record_id is not None:
        db.session.execute(
            sa.update(AuthSession)
            .where(AuthSession.id == session.record_id)
            .values(revoked_at=clock.now())
        )
        db.session.flush()
    session.clear()
    session.ended = True


def purge_ended_sessions(now: datetime) -> tuple[int, int]:
    """Delete session rows that can never be used again, and expired ceremonies; flushes.

    A row ends when revoked, past its absolute end, or idle beyond its owner's limit. Sign-ins and
    sign-outs stay in the audit trail; the rows themselves are only the keys to live sessions.
    Returns how many sessions and ceremonies were deleted.
    """
    staff_idle, _ = SESSION_LIMITS["staff"]
    participant_idle, _ = SESSION_LIMITS["participant"]
    anonymous_idle, _ = SESSION_LIMITS["anonymous"]
    ended = sa.or_(
        AuthSession.revoked_at.is_not(None),
        AuthSession.expires_at <= now,
        sa.and_(AuthSession.staff_id.is_not(None), AuthSession.last_seen_at <= now - staff_idle),
        sa.and_(
            AuthSession.participant_id.is_not(None),
            AuthSession.last_seen_at <= now - participant_idle,
        ),
        sa.and_(
            AuthSession.staff_id.is_(None),
            AuthSession.participant_id.is_(None),
            AuthSession.last_seen_at <= now - anonymous_idle,
        ),
    )
    sessions = db.session.execute(sa.delete(AuthSession).where(ended))
    ceremonies = db.session.execute(
        sa.delete(WebAuthnCeremony).where(WebAuthnCeremony.expires_at <= now)
    )
    db.session.flush()
    return sessions.rowcount, ceremonies.rowcount  # type: ignore[attr-defined]


def current_session_record(flask_session: SessionMixin) -> AuthSession | None:
    record_id = cast(ServerSession, flask_session).record_id
    if record_id is None:
        return None
    return db.session.get(AuthSession, record_id)


def set_security_headers(response: Response) -> Response:
    response.headers.setdefault("Content-Security-Policy", CONTENT_SECURITY_POLICY)
    response.headers["X-Content-Type-Options"] = "nosniff"
    # Same-origin requests keep their Referer (and a meaningful Origin: under no-referrer a
    # browser's POST says `Origin: null`), other sites get nothing (docs/security.md).
    response.headers["Referrer-Policy"] = "same-origin"
    response.headers["X-Frame-Options"] = "DENY"
    response.headers["Cross-Origin-Opener-Policy"] = "same-origin"
    response.headers["Permissions-Policy"] = "camera=(), microphone=(), geolocation=()"
    # Everything Flask renders may hold health data or a CSRF token: never stored by a browser
    # or a proxy (ASVS 14.3.2). Static files are served before Flask, with their own caching.
    response.headers.setdefault("Cache-Control", "no-store")
    # The same URL answers a full page or a fragment, depending on HX-Request.
    response.vary.add("HX-Request")
    return response


def init_app(app: Flask) -> None:
    app.session_interface = ServerSessionInterface()
    app.after_request(set_security_headers)
    if app.config["PORTAL_HSTS"]:

        @app.after_request
        def strict_transport(response: Response) -> Response:
            response.headers["Strict-Transport-Security"] = STRICT_TRANSPORT_SECURITY
            return response
