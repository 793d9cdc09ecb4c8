"""Filling questionnaires, one question per screen, every tap saved on the server.

The same URLs serve the participant and, for assisted entry, a coordinator of their site.
An item page is a full page; when htmx posts an answer it gets the item fragment back with a
"saved" acknowledgement, and without JavaScript the form posts normally and redirects.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, time, timedelta
from functools import wraps
from typing import Any

from babel.dates import format_timedelta
from flask import Blueprint, abort, make_response, redirect, render_template, url_for
from flask_babel import gettext as _
from flask_login import current_user
from htmx_flask import request

from patient_portal import clock
from patient_portal.accounts.auth import (
    answer_unauthenticated,
    participant_of_visible_site,
    require,
    visible_site_codes,
)
from patient_portal.accounts.models import Participant
from patient_portal.errors import rolled_back
from patient_portal.extensions import db
from patient_portal.i18n import (
    babel_locale,
    current_language,
    format_date,
    format_datetime,
    format_number,
    format_time,
    site_datetime,
    viewer_locale_and_zone,
)
from patient_portal.protocol.services import get_protocol
from patient_portal.questionnaires import alerts, services
from patient_portal.questionnaires.engine import (
    AnswerError,
    first_unanswered,
    is_answered,
    missing_required,
    next_item,
    previous_item,
    progress,
    visible_items,
)
from patient_portal.questionnaires.instrument import Instrument, Item
from patient_portal.questionnaires.loader import get_instrument, get_instruments
from patient_portal.questionnaires.models import Alert, Assignment

bp = Blueprint("questionnaires", __name__)

# Without JavaScript, saving one of these answers moves on to the next question.
ONE_TAP_TYPES = ("single_choice", "rating_0_10", "yes_no", "date", "text")
# One tap is the whole answer: the tap saves and the next question comes by itself, with or
# without JavaScript. Several choices, numbers set by steps and typed answers keep a "Next".
AUTO_ADVANCE_TYPES = ("single_choice", "rating_0_10", "yes_no")


def answer_error_message(error: AnswerError, item: Item | None) -> str:
    """The participant-facing, translated text for an engine AnswerError code."""
    low, high = (item.value_range or (0, 0)) if item else (0, 0)
    messages = {
        "unknown_item": _("This question is not part of this questionnaire."),
        "not_answerable": _("This text has no answer to give."),
        "not_enabled": _("This question does not apply, given your earlier answers."),
        "wrong_type": _("This answer could not be understood. Please use the buttons."),
        "out_of_range": _("Please give a number from %(low)s to %(high)s.", low=low, high=high),
        "not_an_option": _("This answer is not one of the choices."),
        "exclusive_conflict": _("This answer cannot be combined with the others you chose."),
        "too_long": _(
            "Please keep your text under %(count)s characters.",
            count=(item.max_length if item else 0),
        ),
        "invalid_characters": _("Your text contains characters that cannot be saved."),
        "date_in_future": _("The date cannot be later than today."),
    }
    return messages[error.code]


def unavailable_message(error: services.QuestionnaireError, assignment: Assignment):
    """(title, detail) for a questionnaire the action is not allowed on."""
    if error.code == "not_open_yet":
        return _("This questionnaire is not open yet"), _(
            "It opens on %(date)s.", date=_local_date(assignment.opens_at, assignment)
        )
    if error.code == "submitted":
        return _("These answers have already been sent"), _(
            "Answers cannot be changed once they are sent. Thank you for taking part."
        )
    if error.code == "withdrawn":
        return _("This questionnaire is no longer asked"), _(
            "Your study team has cancelled it. There is nothing to do."
        )
    if error.code == "incomplete":
        return _("Some questions still need an answer"), _(
            "Please answer the questions marked below, then send your answers."
        )
    return _("This questionnaire is closed"), _(
        "The time to answer it has passed. Nothing you saved before is lost."
    )


# ---------------------------------------------------------------------------------------------
# Helpers


def _site(assignment: Assignment):
    return get_protocol().site(assignment.participant.site_code)


def _locale(assignment: Assignment) -> str:
    return _site(assignment).formatting_locale(current_language())


def _local_date(moment, assignment: Assignment, format: str = "full") -> str:
    return format_date(moment, _locale(assignment), _site(assignment).zone, format)


def _last_day(assignment: Assignment) -> str:
    """The last local day an assignment is open (it closes at the next local midnight), with
    the closing time for one that closes during the day (the diary, in the morning)."""
    closes = assignment.closes_at.astimezone(_site(assignment).zone)
    day = _local_date(assignment.closes_at - timedelta(microseconds=1), assignment)
    if closes.time() == time.min:
        return day
    return (
        f"{day}, {format_time(assignment.closes_at, _locale(assignment), _site(assignment).zone)}"
    )


def _is_fragment() -> bool:
    return bool(request.htmx) and not request.htmx.boosted


def _vary(response):
    response.vary.add("HX-Request")
    return response


def _render(template: str, status: int = 200, **context):
    return _vary(make_response(render_template(template, **context), status))


def filler(view: Callable) -> Callable:
    """Load the assignment and authorise: its participant, or staff of its site; else 404."""

    @wraps(view)
    def wrapped(assignment_id: int, **kwargs):
        if not current_user.is_authenticated:
            return answer_unauthenticated()
        if request.method == "POST":
            # A write: the row locked at once (answers and submit queue per questionnaire), with
            # its submission, in one statement; the services find it locked already.
            assignment = services.locked_assignment(assignment_id)
        else:
            assignment = db.session.get(Assignment, assignment_id)
        if assignment is None:
            abort(404)
        if current_user.is_staff:
            if assignment.participant.site_code not in visible_site_codes(current_user):
                abort(404)
        elif assignment.participant_id != current_user.id:
            abort(404)
        return view(assignment, **kwargs)

    return wrapped


@bp.errorhandler(services.QuestionnaireError)
def unavailable(error: services.QuestionnaireError):
    """The assignment's state refused the action: say why, in words that name its window; a
    submission with questions left goes back to the review, which lists them."""
    rolled_back()
    assignment = db.get_or_404(Assignment, (request.view_args or {}).get("assignment_id"))
    if error.code == "incomplete":
        return _review(assignment, error.status, unavailable_message(error, assignment)[1])
    title, detail = unavailable_message(error, assignment)
    template = (
        "questionnaires/_unavailable.html" if _is_fragment() else "questionnaires/unavailable.html"
    )
    return _render(template, status=error.status, title=title, detail=detail, assignment=assignment)


@bp.errorhandler(AnswerError)
def answer_refused(error: AnswerError):
    """A value the question does not accept: the question again, with the reason (422)."""
    rolled_back()
    args = request.view_args or {}
    assignment = db.get_or_404(Assignment, args.get("assignment_id"))
    instrument, item = _load_item(assignment, str(args.get("item_id")))
    answers = services.answers_of(assignment, instrument)
    context = _item_context(
        assignment, instrument, item, answers, error=answer_error_message(error, item)
    )
    template = "questionnaires/_item.html" if _is_fragment() else "questionnaires/item.html"
    return _render(template, status=422, **context)


def display_value(instrument: Instrument, item: Item, value: Any, assignment: Assignment) -> str:
    """An answer as the participant reads it on the review screen."""
    lang = current_language()
    if not is_answered(value):
        return _("Not answered")
    if item.type == "single_choice":
        option = item.option(value)
        return option.label.get(lang) if option else str(value)
    if item.type == "multiple_choice":
        labels = [o.label.get(lang) for o in item.options if o.value in value]
        return ", ".join(labels)
    if item.type == "yes_no":
        return _("Yes") if value else _("No")
    if item.type == "date":
        return _local_date(value, assignment, "long")
    if item.type == "vas_0_100":
        return _("%(value)s out of 100", value=value)
    if item.type == "rating_0_10":
        return _("%(value)s out of 10", value=value)
    if item.type == "integer":
        number = format_number(value, _locale(assignment))
        return f"{number} {item.unit.get(lang)}" if item.unit else number
    return str(value)


def _item_url(assignment: Assignment, item: Item | None, review: bool = False, **args) -> str:
    if item is None:
        return url_for("questionnaires.review", assignment_id=assignment.id)
    if review:
        args["review"] = 1
    return url_for("questionnaires.item", assignment_id=assignment.id, item_id=item.id, **args)


def _stepper_values(item: Item, value: Any) -> tuple[int, int]:
    """The absolute values the − and + buttons send (no relative change: retries are safe)."""
    low, high = item.value_range or (0, 0)
    step = item.step if item.type == "vas_0_100" else 1
    base = value if isinstance(value, int) and not isinstance(value, bool) else low
    if not is_answered(value):
        return low, min(high, low + step)
    return max(low, base - step), min(high, base + step)


def _toggled(item: Item, chosen: list) -> dict:
    """For each option, the whole selection its toggle button sends (absolute, retry-safe)."""
    result = {}
    for option in item.options:
        if option.value in chosen:
            selection = [v for v in chosen if v != option.value]
        elif option.value in item.exclusive:
            selection = [option.value]
        else:
            keep = {v for v in chosen if v not in item.exclusive} | {option.value}
            selection = [o.value for o in item.options if o.value in keep]
        result[option.value] = selection
    return result


def _item_context(
    assignment: Assignment, instrument: Instrument, item: Item, answers: dict, **extra
) -> dict:
    from_review = request.values.get("review") == "1"
    following = None if from_review else next_item(instrument, answers, item.id)
    questions = [i for i in visible_items(instrument, answers) if i.answerable]
    position = next((n for n, i in enumerate(questions, 1) if i.id == item.id), None)
    answered, total = progress(instrument, answers)
    before = previous_item(instrument, answers, item.id)
    value = answers.get(item.id)
    chosen = value if isinstance(value, list) else []
    return {
        "assignment": assignment,
        "instrument": instrument,
        "item": item,
        "lang": current_language(),
        "value": value,
        "chosen": chosen,
        "toggled": _toggled(item, chosen),
        "stepper": _stepper_values(item, value) if item.value_range else None,
        "answered": answered,
        "total": total,
        "position": position,
        "question_count": len(questions),
        "next_url": _item_url(assignment, following, review=from_review),
        # From the review there is one way back, to the review: never a second "Back" that
        # goes somewhere else.
        "back_url": _item_url(assignment, before) if before and not from_review else None,
        "one_tap": item.type in AUTO_ADVANCE_TYPES,
        "from_review": from_review,
        "on_behalf": current_user.is_staff,
        "urgent_site": _urgent_site(assignment, instrument),
        "error": None,
        "saved": False,
        "fragment": _is_fragment(),
        **extra,
    }


def _urgent_site(assignment: Assignment, instrument: Instrument):
    """The participant's site, whose numbers to show, once an answer raised an urgent alert."""
    if current_user.is_staff or not instrument.alerts_on_answer:
        return None
    return _site(assignment) if alerts.urgent_raised(assignment) else None


