"""The two blueprints of the staff pages, both under /staff.

`staff` (participants, the study team) and `workspace` (dashboard, exports, audit log) keep the
names their endpoints have always had, so every URL and `url_for` call stays as it was.
"""

from __future__ import annotations

from flask import Blueprint
from htmx_flask import request

staff = Blueprint("staff", __name__, url_prefix="/staff")
workspace = Blueprint("workspace", __name__, url_prefix="/staff")


def is_fragment() -> bool:
    """htmx asked for the results only (a boosted link wants the whole page)."""
    return bool(request.htmx) and not request.htmx.boosted
