"""How the staff pages name states, visits, questionnaires, statuses and roles, in the viewer's
language; every staff template may use them."""

from __future__ import annotations

from datetime import date

from babel.numbers import format_percent
from flask_babel import gettext as _

from patient_portal.i18n import babel_locale, current_language, format_date, viewer_locale_and_zone
from patient_portal.protocol.services import get_protocol
from patient_portal.questionnaires.loader import get_instruments


def state_label(state: str) -> str:
    return {
        "upcoming": _("Upcoming"),
        "open": _("Open now"),
        "completed": _("Completed"),
        "missed": _("Missed"),
        "withdrawn": _("No longer due"),
    }[state]


def visit_label(code: str | None) -> str:
    """A visit's name, or the series' questionnaire title (the weekly check-in)."""
    if code is None:
        return "—"
    protocol = get_protocol()
    language = current_language()
    for visit in protocol.visits:
        if visit.code == code:
            return visit.name.get(language) or code
    for series in protocol.series:
        if series.code == code:
            instrument = get_instruments().get(series.instrument)
            return instrument.title.get(language) if instrument else code
    for visit_series in protocol.visit_series:
        for visit_code in visit_series.after_visits:
            if visit_series.occurrence_code(visit_code) == code:
                instrument = get_instruments().get(visit_series.instrument)
                title = instrument.title.get(language) if instrument else visit_series.code
                return f"{title} — {protocol.visit(visit_code).name.get(language)}"
    if protocol.unscheduled is not None and protocol.unscheduled.code == code:
        instrument = get_instruments().get(protocol.unscheduled.instrument)
        return instrument.title.get(language) if instrument else code
    return code


def instrument_label(instrument_id: str) -> str:
    instrument = get_instruments().get(instrument_id)
    return instrument.title.get(current_language()) if instrument else instrument_id


def percent(value: float | None) -> str:
    if value is None:
        return "—"
    locale, _zone = viewer_locale_and_zone()
    return format_percent(value, locale=babel_locale(locale))


def short_date(value: date) -> str:
    locale, zone = viewer_locale_and_zone()
    return format_date(value, locale, zone, format="short")


def participant_status_label(status: str) -> str:
    return {
        "enrolled": _("Enrolled, no passkey yet"),
        "active": _("Active"),
        "withdrawn": _("Withdrawn"),
        "completed": _("Completed"),
    }[status]


def staff_role_label(role: str) -> str:
    return {"coordinator": _("Coordinator"), "admin": _("Administrator")}[role]


def template_helpers() -> dict:
    return {
        "state_label": state_label,
        "visit_label": visit_label,
        "instrument_label": instrument_label,
        "percent": percent,
        "participant_status_label": participant_status_label,
        "staff_role_label": staff_role_label,
    }
