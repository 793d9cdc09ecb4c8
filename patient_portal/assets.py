"""Static files through WhiteNoise, under content-hashed names cached for a year.

`static_url('css/portal.css')` gives `/static/css/portal.3f9a1c2b7d.css`; a deploy that changes
a file changes its name, so browsers and the service worker never keep a stale copy.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from flask import Flask, current_app
from whitenoise import WhiteNoise

from patient_portal.security import STRICT_TRANSPORT_SECURITY

STATIC_ROOT = Path(__file__).resolve().parent.parent / "static"
STATIC_PREFIX = "/static/"


def hashed_name(relative: str, content: bytes) -> str:
    digest = hashlib.sha256(content).hexdigest()[:12]
    path = Path(relative)
    return str(path.with_name(f"{path.stem}.{digest}{path.suffix}"))


class HashedWhiteNoise(WhiteNoise):
    """WhiteNoise serving each file under its hashed name too, with immutable caching there."""

    def __init__(self, application, root: Path, hsts: bool):
        self.manifest: dict[str, str] = {}
        self._hashed_urls: set[str] = set()
        self.hsts = hsts
        super().__init__(application, max_age=0, add_headers_function=self.add_security_headers)
        self.add_files(str(root), prefix=STATIC_PREFIX)

    def add_file_to_dictionary(self, url: str, path: str, stat_cache=None) -> None:
        super().add_file_to_dictionary(url, path, stat_cache)
        if self.is_compressed_variant(path, stat_cache) or path.endswith((".gz", ".br")):
            return
        relative = url.removeprefix(STATIC_PREFIX)
        hashed = STATIC_PREFIX + hashed_name(relative, Path(path).read_bytes())
        self._hashed_urls.add(hashed)
        super().add_file_to_dictionary(hashed, path, stat_cache)
        self.manifest[relative] = hashed

    def add_security_headers(self, headers, path: str, url: str) -> None:
        """Static files bypass Flask's after_request: the headers every response must carry."""
        headers["X-Content-Type-Options"] = "nosniff"
        if self.hsts:
            headers["Strict-Transport-Security"] = STRICT_TRANSPORT_SECURITY

    def immutable_file_test(self, path: str, url: str) -> bool:
        return url in self._hashed_urls


def static_url(relative: str) -> str:
    """The hashed URL of a file under static/; a missing file is a template bug, so it raises."""
    return current_app.extensions["static_manifest"][relative]


def init_app(app: Flask) -> None:
    whitenoise = HashedWhiteNoise(app.wsgi_app, STATIC_ROOT, hsts=app.config["PORTAL_HSTS"])
    # Flask's documented way to wrap the WSGI app, which mypy reads as replacing a method.
    app.wsgi_app = whitenoise  # type: ignore[method-assign]
    app.extensions["static_manifest"] = whitenoise.manifest
    app.jinja_env.globals["static_url"] = static_url
