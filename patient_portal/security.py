"""Security headers, the Content-Security-Policy and the server-side session store.

The session cookie carries only a random token; the row keyed by its SHA-256 holds the owner,
the limits and the little state a session needs (the CSRF token). Rows can be revoked one by
one or all at once, which a signed cookie cannot (ASVS 7.4.1).
"""

from __future__ import annotations

import hashlib
import secrets
from datetime import datetime, timedelta
from typing import cast

import sqlalchemy as sa
from flask import Flask, Request, Response, request
from flask.sessions import SessionInterface, SessionMixin
from werkzeug.datastructures import CallbackDict

from patient_portal import clock
from patient_portal.accounts.models import AuthSession, Participant, StaffUser, owner_columns
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

# (idle, absolute) lifetimes by kind of owner, from DESIGN §2.
SESSION_LIMITS: dict[str, tuple[timedelta, timedelta]] = {
    "staff": (timedelta(minutes=30), timedelta(hours=12)),
    "participant": (timedelta(days=14), timedelta(days=90)),
    "anonymous": (timedelta(hours=12), timedelta(hours=12)),
}
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
        self.ended = False
        self.modified = False
        self.touched = False


class ServerSessionInterface(SessionInterface):
    def open_session(self, app: Flask, request: Request) -> ServerSession:
        token = request.cookies.get(self.get_cookie_name(app))
        if not token or len(token) > 100:
            return ServerSession()
        record = db.session.get(AuthSession, token_digest(token))
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
            response.delete_cookie(name, path="/", domain=self.get_cookie_domain(app))
            return
        now = clock.now()
        # Its own short transaction: the request's unit of work has committed or rolled back
        # by now, and session bookkeeping must never commit half of a failed request.
        statement: sa.Executable | None
        if session.record_id is None:
            if not session.modified:
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
            response.set_cookie(
                name,
                session.new_token,
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


def current_session_record(flask_session: SessionMixin) -> AuthSession | None:
    record_id = cast(ServerSession, flask_session).record_id
    if record_id is None:
        return None
    return db.session.get(AuthSession, record_id)


def set_security_headers(response: Response) -> Response:
    response.headers.setdefault("Content-Security-Policy", CONTENT_SECURITY_POLICY)
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["Referrer-Policy"] = "no-referrer"
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
            response.headers["Strict-Transport-Security"] = "max-age=63072000; includeSubDomains"
            return response
