"""The manifest, the service worker's route and rules, the offline page and the icons."""

from __future__ import annotations

import json
import re
import struct
import zlib

import pytest

from patient_portal.assets import STATIC_ROOT

HASHED = re.compile(r"^/static/.+\.[0-9a-f]{12}\.[a-z0-9]+$")


def static_status(client, url: str) -> int:
    """The status of a WhiteNoise file, closing the file it opened."""
    with client.get(url) as response:
        return response.status_code


def worker_constant(source: str, name: str):
    match = re.search(rf"^const {name} = (.+);$", source, re.MULTILINE)
    assert match, f"no constant {name} in the worker"
    return match.group(1)


@pytest.mark.parametrize(
    ("query", "language", "name"),
    [
        ("?lang=fr", "fr", "Portail de l’étude CARE-SSc"),
        ("?lang=en", "en", "CARE-SSc study portal"),
    ],
)
def test_manifest_fields_in_the_requested_language(client, query, language, name):
    response = client.get("/manifest.webmanifest" + query)
    assert response.status_code == 200
    assert response.mimetype == "application/manifest+json"
    manifest = json.loads(response.get_data(as_text=True))
    assert manifest["lang"] == language
    assert manifest["name"] == name
    assert manifest["short_name"] == "CARE-SSc"
    assert manifest["start_url"] == "/" and manifest["scope"] == "/"
    assert manifest["display"] == "standalone"
    assert manifest["theme_color"] == "#1f4e79"
    assert manifest["background_color"] == "#ffffff"
    icons = {(icon["sizes"], icon["purpose"]): icon for icon in manifest["icons"]}
    assert set(icons) == {("192x192", "any"), ("512x512", "any"), ("512x512", "maskable")}
    for icon in manifest["icons"]:
        assert icon["type"] == "image/png"
        assert HASHED.match(icon["src"]), icon["src"]
        assert static_status(client, icon["src"]) == 200


def test_manifest_without_a_language_follows_accept_language(client):
    response = client.get("/manifest.webmanifest", headers={"Accept-Language": "en-CA,en;q=0.8"})
    assert json.loads(response.get_data(as_text=True))["lang"] == "en"
    response = client.get("/manifest.webmanifest?lang=de", headers={"Accept-Language": "fr"})
    assert json.loads(response.get_data(as_text=True))["lang"] == "fr"


@pytest.mark.parametrize(
    ("name", "size", "opaque_corner"),
    [
        ("icon-192.png", 192, False),
        ("icon-512.png", 512, False),
        ("icon-maskable-512.png", 512, True),
        ("apple-touch-icon-180.png", 180, True),
    ],
)
def test_icons_are_png_of_the_declared_size(name, size, opaque_corner):

    data = (STATIC_ROOT / "icons" / name).read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    width, height, depth, colour_type = struct.unpack(">IIBB", data[16:26])
    assert (width, height, depth, colour_type) == (size, size, 8, 6)
    # Maskable and Apple icons fill the whole square: a platform mask must never show a hole.
    idat = data[data.index(b"IDAT") + 4 :]
    first_pixel_alpha = zlib.decompressobj().decompress(idat)[4]
    assert (first_pixel_alpha == 255) is opaque_corner


def test_pages_link_the_manifest_the_apple_icon_and_the_registration_script(client):
    page = client.get("/", headers={"Accept-Language": "en"}).get_data(as_text=True)
    assert '<link rel="manifest" href="/manifest.webmanifest?lang=en">' in page
    apple = re.search(r'<link rel="apple-touch-icon" href="([^"]+)">', page)
    assert apple and HASHED.match(apple.group(1))
    assert static_status(client, apple.group(1)) == 200
    script = re.search(
        r'<script src="(/static/js/pwa\.[0-9a-f]{12}\.js)" data-worker="/sw.js"', page
    )
    assert script, "the page does not load pwa.js with the worker's URL"


def test_worker_route_headers(client):
    response = client.get("/sw.js")
    assert response.status_code == 200
    assert response.mimetype == "text/javascript"
    assert response.headers["Service-Worker-Allowed"] == "/"
    assert response.headers["Cache-Control"] == "no-cache"
    assert "script-src 'self'" in response.headers["Content-Security-Policy"]
    assert "Set-Cookie" not in response.headers
    again = client.get("/sw.js", headers={"If-None-Match": response.headers["ETag"]})
    assert again.status_code == 304


