"""Coordinator pages about participants: the participants of one's sites, enrolment, enrolment
links, a participant's record and withdrawal.

Every query is filtered by the sites the staff member may see; another site's participant is a 404.
"""

from __future__ import annotations

from datetime import date

import segno
import sqlalchemy as sa
from flask import (
    abort,
    get_flashed_messages,
    redirect,
    render_template,
    request,
    session,
    url_for,
)
from flask_babel import gettext as _
from flask_login import current_user
from markupsafe import Markup

from patient_portal import clock, form_keys
from patient_portal.accounts import services
from patient_portal.accounts.auth import participant_of_visible_site, require, visible_site_codes
from patient_portal.accounts.models import REPLACEMENT_REASONS, Participant, StaffUser
from patient_portal.contacts.services import CHANNEL_LABELS, OUTCOME_LABELS, contacts_of
from patient_portal.errors import PortalError
from patient_portal.extensions import db, limiter
from patient_portal.i18n import LANGUAGES, current_language
from patient_portal.questionnaires.loader import get_instruments
from patient_portal.questionnaires.services import answers_of, submissions_of
from patient_portal.questionnaires.views import display_value
from patient_portal.staff import record
from patient_portal.staff.views.blueprints import staff
from patient_portal.timezones import parse_day

DAY0_EARLIEST = date(2020, 1, 1)
DAY0_LATEST = date(2035, 12, 31)


def qr_svg(url: str) -> Markup:
    """The enrolment link as an SVG QR code, drawn on the server (no script, no image request)."""
    svg = segno.make(url, error="m").svg_inline(
        scale=6, border=2, title=_("QR code of the enrolment link")
    )
    return Markup(svg)  # noqa: S704 - segno's own SVG, built from our own URL


# The link just made waits in the server-side session until it is shown, once: the page that
# shows it is a GET (Post/Redirect/Get), so reloading it never makes another participant or link.
LINK_TO_SHOW = "enrolment_link_to_show"


def show_link_once(owner: Participant | StaffUser, raw_token: str):
    session[LINK_TO_SHOW] = {"kind": owner.kind, "id": owner.id, "token": raw_token}
    return redirect(url_for("staff.enrolment_link"), 303)


@staff.get("/enrolment-link")
@require("staff")
def enrolment_link():
    shown = session.pop(LINK_TO_SHOW, None)
    if shown is None:
        raise PortalError(
            _(
                "An enrolment link is shown only once. If it was not used, make a new one from "
                "the person's page."
            ),
            410,
        )
    model = Participant if shown["kind"] == "participant" else StaffUser
    owner = db.session.get(model, shown["id"])
    if owner is None:
        abort(404)
    return link_page(owner, shown["token"])


def link_page(owner, raw_token: str, status: int = 200):
    """The new enrolment link of a participant or staff member, as a link and a QR code."""
    url = services.enrolment_url(raw_token)
    return render_template(
        "staff/enrolment_link.html", owner=owner, url=url, qr=qr_svg(url)
    ), status


def _parse_day0(value: str) -> date | None:
    if not value:
        return None
    day0 = parse_day(value, _("Please give day 0 as a date (year-month-day)."))
    if not DAY0_EARLIEST <= day0 <= DAY0_LATEST:
        raise PortalError(_("Day 0 must be between 2020 and 2035."), 422)
    return day0


def participants_page(error: PortalError | None = None):
    """The participants of the staff member's sites, with the enrolment form (and its error)."""
    sites = visible_site_codes(current_user)
    rows = db.session.scalars(
        sa.select(Participant)
        .where(Participant.site_code.in_(sites))
        .order_by(Participant.site_code, Participant.study_id)
    ).all()
    page = render_template(
        "staff/participants.html",
        participants=rows,
        sites=sites,
        languages=LANGUAGES,
        error=error.message if error else None,
    )
    return page, error.status if error else 200


@staff.get("/participants")
@require("staff")
def participants():
    return participants_page()