# ---------------------------------------------------------------------------------------------
# Participant pages


def report_section(participant: Participant, now: datetime) -> dict:
    """The "report a symptom" part of the home page, with whether the team saw recent ones."""
    locale = get_protocol().site(participant.site_code).formatting_locale(current_language())
    zone = get_protocol().site(participant.site_code).zone
    followed = [
        {
            "title": get_instrument(a.instrument_id).title.get(current_language()),
            "sent": format_date(
                a.submission.submitted_at if a.submission else a.created_at, locale, zone, "long"
            ),
            "seen": format_date(seen, locale, zone, "long") if seen else None,
        }
        for a, seen in (
            alerts.reports_seen(participant, now - alerts.REPORTS_SHOWN_FOR)
            # No statement at all unless an alert was raised in the last two weeks.
            if participant.home_notices_until is not None and participant.home_notices_until > now
            else []
        )
    ]
    return {
        "site": get_protocol().site(participant.site_code),
        "enabled": get_protocol().unscheduled is not None and participant.status != "withdrawn",
        "followed": followed,
    }


def alert_facts(alert: Any) -> dict:
    """What staff read about an alert (an Alert row or a dashboard line), in their language."""
    language = current_language()
    locale, _zone = viewer_locale_and_zone()
    instrument_id = getattr(alert, "instrument_id", None) or (
        alert.assignment.instrument_id if getattr(alert, "assignment", None) else None
    )
    # Times on the participant's site clock: a dashboard line carries its site, a row its person.
    person = getattr(alert, "participant", None)
    site_code = getattr(alert, "site", None) or (person.site_code if person else None)
    now = clock.now()
    due = alert.due_at
    outcome = getattr(alert, "outcome", None)
    label = alerts.alert_label(instrument_id, alert.rule_id, alert.item_id, language)
    answer = alerts.answer_text(
        instrument_id, alert.rule_id, alert.item_id, alert.value, language, locale
    )
    age = (
        format_timedelta(alert.created_at - now, add_direction=True, locale=babel_locale(locale))
        if now - alert.created_at >= timedelta(minutes=1)
        else _("just now")
    )
    return {
        "severity": alert.severity,
        "severity_label": alerts.SEVERITY_LABELS[alert.severity],
        "what": _("%(label)s: %(answer)s", label=label, answer=answer) if answer else label,
        "raised": site_datetime(alert.created_at, site_code),
        "age": age,
        "due": site_datetime(due, site_code) if due else None,
        "overdue": due is not None and due <= now and not getattr(alert, "acknowledged_at", None),
        "escalated": site_datetime(alert.escalated_at, site_code) if alert.escalated_at else None,
        "outcome": alerts.OUTCOME_LABELS[outcome] if outcome else None,
        "outcomes": alerts.OUTCOME_LABELS,
    }


