"""People who use the portal and how they prove who they are.

Participants are pseudonymous: a study ID, a site, a language and day 0. No name, no birth date.
"""

from __future__ import annotations

from datetime import date, datetime

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column, relationship

from patient_portal import audit, clock
from patient_portal.db import UTCDateTime
from patient_portal.extensions import db

PARTICIPANT_STATUSES = ("enrolled", "active", "withdrawn", "completed")
STAFF_ROLES = ("coordinator", "admin")
# Why a coordinator issues a new enrolment link to a participant who already has a passkey.
REPLACEMENT_REASONS = ("lost_or_stolen", "new_device", "cannot_sign_in", "other")

# A passkey, an enrolment token, a session and a ceremony each belong to exactly one owner.
_ONE_OWNER = "(participant_id IS NULL) <> (staff_id IS NULL)"


def owner_columns(owner: Participant | StaffUser) -> dict[str, int]:
    """The owner columns of a new passkey, enrolment token, session or ceremony."""
    return {"participant_id": owner.id} if owner.kind == "participant" else {"staff_id": owner.id}


class OwnedRow:
    """A passkey, an enrolment token or a session: it belongs to a participant or a staff member
    (an anonymous session to nobody)."""

    participant: Participant | None
    staff: StaffUser | None

    @property
    def owner(self) -> Participant | StaffUser | None:
        return self.participant or self.staff


class OwnedByOne(OwnedRow):
    """A passkey or an enrolment token: its table's check constraint gives it exactly one owner."""

    @property
    def owner(self) -> Participant | StaffUser:
        owner = self.participant or self.staff
        if owner is None:
            raise LookupError(f"{type(self).__name__} without an owner breaks the one_owner check")
        return owner


def owned_by(model, owner: Participant | StaffUser) -> sa.ColumnElement[bool]:
    """The rows of `model` (a passkey, enrolment token, session or ceremony) that are the owner's."""
    column = model.participant_id if owner.kind == "participant" else model.staff_id
    return column == owner.id


class Participant(db.Model):
    __tablename__ = "participant"

    id: Mapped[int] = mapped_column(primary_key=True)
    study_id: Mapped[str] = mapped_column(sa.String(20), unique=True)
    site_code: Mapped[str] = mapped_column(sa.String(10), index=True)
    language: Mapped[str] = mapped_column(sa.String(2))
    day0: Mapped[date | None] = mapped_column(sa.Date)
    status: Mapped[str] = mapped_column(sa.String(12), default="enrolled")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=clock.now)
    # The latest moment the home page may have a notice to show: an in-app reminder delivered
    # (set by the dispatcher to its expiry) or a device added from a replacement link (set
    # for NEW_DEVICE_NOTICE_FOR). Before it, home looks for them; after it there is nothing to
    # look for, and the page saves the queries. An upper bound, never the notices themselves.
    home_notices_until: Mapped[datetime | None] = mapped_column(UTCDateTime())

    passkeys: Mapped[list[PasskeyCredential]] = relationship(
        back_populates="participant", order_by="PasskeyCredential.id"
    )

    __table_args__ = (
        sa.CheckConstraint("language IN ('fr', 'en')", name="language"),
        sa.CheckConstraint(
            "status IN ('enrolled', 'active', 'withdrawn', 'completed')", name="status"
        ),
    )

    kind = "participant"

    # Flask-Login protocol: a participant is always an authenticated user once loaded.
    is_authenticated = True
    is_anonymous = False

    @property
    def is_active(self) -> bool:
        return self.status != "withdrawn"

    def get_id(self) -> str:
        return f"p:{self.id}"

    @property
    def is_staff(self) -> bool:
        return False

    @property
    def audit_name(self) -> str:
        return f"participant:{self.study_id}"

    @property
    def audit_stream(self) -> str:
        """The audit chain of everything about this participant, whoever acts."""
        return audit.participant_stream(self.study_id)


