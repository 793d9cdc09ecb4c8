"""Enrolment, passkey registration and sign-in, settings and sign-out."""

from __future__ import annotations

from flask import Blueprint, redirect, render_template, url_for
from flask_login import current_user

bp = Blueprint("accounts", __name__)


@bp.get("/sign-in")
def sign_in():
    if current_user.is_authenticated:
        return redirect(url_for("core.landing"))
    return render_template("accounts/sign_in.html")
