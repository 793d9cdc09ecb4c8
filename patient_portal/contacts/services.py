"""Recording and reading contact attempts. Functions flush, never commit."""

from __future__ import annotations

import sqlalchemy as sa
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l

from patient_portal import audit, clock
from patient_portal.accounts.models import Participant, StaffUser
from patient_portal.contacts.models import CHANNELS, NOTE_MAX, OUTCOMES, ContactAttempt
from patient_portal.errors import PortalError
from patient_portal.extensions import db

CHANNEL_LABELS = {
    "phone": _l("phone"),
    "email": _l("e-mail"),
    "in_person": _l("in person"),
}
OUTCOME_LABELS = {
    "reached": _l("reached"),
    "no_answer": _l("no answer"),
    "message_left": _l("message left"),
}
SHOWN_ON_RECORD = 10


def record_contact(
    participant: Participant, staff: StaffUser, channel: str, outcome: str, note: str | None
) -> ContactAttempt:
    """Record one attempt to reach the participant, audited in their stream."""
    if channel not in CHANNELS:
        raise PortalError(_("Choose how you tried to reach the participant."), 422, "channel")
    if outcome not in OUTCOMES:
        raise PortalError(_("Choose how the contact went."), 422, "outcome")
    note = (note or "").strip()
    if len(note) > NOTE_MAX:
        raise PortalError(
            _("Please keep this under %(count)s characters.", count=NOTE_MAX), 422, "note"
        )
    attempt = ContactAttempt(
        participant_id=participant.id,
        staff_id=staff.id,
        at=clock.now(),
        channel=channel,
        outcome=outcome,
        note=note or None,
    )
    db.session.add(attempt)
    db.session.flush()
    audit.record(
        "contact.recorded",
        "contact_attempt",
        attempt.id,
        after={
            "participant": participant.study_id,
            "at": attempt.at,
            "channel": channel,
            "outcome": outcome,
            "note": attempt.note,
        },
        actor=staff.audit_name,
        stream=participant.audit_stream,
    )
    return attempt


def contacts_of(participant: Participant, limit: int = SHOWN_ON_RECORD) -> list[ContactAttempt]:
    """The participant's latest contact attempts, newest first."""
    return list(
        db.session.scalars(
            sa.select(ContactAttempt)
            .where(ContactAttempt.participant_id == participant.id)
            .order_by(ContactAttempt.at.desc(), ContactAttempt.id.desc())
            .limit(limit)
        )
    )
