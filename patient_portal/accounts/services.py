"""Accounts use cases: enrolment links, passkey ceremonies, sessions and staff.

Services flush and never commit; the view that calls them commits once.
"""

from __future__ import annotations

import hashlib
import json
import secrets
from dataclasses import dataclass
from datetime import date, timedelta
from typing import cast

import sqlalchemy as sa
from flask import current_app
from flask_babel import gettext as _
from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from webauthn import (
    base64url_to_bytes,
    generate_authentication_options,
    generate_registration_options,
    options_to_json,
    verify_authentication_response,
    verify_registration_response,
)
from webauthn.helpers.exceptions import (
    InvalidAuthenticationResponse,
    InvalidJSONStructure,
    WebAuthnException,
)
from webauthn.helpers.structs import (
    AuthenticatorSelectionCriteria,
    AuthenticatorTransport,
    PublicKeyCredentialDescriptor,
    ResidentKeyRequirement,
    UserVerificationRequirement,
)

from patient_portal import audit, clock, signals
from patient_portal.accounts.models import (
    REPLACEMENT_REASONS,
    STAFF_ROLES,
    AuthSession,
    EnrolmentToken,
    Participant,
    PasskeyCredential,
    StaffSite,
    StaffUser,
    StudyIdCounter,
    WebAuthnCeremony,
    owned_by,
    owner_columns,
)
from patient_portal.errors import PortalError
from patient_portal.extensions import db
from patient_portal.i18n import LANGUAGES
from patient_portal.protocol.services import get_protocol
from patient_portal.security import token_digest

ENROLMENT_LIFETIME = timedelta(hours=72)
CEREMONY_LIFETIME = timedelta(minutes=5)
TOKEN_BYTES = 32  # 256 random bits; the design asks for at least 128.
MAX_CREDENTIAL_JSON = 16_384
WITHDRAWAL_REASON_MAX = 500
REPLACEMENT_NOTE_MAX = 500

Owner = Participant | StaffUser


class SignInFailed(PortalError):
    """One message for every sign-in failure, so nobody can learn which accounts exist."""

    def __init__(self) -> None:
        super().__init__(
            _(
                "We could not sign you in with this passkey. Please try again, or ask your study team for a new link."
            )
        )


# --- participants and staff -------------------------------------------------------------------


def next_study_id(site_code: str) -> str:
    """The next study ID of a site: JGH-001, JGH-002…, never the same one twice.

    Two coordinators enrolling at one site at once each get their own number: the site's counter
    row is incremented by one UPDATE, which PostgreSQL's row lock and SQLite's write lock
    serialise, so the second increments the number the first committed. The counter never goes
    below the highest study ID already given (the demo's participants, or those enrolled before
    the counter existed).
    """
    prefix = get_protocol().site(site_code).study_id_prefix
    existing = db.session.scalars(
        sa.select(Participant.study_id).where(Participant.site_code == site_code)
    ).all()
    numbers = [int(s.rsplit("-", 1)[1]) for s in existing if s.rsplit("-", 1)[-1].isdigit()]
    highest = max(numbers, default=0)
    insert = (
        postgresql_insert if db.session.get_bind().dialect.name == "postgresql" else sqlite_insert
    )
    db.session.execute(
        insert(StudyIdCounter)
        .values(site_code=site_code, last_number=highest)
        .on_conflict_do_nothing(index_elements=["site_code"])
    )
    counter = StudyIdCounter.last_number
    number = db.session.execute(
        sa.update(StudyIdCounter)
        .where(StudyIdCounter.site_code == site_code)
        .values(last_number=sa.case((counter >= highest, counter), else_=highest) + 1)
        .returning(counter)
        .execution_options(synchronize_session=False)
    ).scalar_one()
    return f"{prefix}-{number:03d}"