def home_section(participant: Participant, now: datetime) -> dict:
    """The questionnaires part of the home page."""
    # The home page has planned the participant's year before asking for its sections.
    return {"overview": services.participant_questionnaires(participant, now)}


@bp.app_context_processor
def _questionnaire_helpers() -> dict:
    return {
        "questionnaire_title": lambda a: get_instrument(a.instrument_id).title.get(
            current_language()
        ),
        "questionnaire_last_day": _last_day,
        "questionnaire_local_date": _local_date,
        "alert_facts": alert_facts,
    }


@bp.get("/questionnaires")
@require("participant")
def index():
    overview = services.participant_questionnaires(current_user)
    return _render("questionnaires/index.html", overview=overview)


@bp.post("/questionnaires/report")
@require("participant")
def report():
    """Start a symptom report (or go back to the one left unfinished)."""
    assignment = services.start_report(current_user)
    db.session.commit()
    return redirect(url_for("questionnaires.start", assignment_id=assignment.id), 303)


@bp.get("/questionnaires/<id:assignment_id>")
@filler
def start(assignment: Assignment):
    """Where to go: the introduction, the first unanswered question, the review or the end."""
    state = services.state_of(assignment)
    if state == "completed":
        return redirect(url_for("questionnaires.done", assignment_id=assignment.id))
    if state not in ("open", "in_progress"):
        code = {"upcoming": "not_open_yet", "withdrawn": "withdrawn"}.get(state, "closed")
        raise services.QuestionnaireError(code)
    instrument = get_instrument(assignment.instrument_id)
    answers = services.answers_of(assignment, instrument)
    if not answers:
        first = next_item(instrument, answers, None)
        return _render(
            "questionnaires/start.html",
            assignment=assignment,
            instrument=instrument,
            lang=current_language(),
            first_url=_item_url(assignment, first),
            last_day=_last_day(assignment),
            # What the introduction promises about taps must be true of these questions.
            question_count=sum(1 for i in instrument.items if i.answerable),
            one_tap_count=sum(1 for i in instrument.items if i.type in AUTO_ADVANCE_TYPES),
            on_behalf=current_user.is_staff,
        )
    return redirect(_item_url(assignment, first_unanswered(instrument, answers)))


