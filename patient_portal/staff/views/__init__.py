"""The staff pages, one module per page, on the `staff` and `workspace` blueprints.

A form that is refused is shown again with its message and status (the enrolment form, the
withdrawal, the team's forms); any other refusal gets the app's error page or fragment.
"""

from __future__ import annotations

from collections.abc import Callable

from flask import Flask, request
from flask_login import current_user

from patient_portal import errors
from patient_portal.accounts.auth import participant_of_visible_site
from patient_portal.errors import PortalError
from patient_portal.staff.views import (
    audit_log,
    dashboard,
    exports,
    participants,
    team,
    worklist,
)
from patient_portal.staff.views.blueprints import staff, workspace
from patient_portal.staff.views.labels import template_helpers

# Importing a page module is what adds its routes to its blueprint.
__all__ = [
    "audit_log",
    "dashboard",
    "exports",
    "init_app",
    "participants",
    "staff",
    "team",
    "worklist",
    "workspace",
]


def _participant_page_again(error: PortalError):
    person = participant_of_visible_site((request.view_args or {})["study_id"], current_user)
    return participants.participant_page(person, error)


# The endpoints whose page holds the form that was sent, and how to show that page again.
FORM_PAGES: dict[str, Callable] = {
    "staff.enrol_participant": participants.participants_page,
    "staff.withdraw": _participant_page_again,
    "staff.new_enrolment_link": _participant_page_again,
    "staff.invite_staff": team.team_page,
    "staff.update_member": team.team_page,
    "staff.set_member_active": team.team_page,
    "staff.record_contact": worklist.contact_page,
}


@staff.errorhandler(PortalError)
def form_refused(error: PortalError):
    """The form's page again with the message, in place of the app's error page."""
    page = FORM_PAGES.get(request.endpoint or "")
    if page is None:
        return errors.handle_portal_error(error)
    errors.rolled_back()
    return page(error)


def init_app(app: Flask) -> None:
    app.register_blueprint(staff)
    app.register_blueprint(workspace)
    app.context_processor(template_helpers)