def enrol_participant(
    site_code: str, language: str, day0: date | None, issued_by: StaffUser
) -> tuple[Participant, str]:
    """Create a pseudonymous participant and their first enrolment link; returns the raw token."""
    if site_code not in get_protocol().sites:
        raise PortalError(_("Please choose one of your sites."), 422)
    if language not in LANGUAGES:
        raise PortalError(_("Please choose French or English."), 422)
    participant = Participant(
        study_id=next_study_id(site_code),
        site_code=site_code,
        language=language,
        day0=day0,
        status="enrolled",
    )
    db.session.add(participant)
    db.session.flush()
    audit.record(
        "participant.enrolled",
        "participant",
        participant.study_id,
        after={"site": site_code, "language": language, "day0": day0},
        stream=participant.audit_stream,
    )
    signals.participant_changed.send(participant)
    return participant, issue_enrolment_link(participant, issued_by)


def create_staff(
    email: str, name: str, role: str, site_codes: list[str], issued_by: StaffUser | None
) -> tuple[StaffUser, str]:
    """Create a staff account and its enrolment link; returns the raw token."""
    email = email.strip().lower()
    if "@" not in email or len(email) > 254 or any(c.isspace() for c in email):
        raise PortalError(_("Please enter a valid e-mail address."), 422)
    if not name.strip() or len(name) > 120:
        raise PortalError(_("Please enter a name of at most 120 characters."), 422)
    sites = _checked_role_and_sites(role, site_codes)
    if db.session.scalar(sa.select(StaffUser.id).where(StaffUser.email == email)):
        raise PortalError(_("A staff account with this e-mail address already exists."), 409)
    staff = StaffUser(
        email=email,
        name=name.strip(),
        role=role,
        site_links=[StaffSite(site_code=code) for code in sites],
    )
    db.session.add(staff)
    db.session.flush()
    audit.record(
        "staff.created",
        "staff",
        staff.email,
        after={"name": staff.name, "role": role, "sites": staff.site_codes},
    )
    return staff, issue_enrolment_link(staff, issued_by)


def _checked_role_and_sites(role: str, site_codes: list[str]) -> list[str]:
    """A staff member's role and sites as an admin chose them, sorted; a coordinator needs a site.

    One check for a new account and for a change, so neither can give what the other refuses.
    """
    if role not in STAFF_ROLES:
        raise PortalError(_("Please choose a role."), 422)
    unknown = [code for code in site_codes if code not in get_protocol().sites]
    if unknown or (role == "coordinator" and not site_codes):
        raise PortalError(_("Please choose at least one known site."), 422)
    return sorted(set(site_codes))


def update_staff(member: StaffUser, role: str, site_codes: list[str], by: StaffUser) -> bool:
    """Set a staff member's role and sites, audited; False when nothing changed."""
    sites = _checked_role_and_sites(role, site_codes)
    if member.id == by.id and role != "admin":
        raise PortalError(_("You cannot remove your own administrator role."), 409)
    before = {"role": member.role, "sites": member.site_codes}
    if before == {"role": role, "sites": sites}:
        return False
    member.role = role
    member.site_links = [StaffSite(site_code=code) for code in sites]
    db.session.flush()
    audit.record(
        "staff.updated",
        "staff",
        member.email,
        before=before,
        after={"role": role, "sites": sites},
        actor=by.audit_name,
    )
    return True


def set_staff_investigator(member: StaffUser, investigator: bool, by: StaffUser) -> bool:
    """Mark a staff member as an investigator of their sites (alerts past their response
    target are escalated to them), audited; False when nothing changed."""
    if member.investigator == investigator:
        return False
    member.investigator = investigator
    db.session.flush()
    audit.record(
        "staff.investigator",
        "staff",
        member.email,
        before={"investigator": not investigator},
        after={"investigator": investigator},
        actor=by.audit_name,
    )
    return True