def _load_item(assignment: Assignment, item_id: str) -> tuple[Instrument, Item]:
    instrument = get_instrument(assignment.instrument_id)
    if not instrument.has_item(item_id):
        abort(404)
    return instrument, instrument.item(item_id)


def _ensure_writable(assignment: Assignment) -> None:
    state = services.state_of(assignment)
    if state == "completed":
        raise services.QuestionnaireError("submitted")
    if state not in ("open", "in_progress"):
        code = {"upcoming": "not_open_yet", "withdrawn": "withdrawn"}.get(state, "closed")
        raise services.QuestionnaireError(code)


@bp.get("/questionnaires/<id:assignment_id>/items/<item_id>")
@filler
def item(assignment: Assignment, item_id: str):
    instrument, item = _load_item(assignment, item_id)
    _ensure_writable(assignment)
    answers = services.answers_of(assignment, instrument)
    if item.id not in {i.id for i in visible_items(instrument, answers)}:
        # Hidden by an answer given since the link was made: go where the questions continue.
        return redirect(url_for("questionnaires.start", assignment_id=assignment.id))
    context = _item_context(
        assignment, instrument, item, answers, saved=request.args.get("saved") == "1"
    )
    template = "questionnaires/_item.html" if _is_fragment() else "questionnaires/item.html"
    return _render(template, **context)


