"""The coordinator's dashboard: completion by site, visit and questionnaire, the matrix,
follow-up, alerts to acknowledge and the weekly chart.

Load → authorise → act, one commit per request. Every query is limited to the sites the staff
member may see; another site's records answer 404. Filters are plain GET arguments, so a
filtered view is a shareable URL that works without JavaScript; htmx asks for the results
fragment only.
"""

from __future__ import annotations

from flask import abort, make_response, redirect, render_template, request, url_for
from flask_babel import gettext as _
from flask_login import current_user

from patient_portal import form_keys
from patient_portal.accounts.auth import participant_of_visible_site, require
from patient_portal.extensions import db
from patient_portal.questionnaires import alerts
from patient_portal.questionnaires.loader import get_instruments
from patient_portal.questionnaires.models import Alert
from patient_portal.questionnaires.states import STATES
from patient_portal.staff import dashboard as read_model
from patient_portal.staff.charts import completion_chart
from patient_portal.staff.filters import parse_filters, scoped_sites, visit_keys
from patient_portal.staff.views.blueprints import is_fragment, workspace
from patient_portal.staff.views.labels import (
    instrument_label,
    percent,
    short_date,
    state_label,
    visit_label,
)
from patient_portal.views import local_path


@workspace.get("/dashboard")
@require("staff")
def dashboard():
    """Completion by site, visit and questionnaire, the matrix, follow-up, alerts and the chart."""
    filters = parse_filters(request.args, current_user)
    data = read_model.dashboard(filters)
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
        "visit_keys": visit_keys(),
        "instruments": sorted(get_instruments()),
        "sites": scoped_sites(current_user, None),
        # Each label once per request: the results repeat them hundreds of times.
        "state_names": {state: state_label(state) for state in STATES},
        "visit_names": {code: visit_label(code) for code in visit_keys()},
        "instrument_names": {key: instrument_label(key) for key in get_instruments()},
        # Translated once, filled in for each cell of the matrix.
        "done_pattern": _("%(done)d of %(total)d done"),
    }
    if not is_fragment():
        return render_template("staff/dashboard.html", **context)
    response = make_response(render_template("staff/_results.html", **context))
    # The address bar gets the filters in use only, not the form's empty fields.
    response.headers["HX-Push-Url"] = url_for("workspace.dashboard", **filters.query_args())
    return response


@workspace.post("/alerts/<id:alert_id>/acknowledge")
@require("staff")
def acknowledge_alert(alert_id: int):
    """Acknowledge an alert from any staff page, with what was done and an optional note."""
    alert = db.session.get(Alert, alert_id)
    if alert is None:
        abort(404)
    participant_of_visible_site(alert.participant.study_id, current_user)
    target = local_path(request.form.get("next"), url_for("workspace.dashboard"))
    key = form_keys.sent_key()
    if form_keys.handled(key):
        return redirect(target, 303)
    alerts.acknowledge(
        alert, current_user, request.form.get("outcome", ""), request.form.get("note")
    )
    db.session.commit()
    form_keys.remember(key, target)
    return redirect(target, 303)