def set_staff_active(member: StaffUser, active: bool, by: StaffUser) -> bool:
    """Deactivate (signed out everywhere, links stopped) or reactivate a staff account, audited."""
    if member.id == by.id:
        raise PortalError(_("You cannot deactivate your own account."), 409)
    if member.active == active:
        return False
    member.active = active
    if not active:
        end_all_sessions(member, reason="account deactivated")
        revoke_enrolment_links(member)
    db.session.flush()
    audit.record(
        "staff.activated" if active else "staff.deactivated",
        "staff",
        member.email,
        before={"active": not active},
        after={"active": active},
        actor=by.audit_name,
    )
    return True


def withdraw_participant(participant: Participant, staff: StaffUser, reason: str) -> int:
    """Withdraw a participant: questionnaires not done are closed, reminders stop, data stays.

    The participant is signed out and unused enrolment links stop; every feature closes its
    own rows on `participant_withdrawn`, and may return counts for the audit event.
    Returns how many questionnaires were closed.
    """
    reason = (reason or "").strip()
    if not reason:
        raise PortalError(_("Please give the reason for the withdrawal."), 422)
    if len(reason) > WITHDRAWAL_REASON_MAX:
        raise PortalError(_("Please give a reason of at most 500 characters."), 422)
    if participant.status == "withdrawn":
        raise PortalError(_("This participant has already withdrawn."), 409)
    before = participant.status
    participant.status = "withdrawn"
    counts: dict[str, int] = {}
    for _receiver, outcome in signals.participant_withdrawn.send(participant):
        if isinstance(outcome, dict):
            counts.update(outcome)
    end_all_sessions(participant, reason="participant withdrawn")
    revoke_enrolment_links(participant)
    db.session.flush()
    audit.record(
        "participant.withdrawn",
        "participant",
        participant.study_id,
        before={"status": before},
        after={"status": "withdrawn", **counts},
        reason=reason,
        actor=staff.audit_name,
        stream=participant.audit_stream,
    )
    return counts.get("questionnaires_closed", 0)


# --- enrolment links ---------------------------------------------------------------------------


def replacement_reason_label(code: str) -> str:
    """A replacement link's reason as staff read it."""
    return {
        "lost_or_stolen": _("Phone lost or stolen"),
        "new_device": _("New phone or device"),
        "cannot_sign_in": _("The passkey no longer works"),
        "other": _("Other reason"),
    }[code]


def _checked_replacement(owner: Owner, reason: str | None, note: str) -> tuple[str, str] | None:
    """(reason, note) of a link for a participant who already has a passkey, else None.

    Such a link lets whoever holds it add a device to the participant's account, the coordinator
    included, so it needs a stated reason; the participant is told when it is used.
    """
    if owner.kind != "participant" or not owner.passkeys:
        return None
    if reason not in REPLACEMENT_REASONS:
        raise PortalError(
            _("This participant already has a passkey: please choose why a new link is needed."),
            422,
            "reason",
        )
    note = note.strip()
    if len(note) > REPLACEMENT_NOTE_MAX:
        raise PortalError(_("Please keep the note under 500 characters."), 422, "note")
    return reason, note


def issue_enrolment_link(
    owner: Owner,
    issued_by: StaffUser | None,
    *,
    revoke_passkeys: bool = False,
    reason: str | None = None,
    note: str = "",
) -> str:
    """A fresh single-use link for the owner: earlier links stop working and sessions end.

    A link for a participant who already has a passkey is a replacement link: it needs one of
    REPLACEMENT_REASONS (and may carry a note), checked before anything changes.
    """
    replacement = _checked_replacement(owner, reason, note)
    now = clock.now()
    for token in db.session.scalars(
        sa.select(EnrolmentToken).where(
            owned_by(EnrolmentToken, owner),
            EnrolmentToken.used_at.is_(None),
            EnrolmentToken.revoked_at.is_(None),
        )
    ):
        token.revoked_at = now
    end_all_sessions(owner, reason="new enrolment link")
    if revoke_passkeys:
        for passkey in list(owner.passkeys):
            db.session.delete(passkey)
            audit.record(
                "passkey.removed",
                "passkey",
                passkey.id,
                before={"owner": owner.audit_name},
                reason="revoked with a new enrolment link",
                stream=owner.audit_stream,
            )
    raw = secrets.token_urlsafe(TOKEN_BYTES)
    token = EnrolmentToken(
        token_hash=token_digest(raw),
        created_at=now,
        expires_at=now + ENROLMENT_LIFETIME,
        issued_by_id=issued_by.id if issued_by else None,
        replacement_reason=replacement[0] if replacement else None,
        replacement_note=(replacement[1] or None) if replacement else None,
        **owner_columns(owner),
    )
    db.session.add(token)
    db.session.flush()
    audit.record(
        "enrolment.issued",
        "enrolment_token",
        token.id,
        after={
            "owner": owner.audit_name,
            "expires_at": token.expires_at,
            "revoke_passkeys": revoke_passkeys,
            "replacement": replacement is not None,
        },
        reason=": ".join(part for part in replacement if part) if replacement else None,
        stream=owner.audit_stream,
    )
    return raw