@bp.post("/questionnaires/<id:assignment_id>/items/<item_id>")
@filler
def answer(assignment: Assignment, item_id: str):
    instrument, item = _load_item(assignment, item_id)
    raw = request.form.getlist("value")
    services.save_answer(assignment, item.id, raw, current_user)
    answers = services.answers_of(assignment, instrument)
    from_review = request.values.get("review") == "1"
    following = None if from_review else next_item(instrument, answers, item.id)
    if _is_fragment():
        # Committed before rendering, so the questionnaire's row lock and its audit stream's
        # head are released at once, not held while the fragment renders; the loaded rows keep
        # what was just written (no reload). A failed commit raises: "Saved" is never shown.
        _commit_keeping_rows()
        if item.type in AUTO_ADVANCE_TYPES:
            return _advanced(assignment, instrument, following, answers)
        context = _item_context(assignment, instrument, item, answers, saved=True)
        return _render("questionnaires/_item.html", **context)
    db.session.commit()
    if item.type in ONE_TAP_TYPES:
        if following is not None:
            return redirect(_item_url(assignment, following, saved=1), 303)
        return redirect(url_for("questionnaires.review", assignment_id=assignment.id), 303)
    return redirect(
        _item_url(assignment, item, review=request.values.get("review") == "1", saved=1), 303
    )


def _advanced(
    assignment: Assignment, instrument: Instrument, following: Item | None, answers: dict
):
    """After a one-tap answer saved through htmx: the next question's fragment (its address for
    the history), or a redirect to the review once the questions are done."""
    if following is None:
        response = _vary(make_response("", 200))
        response.headers["HX-Redirect"] = url_for(
            "questionnaires.review", assignment_id=assignment.id
        )
        return response
    context = _item_context(assignment, instrument, following, answers, saved=True)
    response = _render("questionnaires/_item.html", **context)
    response.headers["HX-Push-Url"] = _item_url(assignment, following)
    return response


