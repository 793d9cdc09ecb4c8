"""The skeleton as a visitor and an operator meet it: pages, headers, health, configuration."""

from __future__ import annotations

import importlib
import shutil
import sys

import pytest
import sqlalchemy as sa
from whitenoise import compress

from patient_portal import assets, create_app
from patient_portal.config import ConfigError, load_settings
from patient_portal.extensions import db

SECURITY_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
}


@pytest.mark.parametrize("path", ["/", "/sign-in", "/no-such-page"])
def test_every_html_response_carries_the_security_headers(client, path):
    response = client.get(path)
    for name, value in SECURITY_HEADERS.items():
        assert response.headers[name] == value
    csp = response.headers["Content-Security-Policy"]
    assert "frame-ancestors 'none'" in csp
    assert "unsafe-inline" not in csp and "unsafe-eval" not in csp
    assert response.headers["Cache-Control"] == "no-store"
    assert "HX-Request" in response.headers["Vary"]


# Its production app writes the visitor's session through an engine of its own.
@pytest.mark.commits
def test_hsts_only_in_production(app, make_app, monkeypatch):
    assert "Strict-Transport-Security" not in app.test_client().get("/").headers
    monkeypatch.setenv("PORTAL_ENV", "production")
    monkeypatch.setenv("SECRET_KEY", "x" * 40)
    monkeypatch.setenv("PORTAL_ORIGIN", "https://localhost")
    monkeypatch.setenv("PORTAL_AUDIT_KEY", "a" * 40)
    monkeypatch.setenv("RATELIMIT_STORAGE_URI", "memory://")
    with pytest.raises(SystemExit):
        create_app()
    monkeypatch.setenv("RATELIMIT_STORAGE_URI", "redis://127.0.0.1:6379/0")
    production = make_app({"SQLALCHEMY_DATABASE_URI": app.config["SQLALCHEMY_DATABASE_URI"]})
    response = production.test_client().get("/", base_url="https://localhost")
    assert response.headers["Strict-Transport-Security"].startswith("max-age=")
    assert "Secure" in response.headers["Set-Cookie"]


def test_healthz_reports_the_database(client):
    response = client.get("/healthz")
    assert response.status_code == 200
    assert response.get_json() == {"status": "ok", "database": "ok"}
    assert "Set-Cookie" not in response.headers


def test_healthz_answers_503_when_the_database_is_gone(make_app, tmp_path):
    broken = make_app(
        {"TESTING": True, "SQLALCHEMY_DATABASE_URI": f"sqlite:///{tmp_path}/missing/dir/db.sqlite3"}
    )
    response = broken.test_client().get("/healthz")
    assert response.status_code == 503
    assert response.get_json()["database"] == "unavailable"


def test_landing_page_shows_every_site_contact(client):
    page = client.get("/", headers={"Accept-Language": "en-CA"}).get_data(as_text=True)
    assert "Jewish General Hospital" in page
    assert "+33 1 42 49 49 49" in page
    assert 'href="/sign-in"' in page


@pytest.mark.parametrize(
    ("environ", "named"),
    [
        ({"PORTAL_ENV": "production"}, "SECRET_KEY"),
        ({"PORTAL_ENV": "production", "SECRET_KEY": "x" * 40}, "PORTAL_AUDIT_KEY"),
        (
            {"PORTAL_ENV": "production", "SECRET_KEY": "x" * 40, "PORTAL_AUDIT_KEY": "short"},
            "PORTAL_AUDIT_KEY",
        ),
        ({"DATABASE_URL": "mysql://x"}, "DATABASE_URL"),
        ({"PORTAL_ORIGIN": "localhost:5000"}, "PORTAL_ORIGIN"),
        ({"PORTAL_RP_ID": "example.org"}, "PORTAL_RP_ID"),
        ({"RATELIMIT_STORAGE_URI": "memcached://x"}, "RATELIMIT_STORAGE_URI"),
        ({"PORTAL_ENV": "staging"}, "PORTAL_ENV"),
        ({"PORTAL_PROXY_HOPS": "-1"}, "PORTAL_PROXY_HOPS"),
        ({"PORTAL_PROXY_HOPS": "one"}, "PORTAL_PROXY_HOPS"),
        (
            {
                "PORTAL_ENV": "production",
                "SECRET_KEY": "x" * 40,
                "PORTAL_AUDIT_KEY": "k" * 40,
                "RATELIMIT_STORAGE_URI": "redis://127.0.0.1:6379/0",
                "PORTAL_ORIGIN": "http://portal.example.org",
                "PORTAL_RP_ID": "portal.example.org",
            },
            "PORTAL_ORIGIN",
        ),
    ],
)
def test_a_bad_setting_is_refused_by_name(tmp_path, environ, named):
    with pytest.raises(ConfigError, match=named):
        load_settings(tmp_path, environ)


def test_a_bad_setting_stops_start_up_with_one_line(monkeypatch, capsys):
    monkeypatch.setenv("PORTAL_ORIGIN", "not an origin")
    with pytest.raises(SystemExit) as stopped:
        create_app()
    assert stopped.value.code == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "PORTAL_ORIGIN" in err