def replacement_links(participant: Participant) -> list[EnrolmentToken]:
    """The replacement links issued to the participant, newest first (their staff page)."""
    return list(
        db.session.scalars(
            sa.select(EnrolmentToken)
            .where(
                owned_by(EnrolmentToken, participant),
                EnrolmentToken.replacement_reason.is_not(None),
            )
            .order_by(EnrolmentToken.created_at.desc(), EnrolmentToken.id.desc())
        )
    )


def enrolment_url(raw_token: str) -> str:
    """The absolute link, built from the configured origin and never from request headers."""
    # Commands print links too, outside any request, so the path is built here, not by url_for.
    return f"{current_app.config['PORTAL_ORIGIN']}/enrol/{raw_token}"


def revoke_enrolment_links(owner: Owner) -> int:
    """Stop every unused link of the owner; returns how many."""
    now = clock.now()
    tokens = db.session.scalars(
        sa.select(EnrolmentToken).where(
            owned_by(EnrolmentToken, owner),
            EnrolmentToken.used_at.is_(None),
            EnrolmentToken.revoked_at.is_(None),
        )
    ).all()
    for token in tokens:
        token.revoked_at = now
        audit.record(
            "enrolment.revoked",
            "enrolment_token",
            token.id,
            after={"owner": owner.audit_name},
            stream=owner.audit_stream,
        )
    db.session.flush()
    return len(tokens)


def usable_enrolment_token(raw_token: str) -> EnrolmentToken:
    """The token behind a link, or a PortalError saying plainly why it cannot be used."""
    if not raw_token or len(raw_token) > 100:
        raise PortalError(
            _("This link is not valid. Please ask your study team for a new link."), 404
        )
    token = db.session.scalar(
        sa.select(EnrolmentToken).where(EnrolmentToken.token_hash == token_digest(raw_token))
    )
    if token is None or token.revoked_at is not None:
        raise PortalError(
            _("This link is not valid. Please ask your study team for a new link."), 404
        )
    if token.used_at is not None:
        raise PortalError(
            _(
                "This link has already been used. Please sign in, or ask your study team for a new link."
            ),
            410,
        )
    if token.expires_at <= clock.now():
        raise PortalError(
            _("This link has expired. Please ask your study team for a new link."), 410
        )
    if not token.owner.is_active:
        raise PortalError(
            _("This link is not valid. Please ask your study team for a new link."), 404
        )
    return token


# --- passkey ceremonies ------------------------------------------------------------------------


def _rp() -> tuple[str, str, str]:
    config = current_app.config
    return config["PORTAL_RP_ID"], config["PORTAL_RP_NAME"], config["PORTAL_ORIGIN"]


def _user_handle(owner: Owner) -> bytes:
    # A stable, opaque handle: the study ID or e-mail never leaves the server inside a passkey.
    return hashlib.sha256(f"{current_app.config['SECRET_KEY']}:{owner.get_id()}".encode()).digest()[
        :32
    ]


