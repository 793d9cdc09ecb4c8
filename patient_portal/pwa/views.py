"""The installable shell: the web app manifest, the service worker and the offline page.

The worker caches only content-hashed static files (their names change when they change) and the
two offline pages, fetched without cookies. Pages, htmx fragments and form posts always go to the
network, so no health data and no CSRF token ever lands in the Cache Storage (DESIGN §2).
"""

from __future__ import annotations

import hashlib
import json

from flask import Blueprint, Response, current_app, render_template, request, url_for
from flask_babel import force_locale
from flask_babel import gettext as _
from markupsafe import Markup

from patient_portal.assets import static_url
from patient_portal.i18n import LANGUAGES, current_language

bp = Blueprint("pwa", __name__)

THEME_COLOUR = "#1f4e79"
BACKGROUND_COLOUR = "#ffffff"
WORKER_TEMPLATE = "pwa/sw.js"
# Static files the offline page needs, cached when the worker installs.
OFFLINE_ASSETS = ("css/portal.css",)


def requested_language() -> str:
    """`?lang=` when it names a portal language, else the usual choice for this request."""
    language = request.args.get("lang", "")
    return language if language in LANGUAGES else current_language()


def offline_url(language: str) -> str:
    return url_for("pwa.offline", lang=language)


def render_offline(language: str) -> str:
    """The offline page, led by `language` and followed by the same message in the other one."""
    other = next(code for code in LANGUAGES if code != language)
    # Both parts are our own autoescaped templates, rendered each in its language.
    with force_locale(other):
        secondary = Markup(render_template("pwa/_offline_message.html", heading_level=2))  # noqa: S704
    with force_locale(language):
        primary = Markup(render_template("pwa/_offline_message.html", heading_level=1))  # noqa: S704
        return render_template(
            "pwa/offline.html",
            language=language,
            other_language=other,
            primary=primary,
            secondary=secondary,
        )


def worker_version() -> str:
    """A digest of every hashed static URL, the offline pages and the worker's own source.

    Any deploy that changes one of them changes the worker's bytes, so browsers install the new
    worker, which deletes the previous caches.
    """
    cached = current_app.extensions.get("pwa_worker_version")
    if cached:
        return cached
    digest = hashlib.sha256()
    for hashed in sorted(current_app.extensions["static_manifest"].values()):
        digest.update(hashed.encode() + b"\n")
    for language in LANGUAGES:
        digest.update(render_offline(language).encode())
    loader = current_app.jinja_env.loader
    assert loader is not None  # create_app's Flask always has its package loader
    source, _filename, _uptodate = loader.get_source(current_app.jinja_env, WORKER_TEMPLATE)
    digest.update(source.encode())
    version = digest.hexdigest()[:12]
    current_app.extensions["pwa_worker_version"] = version
    return version


@bp.get("/manifest.webmanifest")
def manifest():
    language = requested_language()
    with force_locale(language):
        body = {
            "id": "/",
            "name": _("CARE-SSc study portal"),
            "short_name": "CARE-SSc",
            "description": _("The CARE-SSc study portal for participants and study coordinators."),
            "lang": language,
            "dir": "ltr",
            "start_url": "/",
            "scope": "/",
            "display": "standalone",
            "theme_color": THEME_COLOUR,
            "background_color": BACKGROUND_COLOUR,
            "icons": [
                {
                    "src": static_url("icons/icon-192.png"),
                    "sizes": "192x192",
                    "type": "image/png",
                    "purpose": "any",
                },
                {
                    "src": static_url("icons/icon-512.png"),
                    "sizes": "512x512",
                    "type": "image/png",
                    "purpose": "any",
                },
                {
                    "src": static_url("icons/icon-maskable-512.png"),
                    "sizes": "512x512",
                    "type": "image/png",
                    "purpose": "maskable",
                },
            ],
        }
    return Response(
        json.dumps(body, ensure_ascii=False, indent=1), mimetype="application/manifest+json"
    )


@bp.get("/sw.js")
def service_worker():
    body = render_template(
        WORKER_TEMPLATE,
        version=worker_version(),
        offline_pages={language: offline_url(language) for language in LANGUAGES},
        precache=[static_url(name) for name in OFFLINE_ASSETS],
        default_language=current_app.config["PORTAL_DEFAULT_LANGUAGE"],
        icon=static_url("icons/icon-192.png"),
    )
    response = Response(body, mimetype="text/javascript")
    response.headers["Service-Worker-Allowed"] = "/"
    # Revalidated on every update check; the ETag keeps an unchanged worker a 304.
    response.headers["Cache-Control"] = "no-cache"
    response.add_etag()
    return response.make_conditional(request)


@bp.get("/offline")
def offline():
    return render_offline(requested_language())