@pytest.mark.parametrize(
    ("written", "origin"),
    [
        ("https://Portal.Example.org:443/", "https://portal.example.org"),
        ("http://localhost:80", "http://localhost"),
        ("https://portal.example.org:8443", "https://portal.example.org:8443"),
    ],
)
def test_the_origin_is_kept_as_browsers_send_it(tmp_path, written, origin):
    """The Origin header of a genuine request is compared with this string as it is."""
    environ = {"PORTAL_ORIGIN": written, "PORTAL_RP_ID": "example.org"}
    if "localhost" in written:
        environ["PORTAL_RP_ID"] = "localhost"
    assert load_settings(tmp_path, environ)["PORTAL_ORIGIN"] == origin


def test_development_secret_is_generated_once_and_kept(tmp_path):
    first = load_settings(tmp_path, {})["SECRET_KEY"]
    assert len(first) >= 48
    assert load_settings(tmp_path, {})["SECRET_KEY"] == first
    assert (tmp_path / "secret_key").stat().st_mode & 0o077 == 0


def test_development_audit_key_is_generated_once_apart_from_the_database(tmp_path):
    settings = load_settings(tmp_path, {})
    assert len(settings["PORTAL_AUDIT_KEY"]) >= 48
    assert settings["PORTAL_AUDIT_KEY"] not in (settings["SECRET_KEY"], "")
    assert load_settings(tmp_path, {})["PORTAL_AUDIT_KEY"] == settings["PORTAL_AUDIT_KEY"]
    assert (tmp_path / "audit_key").stat().st_mode & 0o077 == 0
    assert settings["PORTAL_AUDIT_CHECKPOINT_FILE"] == str(tmp_path / "audit-checkpoints.jsonl")


def test_utc_column_keeps_aware_times_on_every_engine(app, make_participant):
    from datetime import datetime, timedelta, timezone

    participant = make_participant()
    montreal_evening = datetime(2026, 11, 1, 1, 30, tzinfo=timezone(timedelta(hours=-4)))
    participant.created_at = montreal_evening
    db.session.commit()
    db.session.expire_all()
    stored = db.session.get(type(participant), participant.id).created_at
    assert stored == montreal_evening
    assert stored.utcoffset() == timedelta(0)


def test_sqlite_pragmas_are_set(app):
    if db.engine.dialect.name != "sqlite":
        pytest.skip("SQLite only")
    assert db.session.execute(sa.text("PRAGMA foreign_keys")).scalar() == 1
    assert db.session.execute(sa.text("PRAGMA journal_mode")).scalar() == "wal"
    assert db.session.execute(sa.text("PRAGMA busy_timeout")).scalar() == 5000


def test_static_files_have_hashed_names_and_long_caching(client):
    page = client.get("/").get_data(as_text=True)
    import re

    css = re.search(r'href="(/static/css/portal\.[0-9a-f]{12}\.css)"', page).group(1)
    response = client.get(css)
    assert response.status_code == 200
    assert b"--tap" in response.get_data()
    assert "immutable" in response.headers["Cache-Control"]
    response.close()


@pytest.fixture
def wsgi_app(monkeypatch, database_url):
    """wsgi.app as gunicorn imports it, configured by the environment (the tests' database)."""
    monkeypatch.setenv("DATABASE_URL", database_url)
    monkeypatch.delitem(sys.modules, "wsgi", raising=False)
    app = importlib.import_module("wsgi").app
    yield app
    del sys.modules["wsgi"]
    with app.app_context():
        db.engine.dispose()


def test_wsgi_module_serves_the_portal(wsgi_app):
    response = wsgi_app.test_client().get("/healthz")
    assert response.status_code == 200
    assert response.get_json() == {"status": "ok", "database": "ok"}


@pytest.fixture
def compressed_client(make_app, settings, tmp_path, monkeypatch):
    """A client of an app whose static files were compressed as `make` does, in a copy: the
    test does not depend on a build step having run in the working tree."""
    root = tmp_path / "static"
    shutil.copytree(assets.STATIC_ROOT, root, ignore=shutil.ignore_patterns("*.gz", "*.br"))
    compress.main(["--quiet", "--no-brotli", str(root)])
    monkeypatch.setattr(assets, "STATIC_ROOT", root)
    return make_app(settings).test_client()


# Its app writes the visitor's session through its own engine, which only real commits share.
@pytest.mark.commits
def test_static_files_are_served_compressed_to_browsers_that_accept_it(app, compressed_client):
    import re

    page = compressed_client.get("/").get_data(as_text=True)
    css = re.search(r'href="(/static/css/portal\.[0-9a-f]{12}\.css)"', page).group(1)
    response = compressed_client.get(css, headers={"Accept-Encoding": "gzip"})
    assert response.headers.get("Content-Encoding") == "gzip"
    assert "immutable" in response.headers["Cache-Control"]
    response.close()
