"""The audit viewer (admins): the audit trail, newest first, filtered by actor, action, entity
and period; htmx asks for the results fragment only."""

from __future__ import annotations

from flask import make_response, render_template, request, url_for

from patient_portal.accounts.auth import require
from patient_portal.staff.audit_log import audit_events
from patient_portal.staff.filters import parse_audit_filters
from patient_portal.staff.views.audit_sentences import event_lines
from patient_portal.staff.views.blueprints import is_fragment, workspace


@workspace.get("/audit")
@require("admin")
def audit_log():
    filters = parse_audit_filters(request.args)
    events, more = audit_events(filters)
    context = {"events": events, "more": more, "filters": filters}
    if not is_fragment():
        return render_template("staff/audit.html", **context)
    response = make_response(render_template("staff/_audit_results.html", **context))
    response.headers["HX-Push-Url"] = url_for("workspace.audit_log", **filters.query_args())
    return response


@workspace.app_context_processor
def _audit_helpers() -> dict:
    # The participant page tells its history with the same sentences as the audit log.
    return {"audit_event_lines": event_lines}