def _store_ceremony(
    purpose: str, challenge: bytes, owner: Owner | None, token: EnrolmentToken | None
) -> str:
    now = clock.now()
    # Old ceremonies are useless; clearing them here keeps the table small without a cron job.
    db.session.execute(sa.delete(WebAuthnCeremony).where(WebAuthnCeremony.expires_at <= now))
    key = secrets.token_urlsafe(24)
    db.session.add(
        WebAuthnCeremony(
            id=token_digest(key),
            purpose=purpose,
            challenge=challenge,
            expires_at=now + CEREMONY_LIFETIME,
            enrolment_token_id=token.id if token else None,
            **(owner_columns(owner) if owner else {}),
        )
    )
    db.session.flush()
    return key


def _take_ceremony(key: str | None, purpose: str) -> WebAuthnCeremony | None:
    """Load and delete the ceremony in one step: a challenge is answered once at most."""
    if not key:
        return None
    ceremony = db.session.get(WebAuthnCeremony, token_digest(key))
    if ceremony is None:
        return None
    db.session.delete(ceremony)
    db.session.flush()
    if ceremony.purpose != purpose or ceremony.expires_at <= clock.now():
        return None
    return ceremony


def registration_options(owner: Owner, token: EnrolmentToken | None = None) -> tuple[str, str]:
    """Options for navigator.credentials.create(); returns (ceremony key, options JSON)."""
    rp_id, rp_name, _origin = _rp()
    name = owner.study_id if owner.kind == "participant" else owner.email
    options = generate_registration_options(
        rp_id=rp_id,
        rp_name=rp_name,
        user_id=_user_handle(owner),
        user_name=name,
        user_display_name=f"CARE-SSc {name}",
        authenticator_selection=AuthenticatorSelectionCriteria(
            resident_key=ResidentKeyRequirement.REQUIRED,
            user_verification=UserVerificationRequirement.REQUIRED,
        ),
        exclude_credentials=[
            PublicKeyCredentialDescriptor(id=p.credential_id) for p in owner.passkeys
        ],
    )
    key = _store_ceremony("registration", options.challenge, owner, token)
    return key, options_to_json(options)


def _parse_credential(credential_json: str) -> dict:
    if not credential_json or len(credential_json) > MAX_CREDENTIAL_JSON:
        raise ValueError("empty or too large")
    parsed = json.loads(credential_json)
    if not isinstance(parsed, dict):
        raise ValueError("not an object")
    return parsed


