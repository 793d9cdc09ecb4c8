"""The exports page and the downloads: every export is limited to the sites in scope, and each
download is audited before its first byte is sent."""

from __future__ import annotations

from flask import Response, abort, render_template, request, stream_with_context
from flask_login import current_user

from patient_portal import audit
from patient_portal.accounts.auth import require
from patient_portal.extensions import db
from patient_portal.staff import exports
from patient_portal.staff.filters import scoped_sites
from patient_portal.staff.views.blueprints import workspace


@workspace.get("/exports")
@require("staff")
def exports_page():
    return render_template(
        "staff/exports.html",
        kinds=exports.KINDS,
        sites=scoped_sites(current_user, None),
    )


@workspace.get("/exports/<kind>")
@require("staff")
def export(kind: str):
    """Stream one export of the sites in scope; the download itself is audited first."""
    if kind not in exports.KINDS:
        abort(404)
    sites = scoped_sites(current_user, request.args.get("site") or None)
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
