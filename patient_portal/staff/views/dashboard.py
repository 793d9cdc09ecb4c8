"""The coordinator's workspace: the completion dashboard, alerts to acknowledge, the exports and
(admins) the audit log.

Load → authorise → act, one commit per request. Every query is limited to the sites the staff
member may see; another site's records answer 404. Filters are plain GET arguments, so a
filtered view is a shareable URL that works without JavaScript; htmx asks for the results
fragment only.
"""

from __future__ import annotations

from datetime import date

from babel.numbers import format_percent
from flask import (
    Blueprint,
    Flask,
    Response,
    abort,
    make_response,
    redirect,
    render_template,
    request,
    stream_with_context,
    url_for,
)
from flask_babel import gettext as _
from flask_login import current_user

from patient_portal import audit
from patient_portal.accounts.auth import participant_of_visible_site, require
from patient_portal.errors import render_error
from patient_portal.extensions import db
from patient_portal.i18n import babel_locale, current_language, format_date, viewer_locale_and_zone
from patient_portal.protocol.services import get_protocol
from patient_portal.questionnaires import services as questionnaire_services
from patient_portal.questionnaires.loader import get_instruments
from patient_portal.questionnaires.models import Alert
from patient_portal.views import local_path
from patient_portal.workspace import exports, services
from patient_portal.workspace.charts import completion_chart
from patient_portal.workspace.services import STATES, WorkspaceError

bp = Blueprint("workspace", __name__, url_prefix="/staff")


# --- labels -----------------------------------------------------------------------------------


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


@bp.app_context_processor
def workspace_helpers() -> dict:
    return {
        "state_label": state_label,
        "visit_label": visit_label,
        "instrument_label": instrument_label,
        "percent": percent,
    }


def _is_fragment() -> bool:
    return bool(request.htmx) and not request.htmx.boosted


def _vary(response: Response) -> Response:
    response.vary.add("HX-Request")
    return response


def _refused(error: WorkspaceError):
    response = make_response(*render_error(error.status, error.message))
    return _vary(response)


# --- dashboard ----------------------------------------------------------------------------------


@bp.get("/dashboard")
@require("staff")
def dashboard():
    """Completion by site, visit and questionnaire, the matrix, follow-up, alerts and the chart."""
    try:
        filters = services.parse_filters(request.args, current_user)
    except WorkspaceError as error:
        return _refused(error)
    data = services.dashboard(filters)
    chart = completion_chart(
        data.chart,
        title=_("Questionnaires completed, by week of closing"),
        description=_(
            "Share of the questionnaires whose window closed that week that were completed, "
            "from %(start)s to %(end)s.",
            start=short_date(data.chart_start),
            end=short_date(data.chart_end),
        ),
        percent=percent,
        week_label=short_date,
    )
    context = {
        "data": data,
        "filters": filters,
        "chart": chart,
        "short_date": short_date,
        "states": STATES,
        "visit_keys": services.visit_keys(),
        "instruments": sorted(get_instruments()),
        "sites": services.scoped_sites(current_user, None),
        # Each label once per request: the results repeat them hundreds of times.
        "state_names": {state: state_label(state) for state in STATES},
        "visit_names": {code: visit_label(code) for code in services.visit_keys()},
        "instrument_names": {key: instrument_label(key) for key in get_instruments()},
        # Translated once, filled in for each cell of the matrix.
        "done_pattern": _("%(done)d of %(total)d done"),
    }
    if not _is_fragment():
        return _vary(make_response(render_template("workspace/dashboard.html", **context)))
    response = make_response(render_template("workspace/_results.html", **context))
    # The address bar gets the filters in use only, not the form's empty fields.
    response.headers["HX-Push-Url"] = url_for("workspace.dashboard", **filters.query_args())
    return _vary(response)


@bp.post("/alerts/<int:alert_id>/acknowledge")
@require("staff")
def acknowledge_alert(alert_id: int):
    """Acknowledge an alert from the dashboard or the participant page, with an optional note."""
    alert = db.session.get(Alert, alert_id)
    if alert is None:
        abort(404)
    participant_of_visible_site(alert.participant.study_id, current_user)
    questionnaire_services.acknowledge_alert(alert, current_user, request.form.get("note"))
    db.session.commit()
    return redirect(local_path(request.form.get("next"), url_for("workspace.dashboard")), 303)


# --- exports ----------------------------------------------------------------------------------


@bp.get("/exports")
@require("staff")
def exports_page():
    return render_template(
        "workspace/exports.html",
        kinds=exports.KINDS,
        sites=services.scoped_sites(current_user, None),
    )


@bp.get("/exports/<kind>")
@require("staff")
def export(kind: str):
    """Stream one export of the sites in scope; the download itself is audited first."""
    if kind not in exports.KINDS:
        abort(404)
    try:
        sites = services.scoped_sites(current_user, request.args.get("site") or None)
    except WorkspaceError as error:
        return _refused(error)
    spec = exports.KINDS[kind]
    audit.record(
        "export.downloaded",
        "export",
        kind,
        after={"sites": list(sites), "format": spec.media_type},
    )
    db.session.commit()
    response = Response(stream_with_context(spec.generate(list(sites))), mimetype=spec.media_type)
    response.headers["Content-Disposition"] = f'attachment; filename="{spec.filename(sites)}"'
    return response


# --- audit log (admins) -------------------------------------------------------------------------


@bp.get("/audit")
@require("admin")
def audit_log():
    try:
        filters = services.parse_audit_filters(request.args)
    except WorkspaceError as error:
        return _refused(error)
    events, more = services.audit_events(filters)
    context = {"events": events, "more": more, "filters": filters}
    if not _is_fragment():
        return _vary(make_response(render_template("workspace/audit.html", **context)))
    response = make_response(render_template("workspace/_audit_results.html", **context))
    response.headers["HX-Push-Url"] = url_for("workspace.audit_log", **filters.query_args())
    return _vary(response)


def init_app(app: Flask) -> None:
    app.register_blueprint(bp)