def finish_registration(
    ceremony_key: str | None, credential_json: str, nickname: str = ""
) -> PasskeyCredential:
    """Verify the browser's answer and store the passkey; an enrolment link is used up here."""
    ceremony = _take_ceremony(ceremony_key, "registration")
    failure = PortalError(_("The passkey could not be created. Please try again."), 400)
    if ceremony is None:
        raise failure
    owner = (
        db.session.get(Participant, ceremony.participant_id)
        if ceremony.participant_id
        else db.session.get(StaffUser, ceremony.staff_id)
    )
    token = (
        db.session.get(EnrolmentToken, ceremony.enrolment_token_id)
        if ceremony.enrolment_token_id
        else None
    )
    if owner is None or not owner.is_active:
        raise failure
    if token is not None and (
        token.used_at is not None or token.revoked_at is not None or token.expires_at <= clock.now()
    ):
        raise failure
    rp_id, _name, origin = _rp()
    try:
        verified = verify_registration_response(
            credential=_parse_credential(credential_json),
            expected_challenge=ceremony.challenge,
            expected_rp_id=rp_id,
            expected_origin=origin,
            require_user_verification=True,
        )
    except (WebAuthnException, InvalidJSONStructure, ValueError, KeyError, TypeError):
        raise failure from None
    if db.session.scalar(
        sa.select(PasskeyCredential.id).where(
            PasskeyCredential.credential_id == verified.credential_id
        )
    ):
        raise failure
    if token is not None:
        _claim_enrolment_token(token)
    transports = _parse_credential(credential_json).get("response", {}).get("transports") or []
    known = {t.value for t in AuthenticatorTransport}
    passkey = PasskeyCredential(
        credential_id=verified.credential_id,
        public_key=verified.credential_public_key,
        sign_count=verified.sign_count,
        transports=[t for t in transports if t in known] if isinstance(transports, list) else [],
        device_type=verified.credential_device_type.value,
        backed_up=verified.credential_backed_up,
        aaguid=verified.aaguid,
        nickname=(nickname.strip()[:60] or _("Passkey %(number)s", number=len(owner.passkeys) + 1)),
        enrolment_token_id=token.id if token is not None else None,
        **owner_columns(owner),
    )
    db.session.add(passkey)
    if token is not None:
        audit.record(
            "enrolment.used",
            "enrolment_token",
            token.id,
            after={"owner": owner.audit_name},
            stream=owner.audit_stream,
        )
    if owner.kind == "participant" and owner.status == "enrolled":
        owner.status = "active"
    db.session.flush()
    audit.record(
        "passkey.added",
        "passkey",
        passkey.id,
        after={
            "owner": owner.audit_name,
            "nickname": passkey.nickname,
            "aaguid": passkey.aaguid,
            "backed_up": passkey.backed_up,
            "replacement_link": passkey.from_replacement_link,
        },
        stream=owner.audit_stream,
    )
    if owner.kind == "participant" and passkey.from_replacement_link:
        show_until = passkey.created_at + NEW_DEVICE_NOTICE_FOR
        if owner.home_notices_until is None or owner.home_notices_until < show_until:
            owner.home_notices_until = show_until
        signals.replacement_passkey_added.send(owner, added_at=passkey.created_at)
    return passkey


def _claim_enrolment_token(token: EnrolmentToken) -> None:
    """Mark the link used, or refuse: one conditional UPDATE, so of two registrations racing on
    one link exactly one gets it (the other's UPDATE waits for the winner's row or write lock,
    then finds the link used). Nothing else has been written yet when this refuses."""
    now = clock.now()
    claimed = cast(
        sa.CursorResult,
        db.session.execute(
            sa.update(EnrolmentToken)
            .where(
                EnrolmentToken.id == token.id,
                EnrolmentToken.used_at.is_(None),
                EnrolmentToken.revoked_at.is_(None),
                EnrolmentToken.expires_at > now,
            )
            .values(used_at=now)
            .execution_options(synchronize_session=False)
        ),
    ).rowcount
    db.session.expire(token)
    if claimed != 1:
        raise PortalError(
            _(
                "This link has already been used. Please sign in, or ask your study team for a new link."
            ),
            410,
        )


def authentication_options() -> tuple[str, str]:
    """Options for a discoverable-credential sign-in: no user name asked, none revealed."""
    rp_id, _name, _origin = _rp()
    options = generate_authentication_options(
        rp_id=rp_id, allow_credentials=[], user_verification=UserVerificationRequirement.REQUIRED
    )
    key = _store_ceremony("authentication", options.challenge, None, None)
    return key, options_to_json(options)


@dataclass
class SignInAttempt:
    owner: Owner | None
    failure_reason: str | None


