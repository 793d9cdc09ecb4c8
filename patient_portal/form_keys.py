"""Form keys: every staff form that creates or records something carries a fresh random key,
and the server-side session remembers the keys it has handled and the page each led to. A form
sent again (a second press, the back button, a browser re-posting on reload) leads to that page
instead of recording twice (Post/Redirect/Get does the rest: the answer to a form is a redirect).
"""

from __future__ import annotations

import secrets

from flask import Flask, request, session

HANDLED = "handled_form_keys"
# Enough for a morning of forms in one tab and its back button; the oldest are forgotten.
KEPT = 30
KEY_MAX = 64


def new_form_key() -> str:
    """A key for one form as it is shown."""
    return secrets.token_urlsafe(16)


def sent_key() -> str:
    """The key the form sent ("" for a form without one)."""
    return request.form.get("form_key", "")[:KEY_MAX]


def handled(key: str) -> str | None:
    """Where the first sending of this form led, if this session handled it already."""
    if not key:
        return None
    return session.get(HANDLED, {}).get(key)


def remember(key: str, location: str) -> None:
    """Note that the form with this key was handled, and where it led."""
    if not key:
        return
    kept = list(session.get(HANDLED, {}).items())[-(KEPT - 1) :]
    session[HANDLED] = {**dict(kept), key: location}


def init_app(app: Flask) -> None:
    app.add_template_global(new_form_key, "new_form_key")