class StaffUser(db.Model):
    __tablename__ = "staff_user"

    id: Mapped[int] = mapped_column(primary_key=True)
    email: Mapped[str] = mapped_column(sa.String(254), unique=True)
    name: Mapped[str] = mapped_column(sa.String(120))
    role: Mapped[str] = mapped_column(sa.String(12))
    language: Mapped[str] = mapped_column(sa.String(2), default="fr")
    active: Mapped[bool] = mapped_column(default=True)
    # Alerts past their response target are escalated to the site's investigators.
    investigator: Mapped[bool] = mapped_column(default=False, server_default=sa.false())
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=clock.now)

    site_links: Mapped[list[StaffSite]] = relationship(
        back_populates="staff", cascade="all, delete-orphan", order_by="StaffSite.site_code"
    )
    passkeys: Mapped[list[PasskeyCredential]] = relationship(
        back_populates="staff", order_by="PasskeyCredential.id"
    )

    __table_args__ = (
        sa.CheckConstraint("role IN ('coordinator', 'admin')", name="role"),
        sa.CheckConstraint("language IN ('fr', 'en')", name="language"),
    )

    kind = "staff"
    is_authenticated = True
    is_anonymous = False

    @property
    def is_active(self) -> bool:
        return self.active

    def get_id(self) -> str:
        return f"s:{self.id}"

    @property
    def is_staff(self) -> bool:
        return True

    @property
    def is_admin(self) -> bool:
        return self.role == "admin"

    @property
    def site_codes(self) -> list[str]:
        return [link.site_code for link in self.site_links]

    @property
    def audit_name(self) -> str:
        return f"staff:{self.email}"

    @property
    def audit_stream(self) -> str:
        return audit.STAFF_STREAM


class StaffSite(db.Model):
    """The sites a coordinator works at; admins see every site whatever is listed here."""

    __tablename__ = "staff_site"

    staff_id: Mapped[int] = mapped_column(
        sa.ForeignKey("staff_user.id", ondelete="CASCADE"), primary_key=True
    )
    site_code: Mapped[str] = mapped_column(sa.String(10), primary_key=True)

    staff: Mapped[StaffUser] = relationship(back_populates="site_links")


class PasskeyCredential(OwnedByOne, db.Model):
    __tablename__ = "passkey_credential"

    id: Mapped[int] = mapped_column(primary_key=True)
    participant_id: Mapped[int | None] = mapped_column(sa.ForeignKey("participant.id"), index=True)
    staff_id: Mapped[int | None] = mapped_column(sa.ForeignKey("staff_user.id"), index=True)
    credential_id: Mapped[bytes] = mapped_column(sa.LargeBinary(1023), unique=True)
    public_key: Mapped[bytes] = mapped_column(sa.LargeBinary)
    sign_count: Mapped[int] = mapped_column(sa.BigInteger, default=0)
    transports: Mapped[list[str]] = mapped_column(sa.JSON, default=list)
    device_type: Mapped[str] = mapped_column(sa.String(20), default="single_device")
    backed_up: Mapped[bool] = mapped_column(default=False)
    aaguid: Mapped[str] = mapped_column(sa.String(36), default="")
    nickname: Mapped[str] = mapped_column(sa.String(60), default="")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=clock.now)
    last_used_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    # The enrolment link it was registered from (none when added from the settings page).
    enrolment_token_id: Mapped[int | None] = mapped_column(sa.ForeignKey("enrolment_token.id"))
    # When the participant put away the home page's "a new device was added" notice.
    notice_dismissed_at: Mapped[datetime | None] = mapped_column(UTCDateTime())

    participant: Mapped[Participant | None] = relationship(back_populates="passkeys")
    staff: Mapped[StaffUser | None] = relationship(back_populates="passkeys")
    enrolment_token: Mapped[EnrolmentToken | None] = relationship()

    @property
    def from_replacement_link(self) -> bool:
        """Registered from a link issued while the participant already had a passkey."""
        return self.enrolment_token is not None and self.enrolment_token.is_replacement

    __table_args__ = (sa.CheckConstraint(_ONE_OWNER, name="one_owner"),)