def finish_authentication(ceremony_key: str | None, credential_json: str) -> SignInAttempt:
    """Verify a sign-in; failures are audited and come back with a reason for the audit only."""
    ceremony = _take_ceremony(ceremony_key, "authentication")
    if ceremony is None:
        return _failed_sign_in(None, "no live ceremony")
    try:
        credential = _parse_credential(credential_json)
        raw_id = credential.get("rawId") or credential.get("id")
        if not isinstance(raw_id, str):
            raise TypeError("a credential id is a base64url string")
        credential_id = base64url_to_bytes(raw_id)
    except (ValueError, TypeError, AttributeError):
        return _failed_sign_in(None, "malformed credential")
    passkey = db.session.scalar(
        sa.select(PasskeyCredential).where(PasskeyCredential.credential_id == credential_id)
    )
    if passkey is None:
        return _failed_sign_in(None, "unknown credential")
    owner = passkey.owner
    rp_id, _name, origin = _rp()
    try:
        verified = verify_authentication_response(
            credential=credential,
            expected_challenge=ceremony.challenge,
            expected_rp_id=rp_id,
            expected_origin=origin,
            credential_public_key=passkey.public_key,
            credential_current_sign_count=passkey.sign_count,
            require_user_verification=True,
        )
    except InvalidAuthenticationResponse as error:
        reason = (
            "sign count went backwards"
            if "sign count" in str(error).lower()
            else f"verification failed: {error}"
        )
        return _failed_sign_in(passkey, reason)
    except (WebAuthnException, InvalidJSONStructure, ValueError, KeyError, TypeError) as error:
        return _failed_sign_in(passkey, f"verification failed: {type(error).__name__}")
    if not owner.is_active:
        return _failed_sign_in(passkey, "account not active")
    passkey.sign_count = verified.new_sign_count
    passkey.backed_up = verified.credential_backed_up
    passkey.last_used_at = clock.now()
    audit.record(
        "signin.succeeded",
        "passkey",
        passkey.id,
        after={"owner": owner.audit_name},
        actor=owner.audit_name,
        stream=owner.audit_stream,
    )
    return SignInAttempt(owner, None)


def _failed_sign_in(passkey: PasskeyCredential | None, reason: str) -> SignInAttempt:
    owner = passkey.owner if passkey else None
    audit.record(
        "signin.failed",
        "passkey" if passkey else "sign_in",
        passkey.id if passkey else "-",
        after={"owner": owner.audit_name if owner else None},
        reason=reason,
        actor="anonymous",
        stream=owner.audit_stream if owner else audit.STAFF_STREAM,
    )
    return SignInAttempt(None, reason)


# --- passkeys and sessions of a signed-in person -----------------------------------------------


def owned_passkey(owner: Owner, passkey_id: int) -> PasskeyCredential:
    passkey = db.session.scalar(
        sa.select(PasskeyCredential).where(
            PasskeyCredential.id == passkey_id, owned_by(PasskeyCredential, owner)
        )
    )
    if passkey is None:
        raise PortalError(_("This passkey does not exist."), 404)
    return passkey


def rename_passkey(owner: Owner, passkey_id: int, nickname: str) -> PasskeyCredential:
    """Give a passkey a name the owner recognises ("my phone")."""
    passkey = owned_passkey(owner, passkey_id)
    nickname = nickname.strip()
    if not nickname or len(nickname) > 60:
        raise PortalError(_("Please give a name of 1 to 60 characters."), 422)
    before = passkey.nickname
    passkey.nickname = nickname
    db.session.flush()
    audit.record(
        "passkey.renamed",
        "passkey",
        passkey.id,
        before={"nickname": before},
        after={"nickname": nickname},
        stream=owner.audit_stream,
    )
    return passkey


def _lock_owner(owner: Owner) -> None:
    """Take the owner's row lock for the rest of the transaction (PostgreSQL), so that two
    changes to one owner's passkeys happen one after the other. SQLite has no row lock: there
    the first write of the transaction takes the database's write lock, which serialises as well
    as long as the rows are counted after that write."""
    model = Participant if owner.kind == "participant" else StaffUser
    db.session.execute(sa.select(model.id).where(model.id == owner.id).with_for_update())


