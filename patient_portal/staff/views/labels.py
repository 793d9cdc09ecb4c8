"""How the staff pages name states, visits, questionnaires, statuses and roles, in the viewer's
language; every staff template may use them."""

from __future__ import annotations

from datetime import date

from babel.numbers import format_percent
from flask_babel import gettext as _

from patient_portal.i18n import (
    babel_locale,
    current_language,
    format_date,
    format_number,
    viewer_locale_and_zone,
)
from patient_portal.protocol.services import get_protocol
from patient_portal.questionnaires.instrument import Instrument, ScoreRule
from patient_portal.questionnaires.loader import get_instruments
from patient_portal.questionnaires.scoring import HAQ_DECIMALS, MEAN_DECIMALS, SHAQ_DECIMALS


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


def _haq_category_label(category: str) -> str:
    return {
        "dressing_grooming": _("Dressing and grooming"),
        "arising": _("Arising"),
        "eating": _("Eating"),
        "walking": _("Walking"),
        "hygiene": _("Hygiene"),
        "reach": _("Reach"),
        "grip": _("Grip"),
        "activities": _("Activities"),
    }.get(category, category)


def _score_rule(instrument: Instrument, name: str) -> tuple[ScoreRule | None, str | None]:
    """The rule a stored score name comes from, and the part after the dot (HAQ category,
    SHAQ scale item) when the score is one of the rule's parts."""
    base, _dot, part = name.partition(".")
    rule = next((r for r in instrument.scoring if r.name == base), None)
    return rule, part or None


def score_label(instrument_id: str, name: str) -> str:
    """A score's name in the viewer's language: “Mean score”, never `hands_mean`."""
    instrument = get_instruments().get(instrument_id)
    rule, part = _score_rule(instrument, name) if instrument else (None, None)
    if rule is None or instrument is None:
        return _("Score")
    if part is not None:
        if rule.kind == "haq_di":
            return _("HAQ-DI: %(category)s", category=_haq_category_label(part))
        try:
            question = instrument.item(part).text.get(current_language())
        except KeyError:
            question = part
        return _("Scale: %(question)s", question=question)
    labels = {
        "sum": _("Total score"),
        "mean": _("Mean score"),
        "haq_di": _("HAQ-DI index"),
        "shaq_vas": _("Visual analogue scales"),
    }
    return labels.get(rule.kind, _("Score"))


def score_value(instrument_id: str, name: str, value: float | int | None) -> str:
    """A score formatted in the viewer's locale, with its rule's decimals: « 1,50 »."""
    if value is None:
        return "—"
    instrument = get_instruments().get(instrument_id)
    rule, part = _score_rule(instrument, name) if instrument else (None, None)
    if rule is not None and rule.decimals is not None:
        decimals = rule.decimals
    elif rule is not None and rule.kind == "mean":
        decimals = MEAN_DECIMALS
    elif rule is not None and rule.kind == "haq_di":
        decimals = HAQ_DECIMALS if part is None else 0
    elif rule is not None and rule.kind == "shaq_vas":
        decimals = SHAQ_DECIMALS
    else:
        decimals = 0 if float(value).is_integer() else 2
    locale, _zone = viewer_locale_and_zone()
    return format_number(value, locale, decimals)


def score_lines(instrument_id: str, scores: dict | None) -> list[tuple[str, str]]:
    """(label, formatted value) for each stored score of a submission, in stored order."""
    return [
        (score_label(instrument_id, name), score_value(instrument_id, name, value))
        for name, value in (scores or {}).items()
    ]


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
        "score_lines": score_lines,
    }
