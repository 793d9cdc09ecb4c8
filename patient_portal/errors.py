"""Error pages in the visitor's language: a clear message and the right status, never a trace."""

from __future__ import annotations

import logging
import traceback

from flask import Flask, jsonify, render_template
from flask_babel import gettext as _
from flask_login import current_user
from flask_wtf.csrf import CSRFError
from htmx_flask import request
from sqlalchemy.exc import StatementError
from werkzeug.exceptions import HTTPException, InternalServerError

from patient_portal.extensions import db

log = logging.getLogger(__name__)


class PortalError(Exception):
    """A refused request: a message translated for the person in front of the screen, the HTTP
    status to answer with, and the form field at fault, if any.

    Services raise it; views do not catch it. The app's handler rolls back and answers with the
    error page, its htmx fragment or JSON; a blueprint whose form should be shown again with
    the message registers its own handler (and calls `rolled_back`).
    """

    status = 400

    def __init__(self, message: str, status: int | None = None, field: str | None = None):
        super().__init__(message)
        self.message = message
        self.field = field
        if status is not None:
            self.status = status


def _messages() -> dict[int, tuple[str, str]]:
    return {
        400: (_("This request could not be understood"), _("Please go back and try again.")),
        403: (
            _("This page is not for your account"),
            _("You are signed in, but this page belongs to another kind of account."),
        ),
        404: (_("Page not found"), _("This page does not exist or is no longer available.")),
        405: (
            _("This action is not possible here"),
            _("Please go back and use the buttons on the page."),
        ),
        410: (_("No longer shown"), _("What was here has been shown already.")),
        413: (_("Too much was sent"), _("What was sent is larger than the portal accepts.")),
        422: (_("Please check your answer"), _("Something in what was sent is not valid.")),
        429: (_("Too many attempts"), _("Please wait a minute before trying again.")),
        500: (
            _("Something went wrong on our side"),
            _("Nothing you saved before is lost. Please try again in a moment."),
        ),
    }


def rolled_back() -> None:
    """Whatever the failed request had written but not committed must not be saved by anyone."""
    db.session.rollback()


def wants_json() -> bool:
    """A script's request (passkey ceremonies, push subscriptions) is answered in JSON."""
    return request.is_json or request.accept_mimetypes.best == "application/json"


def render_error(status: int, detail: str | None = None):
    """The error page, or only its message when htmx asked for a fragment."""
    rolled_back()
    title, default_detail = _messages().get(status, _messages()[400])
    template = (
        "errors/_message.html" if request.htmx and not request.htmx.boosted else "errors/page.html"
    )
    response = render_template(
        template, status=status, title=title, detail=detail or default_detail
    )
    return response, status


# Refusals a security reviewer wants to see in the log (ASVS 16.3.2): who, which route, why.
# The route's rule, never the path: paths carry enrolment and calendar tokens.
SECURITY_REFUSALS = {403: "forbidden", 429: "rate limited"}


def log_refusal(reason: str) -> None:
    who = current_user.audit_name if current_user and current_user.is_authenticated else "anonymous"
    rule = request.url_rule.rule if request.url_rule is not None else "(no route)"
    log.warning(
        "security: %s: %s %s by %s from %s", reason, request.method, rule, who, request.remote_addr
    )


def handle_http_error(error: HTTPException):
    if error.code is None or error.code < 400:
        return error
    if isinstance(error, CSRFError):
        log_refusal(f"CSRF ({error.description})")
    elif error.code in SECURITY_REFUSALS:
        log_refusal(SECURITY_REFUSALS[error.code])
    if isinstance(error, CSRFError):
        return render_error(
            400,
            _(
                "This form has expired or was sent from elsewhere. Please reload the page and try again."
            ),
        )
    if error.code == 429:
        return render_error(429)
    return render_error(error.code)


def handle_portal_error(error: PortalError):
    if wants_json():
        rolled_back()
        return jsonify(error=error.message), error.status
    return render_error(error.status, error.message)


def handle_unexpected_error(error: Exception):
    if isinstance(error, HTTPException):
        return handle_http_error(error)
    if isinstance(error, StatementError):
        # The database's own message can quote the values (PostgreSQL's DETAIL "Key (email)=
        # (...) already exists", "Failing row contains (...)"), and the engine hides only the
        # parameters: the log gets the statement, the error's class and code, and the stack.
        log.error(
            "Unhandled database error on %s %s: %s (%s, SQLSTATE %s)\n%s\n%s",
            request.method,
            request.path,
            type(error).__name__,
            type(error.orig).__name__,
            getattr(error.orig, "sqlstate", None),
            error.statement,
            "".join(traceback.format_tb(error.__traceback__)),
        )
    else:
        log.exception("Unhandled error on %s %s", request.method, request.path)
    return render_error(InternalServerError.code)


def init_app(app: Flask) -> None:
    app.register_error_handler(PortalError, handle_portal_error)
    app.register_error_handler(HTTPException, handle_http_error)
    app.register_error_handler(Exception, handle_unexpected_error)