def remove_passkey(owner: Owner, passkey_id: int) -> None:
    """Remove a passkey; the last one stays, or the owner could never sign in again.

    Two removals at once (two devices, a double tap) cannot leave none: the owner is locked,
    the row is deleted, and what is left is counted after the delete, in the same transaction.
    """
    passkey = owned_passkey(owner, passkey_id)
    nickname = passkey.nickname
    _lock_owner(owner)
    deleted = cast(
        sa.CursorResult,
        db.session.execute(
            sa.delete(PasskeyCredential)
            .where(PasskeyCredential.id == passkey_id, owned_by(PasskeyCredential, owner))
            .execution_options(synchronize_session=False)
        ),
    ).rowcount
    if deleted != 1:
        raise PortalError(_("This passkey does not exist."), 404)
    left = db.session.scalar(
        sa.select(sa.func.count(PasskeyCredential.id)).where(owned_by(PasskeyCredential, owner))
    )
    if not left:
        raise PortalError(
            _("This is your only passkey: it cannot be removed. Add another one first."), 409
        )
    db.session.expunge(passkey)
    db.session.expire(owner, ["passkeys"])
    audit.record(
        "passkey.removed",
        "passkey",
        passkey_id,
        before={"owner": owner.audit_name, "nickname": nickname},
        stream=owner.audit_stream,
    )


# How long the home page tells of a device added from a replacement link, unless put away
# sooner; the settings page and the staff page keep the mark for good.
NEW_DEVICE_NOTICE_FOR = timedelta(days=90)


def new_device_notices(participant: Participant) -> list[PasskeyCredential]:
    """Passkeys added from a replacement link that the participant has not acknowledged yet."""
    now = clock.now()
    if participant.home_notices_until is None or participant.home_notices_until <= now:
        return []
    return list(
        db.session.scalars(
            sa.select(PasskeyCredential)
            .join(EnrolmentToken, EnrolmentToken.id == PasskeyCredential.enrolment_token_id)
            .where(
                PasskeyCredential.participant_id == participant.id,
                EnrolmentToken.replacement_reason.is_not(None),
                PasskeyCredential.notice_dismissed_at.is_(None),
                PasskeyCredential.created_at > now - NEW_DEVICE_NOTICE_FOR,
            )
            .order_by(PasskeyCredential.created_at, PasskeyCredential.id)
        )
    )


def dismiss_new_device_notices(participant: Participant) -> int:
    """Put away the home page's "a new device was added" notice; the passkeys stay marked in
    the settings and on the staff page. Returns how many notices."""
    passkeys = new_device_notices(participant)
    now = clock.now()
    for passkey in passkeys:
        passkey.notice_dismissed_at = now
    db.session.flush()
    if passkeys:
        audit.record(
            "passkey.notice_dismissed",
            "participant",
            participant.study_id,
            after={"passkeys": [p.id for p in passkeys]},
            stream=participant.audit_stream,
        )
    return len(passkeys)


def live_sessions(owner: Owner) -> list[AuthSession]:
    now = clock.now()
    return list(
        db.session.scalars(
            sa.select(AuthSession)
            .where(
                owned_by(AuthSession, owner),
                AuthSession.revoked_at.is_(None),
                AuthSession.expires_at > now,
            )
            .order_by(AuthSession.last_seen_at.desc())
        )
    )


def end_session_by_id(owner: Owner, session_id: str) -> None:
    """Sign one of the owner's devices out."""
    record = db.session.get(AuthSession, session_id)
    if record is None or record.owner is not owner or record.revoked_at is not None:
        raise PortalError(_("This session does not exist or has already ended."), 404)
    record.revoked_at = clock.now()
    db.session.flush()
    audit.record(
        "session.revoked",
        "session",
        session_id[:12],
        after={"owner": owner.audit_name},
        stream=owner.audit_stream,
    )


def end_all_sessions(owner: Owner, reason: str) -> int:
    """Sign the owner out everywhere; returns how many sessions ended."""
    now = clock.now()
    ended = cast(
        sa.CursorResult,
        db.session.execute(
            sa.update(AuthSession)
            .where(owned_by(AuthSession, owner), AuthSession.revoked_at.is_(None))
            .values(revoked_at=now)
        ),
    ).rowcount
    if ended:
        audit.record(
            "session.revoked_all",
            owner.kind,
            owner.audit_name,
            after={"count": ended},
            reason=reason,
            stream=owner.audit_stream,
        )
    return ended