class EnrolmentToken(OwnedByOne, db.Model):
    """A single-use link that lets its owner register a passkey. Only the hash is stored."""

    __tablename__ = "enrolment_token"

    id: Mapped[int] = mapped_column(primary_key=True)
    participant_id: Mapped[int | None] = mapped_column(sa.ForeignKey("participant.id"), index=True)
    staff_id: Mapped[int | None] = mapped_column(sa.ForeignKey("staff_user.id"), index=True)
    token_hash: Mapped[str] = mapped_column(sa.String(64), unique=True)
    issued_by_id: Mapped[int | None] = mapped_column(sa.ForeignKey("staff_user.id"))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=clock.now)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime())
    used_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    # A replacement link (the participant already had a passkey) states why it was issued:
    # one of REPLACEMENT_REASONS, and an optional note.
    replacement_reason: Mapped[str | None] = mapped_column(sa.String(20))
    replacement_note: Mapped[str | None] = mapped_column(sa.String(500))

    participant: Mapped[Participant | None] = relationship(foreign_keys=[participant_id])
    staff: Mapped[StaffUser | None] = relationship(foreign_keys=[staff_id])
    issued_by: Mapped[StaffUser | None] = relationship(foreign_keys=[issued_by_id])

    __table_args__ = (sa.CheckConstraint(_ONE_OWNER, name="one_owner"),)

    @property
    def is_replacement(self) -> bool:
        return self.replacement_reason is not None


class AuthSession(OwnedRow, db.Model):
    """A server-side session: the cookie holds a random token, this row holds its SHA-256.

    Anonymous rows (no owner) carry only the CSRF token; signing in always starts a new row.
    """

    __tablename__ = "auth_session"

    id: Mapped[str] = mapped_column(sa.String(64), primary_key=True)
    participant_id: Mapped[int | None] = mapped_column(sa.ForeignKey("participant.id"), index=True)
    staff_id: Mapped[int | None] = mapped_column(sa.ForeignKey("staff_user.id"), index=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=clock.now)
    last_seen_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=clock.now)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime(), index=True)
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    user_agent: Mapped[str] = mapped_column(sa.String(200), default="")
    data: Mapped[dict] = mapped_column(sa.JSON, default=dict)

    participant: Mapped[Participant | None] = relationship()
    staff: Mapped[StaffUser | None] = relationship()

    __table_args__ = (
        sa.CheckConstraint("participant_id IS NULL OR staff_id IS NULL", name="at_most_one_owner"),
    )


class WebAuthnCeremony(db.Model):
    """Registration or authentication options waiting for the browser's answer.

    Kept server-side with a short lifetime and deleted before verification, so a challenge
    can be answered once at most.
    """

    __tablename__ = "webauthn_ceremony"

    id: Mapped[str] = mapped_column(sa.String(64), primary_key=True)
    purpose: Mapped[str] = mapped_column(sa.String(20))
    challenge: Mapped[bytes] = mapped_column(sa.LargeBinary(128))
    participant_id: Mapped[int | None] = mapped_column(
        sa.ForeignKey("participant.id", ondelete="CASCADE")
    )
    staff_id: Mapped[int | None] = mapped_column(sa.ForeignKey("staff_user.id", ondelete="CASCADE"))
    enrolment_token_id: Mapped[int | None] = mapped_column(sa.ForeignKey("enrolment_token.id"))
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime(), index=True)

    __table_args__ = (
        sa.CheckConstraint("purpose IN ('registration', 'authentication')", name="purpose"),
    )


class StudyIdCounter(db.Model):
    """The last study ID number given at a site: one row per site, incremented in place so that
    two enrolments at once are serialised on this row (see services.next_study_id)."""

    __tablename__ = "study_id_counter"

    site_code: Mapped[str] = mapped_column(sa.String(10), primary_key=True)
    last_number: Mapped[int] = mapped_column()
