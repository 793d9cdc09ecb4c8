"""Error pages in the visitor's language: a clear message and the right status, never a trace."""

from __future__ import annotations

import logging

from flask import Flask, render_template, request
from flask_babel import gettext as _
from flask_wtf.csrf import CSRFError
from werkzeug.exceptions import HTTPException, InternalServerError

from patient_portal.extensions import db

log = logging.getLogger(__name__)


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
        413: (_("Too much was sent"), _("What was sent is larger than the portal accepts.")),
        422: (_("Please check your answer"), _("Something in what was sent is not valid.")),
        429: (_("Too many attempts"), _("Please wait a minute before trying again.")),
        500: (
            _("Something went wrong on our side"),
            _("Nothing you saved before is lost. Please try again in a moment."),
        ),
    }


def render_error(status: int, detail: str | None = None):
    """The error page, or only its message when htmx asked for a fragment."""
    # Whatever the failed request had written but not committed must not be saved by anyone.
    db.session.rollback()
    title, default_detail = _messages().get(status, _messages()[400])
    template = (
        "errors/_message.html" if request.htmx and not request.htmx.boosted else "errors/page.html"
    )
    response = render_template(
        template, status=status, title=title, detail=detail or default_detail
    )
    return response, status


def handle_http_error(error: HTTPException):
    if error.code is None or error.code < 400:
        return error
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


def handle_unexpected_error(error: Exception):
    if isinstance(error, HTTPException):
        return handle_http_error(error)
    log.exception("Unhandled error on %s %s", request.method, request.path)
    return render_error(InternalServerError.code)


def init_app(app: Flask) -> None:
    app.register_error_handler(HTTPException, handle_http_error)
    app.register_error_handler(Exception, handle_unexpected_error)