def _commit_keeping_rows() -> None:
    """Commit without expiring the loaded rows: they hold exactly what was committed."""
    session = db.session()
    session.expire_on_commit = False
    try:
        session.commit()
    finally:
        session.expire_on_commit = True


def _review(assignment: Assignment, status: int = 200, error: str | None = None):
    instrument = get_instrument(assignment.instrument_id)
    answers = services.answers_of(assignment, instrument)
    visible = {i.id for i in visible_items(instrument, answers)}
    missing = set(missing_required(instrument, answers))
    pages = []
    for page in instrument.pages:
        rows = [
            {
                "item": i,
                "text": display_value(instrument, i, answers.get(i.id), assignment),
                "answered": is_answered(answers.get(i.id)),
                "missing": i.id in missing,
                "url": _item_url(assignment, i, review=True),
            }
            for i in page.items
            if i.answerable and i.id in visible
        ]
        if rows:
            pages.append(
                {"title": page.title.get(current_language()) if page.title else None, "rows": rows}
            )
    return _render(
        "questionnaires/review.html",
        status=status,
        assignment=assignment,
        instrument=instrument,
        lang=current_language(),
        pages=pages,
        missing=missing,
        error=error,
        last_day=_last_day(assignment),
        on_behalf=current_user.is_staff,
    )


@bp.get("/questionnaires/<id:assignment_id>/review")
@filler
def review(assignment: Assignment):
    _ensure_writable(assignment)
    return _review(assignment)


@bp.post("/questionnaires/<id:assignment_id>/submit")
@filler
def submit(assignment: Assignment):
    services.submit(assignment, current_user, current_language())
    db.session.commit()
    return redirect(url_for("questionnaires.done", assignment_id=assignment.id), 303)


@bp.get("/questionnaires/<id:assignment_id>/done")
@filler
def done(assignment: Assignment):
    if assignment.submission is None:
        return redirect(url_for("questionnaires.start", assignment_id=assignment.id))
    return _render(
        "questionnaires/done.html",
        assignment=assignment,
        instrument=get_instrument(assignment.instrument_id),
        lang=current_language(),
        alerts=services.alerts_of(assignment),
        urgent=any(alert.severity == "urgent" for alert in services.alerts_of(assignment)),
        site=_site(assignment),
        sent_on=_local_date(assignment.submission.submitted_at, assignment),
        on_behalf=current_user.is_staff,
    )


# ---------------------------------------------------------------------------------------------
# Coordinators


@bp.get("/staff/participants/<study_id>/questionnaires")
@require("staff")
def staff_overview(study_id: str):
    """A participant's open questionnaires (for assisted entry) and submissions, with scores."""
    participant = participant_of_visible_site(study_id, current_user)
    overview = services.participant_questionnaires(participant)
    site = get_protocol().site(participant.site_code)
    locale = site.formatting_locale(current_language())
    submitted = [
        {
            "assignment": a,
            "title": get_instrument(a.instrument_id).title.get(current_language())
            if a.instrument_id in get_instruments()
            else a.instrument_id,
            "sent": format_datetime(a.submission.submitted_at, locale, site.zone, "medium"),
            "alerts": services.alerts_of(a),
        }
        for a in services.submissions_of(participant)
        if a.submission is not None
    ]
    return _render(
        "questionnaires/staff_overview.html",
        participant=participant,
        overview=overview,
        submitted=submitted,
        alerts=alerts.open_alerts(participant),
    )


@bp.post("/staff/participants/<study_id>/alerts/<id:alert_id>/acknowledge")
@require("staff")
def acknowledge_alert(study_id: str, alert_id: int):
    """The former address of acknowledging: one endpoint does it now (307 keeps the form)."""
    participant = participant_of_visible_site(study_id, current_user)
    alert = db.session.get(Alert, alert_id)
    if alert is None or alert.participant_id != participant.id:
        abort(404)
    return redirect(url_for("workspace.acknowledge_alert", alert_id=alert_id), 307)