def test_worker_precaches_the_offline_pages_and_hashed_static_files_all_served(client):
    """What the worker stores at install; cache.addAll() fails whole if one URL does not answer.
    What it keeps afterwards (only these and hashed static files, nothing of a participant's
    pages), its takeover and its cleaning of old caches are seen in Chromium: tests/e2e/test_pwa.py.
    """
    source = client.get("/sw.js").get_data(as_text=True)
    offline_pages = json.loads(worker_constant(source, "OFFLINE_PAGES"))
    assert offline_pages == {"fr": "/offline?lang=fr", "en": "/offline?lang=en"}
    for language, url in offline_pages.items():
        response = client.get(url)
        assert response.status_code == 200
        assert f'<html lang="{language}">' in response.get_data(as_text=True)
    precache = json.loads(worker_constant(source, "PRECACHE"))
    assert precache and all(HASHED.match(url) for url in precache)
    assert all(static_status(client, url) == 200 for url in precache)


def test_worker_pattern_recognises_only_content_hashed_static_urls(client):
    source = client.get("/sw.js").get_data(as_text=True)
    pattern = worker_constant(source, "HASHED_STATIC")
    assert pattern.startswith("/") and pattern.endswith("/")
    regex = re.compile(pattern[1:-1].replace(r"\/", "/"))
    for url in client.application.extensions["static_manifest"].values():
        assert regex.match(url), url
    for url in [
        "/static/css/portal.css",
        "/static/js/pwa.js",
        "/home",
        "/offline",
        "/questionnaires/weekly-check-in/1",
        "/sw.js",
        "/static/css/portal.f5af38ea122.css",
        "/staticx/css/portal.f5af38ea1225.css",
    ]:
        assert not regex.match(url), url


def test_worker_version_follows_the_static_files(app, client):
    first = worker_constant(client.get("/sw.js").get_data(as_text=True), "CACHE")
    app.extensions.pop("pwa_worker_version")
    app.extensions["static_manifest"]["css/portal.css"] = "/static/css/portal.000000000000.css"
    second = worker_constant(client.get("/sw.js").get_data(as_text=True), "CACHE")
    assert first != second
    assert re.fullmatch(r'PREFIX \+ "[0-9a-f]{12}"', second)


@pytest.mark.parametrize(
    ("language", "heading", "other", "other_heading"),
    [
        ("fr", "Vous êtes hors ligne", "en", "You are offline"),
        ("en", "You are offline", "fr", "Vous êtes hors ligne"),
    ],
)
def test_offline_page_is_bilingual_and_holds_nothing_personal(
    client, make_participant, sign_in, language, heading, other, other_heading
):
    sign_in(client, make_participant(study_id="JGH-042", language="fr"))
    response = client.get(f"/offline?lang={language}")
    assert response.status_code == 200
    assert "Set-Cookie" not in response.headers
    page = response.get_data(as_text=True)
    assert f'<html lang="{language}">' in page
    assert f'<h1 id="offline-heading-1">{heading}</h1>' in page
    assert f'<section lang="{other}"' in page and other_heading in page
    assert "JGH-042" not in page
    assert "csrf" not in page.lower()
    assert "<script" not in page


@pytest.mark.parametrize(
    ("language", "heading", "iphone_note"),
    [
        ("fr", "Mettre le portail sur mon écran d’accueil", "Sur iPhone, les rappels"),
        ("en", "Put the portal on my home screen", "On iPhone, reminders by notification"),
    ],
)
def test_participant_settings_explain_installing_on_android_and_iphone(
    client, make_participant, sign_in, language, heading, iphone_note
):
    sign_in(client, make_participant(language=language))
    page = client.get("/settings").get_data(as_text=True)
    assert heading in page
    assert iphone_note in page
    # The browser's own install prompt is offered only once pwa.js knows it is available.
    assert re.search(r'<button[^>]*id="install-app"[^>]*hidden', page)


def test_staff_settings_have_no_install_help(client, make_staff, sign_in):
    sign_in(client, make_staff())
    page = client.get("/settings").get_data(as_text=True)
    assert "home screen" not in page and "install-app" not in page
