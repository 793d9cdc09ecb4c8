"""Where the portal lives: its public origin, the proxies in front of it, and the origin check
that every state-changing request passes besides its CSRF token.

Behind a TLS proxy the app sees the proxy's address, plain HTTP and whatever Host the client
sent. `PORTAL_PROXY_HOPS` says how many proxies add X-Forwarded-* headers; werkzeug's ProxyFix
trusts exactly that many values, counted from the right, so a client cannot pose as another
address by sending its own X-Forwarded-For (rate limits key on the real client). Absolute URLs
never come from the request: they are PORTAL_ORIGIN plus a path.
"""

from __future__ import annotations

from flask import Flask, current_app, request, url_for
from flask_wtf.csrf import CSRFError
from werkzeug.middleware.proxy_fix import ProxyFix

# Methods that never change anything: the CSRF token and the origin check leave them alone.
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "TRACE"})


def public_url(endpoint: str, **values) -> str:
    """An absolute URL on the public origin, whatever Host or scheme the request came with."""
    return current_app.config["PORTAL_ORIGIN"] + url_for(endpoint, **values)


def absolute(path: str) -> str:
    """An absolute URL for a path of the portal (a reminder's target, say)."""
    return current_app.config["PORTAL_ORIGIN"] + path


def _same_origin_referrer(referrer: str, origin: str) -> bool:
    return referrer == origin or referrer.startswith(origin + "/")


def check_request_origin() -> None:
    """Refuse a state-changing request that a browser says came from another origin.

    Browsers send Origin on every POST; with `Referrer-Policy: same-origin` they send the
    Referer to the portal itself and to no one else. A request carrying neither comes from a
    program, not a page of another site: outside production it is let through for test clients
    and scripts, in production it is refused (the CSRF token is still checked either way).
    """
    if request.method in SAFE_METHODS:
        return
    origin = current_app.config["PORTAL_ORIGIN"]
    sent_origin = request.headers.get("Origin")
    if sent_origin and sent_origin != "null":
        if sent_origin != origin:
            raise CSRFError("The request came from another origin.")
        return
    referrer = request.headers.get("Referer")
    if referrer:
        if not _same_origin_referrer(referrer, origin):
            raise CSRFError("The request came from another origin.")
        return
    if current_app.config["PORTAL_ENV"] == "production":
        raise CSRFError("The request says nothing of its origin.")


def init_app(app: Flask) -> None:
    hops = app.config["PORTAL_PROXY_HOPS"]
    if hops:
        app.wsgi_app = ProxyFix(  # type: ignore[method-assign]  # Flask's documented way
            app.wsgi_app, x_for=hops, x_proto=hops, x_host=hops
        )
    app.before_request(check_request_origin)
