"""Alert e-mails to staff, sent by the reminder dispatcher on each pass.

An urgent alert e-mails the coordinators of the participant's site at once; any alert still
unacknowledged at its response target is escalated to the site's investigators. The e-mail
says only that a report is waiting and links to the dashboard (PORTAL_ORIGIN): no study ID, no
symptom, no answer, as an inbox is no place for health data. Each step is claimed with a
conditional update first, so several dispatchers never send the same e-mail twice, and is
written to the audit trail.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime

import sqlalchemy as sa
from flask import current_app
from flask_babel import force_locale
from flask_babel import gettext as _
from markupsafe import escape

from patient_portal import audit, clock
from patient_portal.accounts.models import Participant, StaffSite, StaffUser
from patient_portal.extensions import db
from patient_portal.questionnaires.models import Alert
from patient_portal.reminders.channels import Channel, Message, Outcome, Target

log = logging.getLogger(__name__)
ACTOR = "system:alerts"


@dataclass(frozen=True)
class _Step:
    kind: str  # "notified" (urgent, to coordinators) or "escalated" (past target, investigators)
    column: sa.orm.InstrumentedAttribute


NOTIFY = _Step("notified", Alert.notified_at)
ESCALATE = _Step("escalated", Alert.escalated_at)


def recipients(site_code: str, kind: str) -> list[StaffUser]:
    """Active staff to e-mail about an alert at this site: its coordinators for a new urgent
    alert, its investigators for an escalation (an investigator admin sees every site)."""
    linked = sa.select(StaffSite.staff_id).where(StaffSite.site_code == site_code)
    query = sa.select(StaffUser).where(StaffUser.active.is_(True)).order_by(StaffUser.id)
    if kind == "notified":
        query = query.where(StaffUser.role == "coordinator", StaffUser.id.in_(linked))
    else:
        query = query.where(
            StaffUser.investigator.is_(True),
            sa.or_(StaffUser.id.in_(linked), StaffUser.role == "admin"),
        )
    return list(db.session.scalars(query))


def _message(staff: StaffUser, kind: str) -> Message:
    link = current_app.config["PORTAL_ORIGIN"] + "/staff/dashboard"
    with force_locale(staff.language):
        if kind == "notified":
            subject = _("CARE-SSc: an urgent report is waiting")
            body = _("An urgent report from a participant of your site is waiting on the portal.")
        else:
            subject = _("CARE-SSc: a report is waiting past its response target")
            body = _(
                "A report from a participant of your site has not been acknowledged within its "
                "response target. It is escalated to you as an investigator."
            )
        action = _("Open the dashboard")
    text = f"{body}\n\n{action}: {link}\n"
    html = (
        f'<!doctype html><html lang="{staff.language}"><body><p>{escape(body)}</p>'
        f'<p><a href="{escape(link)}">{escape(action)}</a></p></body></html>'
    )
    return Message(
        title=subject,
        body=body,
        url="/staff/dashboard",
        tag=f"alert-{kind}",
        subject_line=subject,
        text=text,
        html=html,
        language=staff.language,
        ttl=0,
        reminder_id=0,
    )


def _due(step: _Step, now: datetime) -> list[int]:
    query = sa.select(Alert.id).where(step.column.is_(None), Alert.acknowledged_at.is_(None))
    if step is NOTIFY:
        query = query.where(Alert.severity == "urgent")
    else:
        query = query.where(Alert.due_at.is_not(None), Alert.due_at <= now)
    return list(db.session.scalars(query.order_by(Alert.id).limit(100)))


def _claim(step: _Step, alert_id: int, now: datetime) -> bool:
    result = db.session.execute(
        sa.update(Alert)
        .where(Alert.id == alert_id, step.column.is_(None))
        .values({step.column.key: now})
        .execution_options(synchronize_session=False)
    )
    return result.rowcount == 1  # type: ignore[attr-defined]


def _send(channel: Channel, staff: list[StaffUser], kind: str) -> list[Outcome]:
    outcomes = []
    for person in staff:
        try:
            outcomes.append(channel.send(_message(person, kind), Target(email=person.email)))
        except Exception as error:  # one address failing must not lose the others
            log.exception("alert e-mail to staff %s failed", person.id)
            outcomes.append(Outcome("retry", type(error).__name__))
    return outcomes


def send_alert_mail(channel: Channel) -> dict[str, int]:
    """E-mail what is due: new urgent alerts, then alerts past their target; counts by step."""
    counts = {"alert_notified": 0, "alert_escalated": 0}
    for step in (NOTIFY, ESCALATE):
        now = clock.now()
        for alert_id in _due(step, now):
            if not _claim(step, alert_id, now):
                continue
            db.session.commit()
            alert = db.session.get(Alert, alert_id)
            assert alert is not None
            site_code = db.session.scalar(
                sa.select(Participant.site_code).where(Participant.id == alert.participant_id)
            )
            staff = recipients(site_code or "", step.kind)
            outcomes = _send(channel, staff, step.kind)
            sent = sum(outcome.status == "sent" for outcome in outcomes)
            if any(outcome.status == "retry" for outcome in outcomes) and not sent:
                # Nobody reached and worth retrying: the next pass tries again.
                db.session.execute(
                    sa.update(Alert).where(Alert.id == alert_id).values({step.column.key: None})
                )
            audit.record(
                f"alert.{step.kind}",
                "alert",
                alert_id,
                after={
                    "recipients": [person.audit_name for person in staff],
                    "sent": sent,
                    "outcomes": [outcome.status for outcome in outcomes],
                },
                actor=ACTOR,
                stream=alert.participant.audit_stream,
            )
            db.session.commit()
            counts[f"alert_{step.kind}"] += sent
    return counts