@staff.post("/participants")
@require("staff")
@limiter.limit("30 per minute")
def enrol_participant():
    # The same form sent again (back button, a second press) opens the participant it made.
    key = form_keys.sent_key()
    made = form_keys.handled(key)
    if made:
        return redirect(made, 303)
    site_code = request.form.get("site", "")
    if site_code not in visible_site_codes(current_user):
        raise PortalError(_("Please choose one of your sites."), 422)
    day0 = _parse_day0(request.form.get("day0", "").strip())
    participant, raw = services.enrol_participant(
        site_code, request.form.get("language", ""), day0, current_user
    )
    db.session.commit()
    form_keys.remember(key, url_for("staff.participant", study_id=participant.study_id))
    return show_link_once(participant, raw)


def participant_page(person: Participant, error: PortalError | None = None):
    """Everything about one participant: schedule and questionnaire states, answers and scores,
    alerts, passkeys and sessions, withdrawal, and their audit history."""
    page = render_template(
        "staff/participant.html",
        participant=person,
        replacement_links=services.replacement_links(person),
        replacement_reasons=[
            (code, services.replacement_reason_label(code)) for code in REPLACEMENT_REASONS
        ],
        replacement_reason_label=services.replacement_reason_label,
        error_field=error.field if error else None,
        moment=clock.now(),
        sessions=services.live_sessions(person),
        assignments=record.participant_assignments(person),
        submitted=submissions_of(person, with_answers=True),
        alerts=record.participant_alerts(person),
        summary=record.participant_summary(person),
        contacts=contacts_of(person),
        channel_labels=CHANNEL_LABELS,
        outcome_labels=OUTCOME_LABELS,
        messages=get_flashed_messages(),
        history=record.participant_audit_history(person),
        answer_rows=_answer_rows,
        error=error.message if error else None,
    )
    return page, error.status if error else 200


def _answer_rows(assignment) -> list[tuple[str, str]]:
    """(question, answer as the participant read it) for a submitted questionnaire."""
    instruments = get_instruments()
    instrument = instruments.get(assignment.instrument_id)
    language = current_language()
    typed = answers_of(assignment, instrument) if instrument else {}
    rows = []
    for answer in assignment.answers:
        if instrument is None or not instrument.has_item(answer.item_id):
            rows.append((answer.item_id, str(answer.value)))
            continue
        item = instrument.item(answer.item_id)
        value = typed.get(answer.item_id, answer.value)
        rows.append((item.text.get(language), display_value(instrument, item, value, assignment)))
    return rows


@staff.get("/participants/<study_id>")
@require("staff")
def participant(study_id: str):
    return participant_page(participant_of_visible_site(study_id, current_user))


@staff.post("/participants/<study_id>/withdraw")
@require("staff")
def withdraw(study_id: str):
    """Withdraw the participant, with a reason: questionnaires close, reminders stop, data stays."""
    person = participant_of_visible_site(study_id, current_user)
    services.withdraw_participant(person, current_user, request.form.get("reason", ""))
    db.session.commit()
    return redirect(url_for("staff.participant", study_id=person.study_id), 303)


@staff.post("/participants/<study_id>/enrolment-link")
@require("staff")
def new_enrolment_link(study_id: str):
    person = participant_of_visible_site(study_id, current_user)
    if person.status == "withdrawn":
        abort(409)
    raw = services.issue_enrolment_link(
        person,
        current_user,
        revoke_passkeys=request.form.get("revoke_passkeys") == "yes",
        reason=request.form.get("reason") or None,
        note=request.form.get("note", ""),
    )
    db.session.commit()
    return show_link_once(person, raw)


@staff.post("/participants/<study_id>/enrolment-link/revoke")
@require("staff")
def revoke_enrolment_link(study_id: str):
    person = participant_of_visible_site(study_id, current_user)
    services.revoke_enrolment_links(person)
    db.session.commit()
    return redirect(url_for("staff.participant", study_id=person.study_id), 303)


@staff.post("/participants/<study_id>/sessions/end")
@require("staff")
def end_participant_sessions(study_id: str):
    person = participant_of_visible_site(study_id, current_user)
    services.end_all_sessions(person, reason="ended by staff")
    db.session.commit()
    return redirect(url_for("staff.participant", study_id=person.study_id), 303)
