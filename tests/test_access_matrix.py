"""The access matrix: every route of `app.url_map` (method + rule) called by each identity of
tests/route_world.py with participant A's resources in the URL, and the outcome it must get, as
written in tests/access_matrix.csv.

A route without a row, a row without a route, or an outcome that differs fails the test. After a
deliberate change, rewrite the file with `PORTAL_WRITE_ACCESS_MATRIX=1 pytest
tests/test_access_matrix.py` and review its diff like code (docs/input-bounds.md).

An outcome is the status code; a redirect adds where it goes when that is the sign-in page
("302 sign-in"). Each call runs inside a savepoint rolled back after it, so that one identity's
withdrawal or sign-out does not change what the next one meets.
"""

from __future__ import annotations

import csv
import os
from datetime import timedelta
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from flask import Flask

from patient_portal.extensions import db, limiter
from tests.conftest import JoinedSession, csrf_token_for
from tests.route_world import World, build_path, build_world, realistic_value, routes

MATRIX = Path(__file__).with_name("access_matrix.csv")
IDENTITIES = [
    "anonymous",
    "participant_a",
    "participant_b",
    "coordinator",
    "other_site_coordinator",
    "deactivated_staff",
    "withdrawn_participant",
    "admin",
]


def _owner(world: World, identity: str):
    return {
        "anonymous": None,
        "participant_a": world.participant_a,
        "participant_b": world.participant_b,
        "coordinator": world.coordinator,
        "other_site_coordinator": world.other_site,
        "deactivated_staff": world.deactivated,
        "withdrawn_participant": world.withdrawn,
        "admin": world.admin,
    }[identity]


def valid_form(endpoint: str, world: World) -> dict[str, str | list[str]]:
    """What the page's own form would send, so that an allowed identity meets success."""
    day0 = world.participant_a.day0
    assert day0 is not None
    forms: dict[str, dict[str, str | list[str]]] = {
        "core.switch_language": {"language": "en", "next": "/"},
        "accounts.rename_passkey": {"nickname": "Work phone"},
        "questionnaires.acknowledge_alert": {"outcome": "called", "note": "Called back"},
        "workspace.acknowledge_alert": {"outcome": "called", "note": "Called back"},
        "staff.set_member_investigator": {"investigator": "yes"},
        "staff.enrol_participant": {"site": "JGH", "language": "en", "day0": ""},
        "staff.withdraw": {"reason": "Moved away"},
        "staff.new_enrolment_link": {"reason": "new_device"},
        "schedule.staff_day0": {"day0": (day0 + timedelta(days=1)).isoformat(), "reason": "Typo"},
        "schedule.staff_appointment": {
            "date": (day0 + timedelta(days=28)).isoformat(),
            "time": "10:00",
        },
        "schedule.staff_status": {"status": "completed"},
        "staff.invite_staff": {
            "email": "new.member@example.org",
            "name": "New member",
            "role": "coordinator",
            "sites": ["JGH"],
        },
        "staff.update_member": {"role": "coordinator", "sites": ["CHUM", "SLS"]},
        "staff.set_member_active": {"active": "no"},
        "reminders.save_email": {"email": "participant@example.org"},
    }
    return forms.get(endpoint, {})


def outcome(response) -> str:
    status = str(response.status_code)
    location = response.headers.get("Location", "")
    if response.status_code in (301, 302, 303) and urlsplit(location).path == "/sign-in":
        return f"{status} sign-in"
    return status


def observed_matrix(app: Flask, world: World, clients: dict) -> dict[tuple[str, str], dict]:
    connection = JoinedSession.joined[db.engine]
    rows = {}
    for method, rule in routes(app):
        path = build_path(rule, {n: realistic_value(rule, n, world.values) for n in rule.arguments})
        form = valid_form(rule.endpoint, world)
        row = {}
        for identity in IDENTITIES:
            # A new client with only the identity's session cookie: a sign-out or a language
            # change of an earlier call (cookies, unlike rows, are not rolled back) is forgotten.
            cookie, token = clients[identity]
            client = app.test_client()
            client.set_cookie(app.config["SESSION_COOKIE_NAME"], cookie, domain="localhost")
            db.session.remove()
            savepoint = connection.begin_nested()
            try:
                if method == "GET":
                    response = client.get(path)
                else:
                    response = client.post(path, data={**form, "csrf_token": token})
                response.get_data()
                response.close()
                row[identity] = outcome(response)
            finally:
                db.session.remove()
                savepoint.rollback()
        rows[(method, rule.rule)] = row
    return rows


def read_matrix() -> dict[tuple[str, str], dict]:
    with MATRIX.open(newline="") as file:
        return {
            (row["method"], row["rule"]): {identity: row[identity] for identity in IDENTITIES}
            for row in csv.DictReader(file)
        }


def write_matrix(rows: dict[tuple[str, str], dict]) -> None:
    with MATRIX.open("w", newline="") as file:
        writer = csv.DictWriter(file, ["method", "rule", *IDENTITIES], lineterminator="\n")
        writer.writeheader()
        for (method, rule), row in rows.items():
            writer.writerow({"method": method, "rule": rule, **row})


@pytest.fixture
def world(app, make_participant, make_staff, monkeypatch) -> World:
    monkeypatch.setattr(limiter, "enabled", False)
    return build_world(make_participant, make_staff)


@pytest.fixture
def clients(app, world: World, sign_in) -> dict[str, tuple[str, str]]:
    """identity -> (its session cookie, its CSRF token); the anonymous visitor's session is the
    one the first page gave them."""
    made = {}
    for identity in IDENTITIES:
        client = app.test_client()
        owner = _owner(world, identity)
        if owner is not None:
            sign_in(client, owner)
        token = csrf_token_for(client, "/")
        cookie = client.get_cookie(app.config["SESSION_COOKIE_NAME"], domain="localhost")
        assert cookie is not None
        made[identity] = (cookie.value, token)
    return made


def test_every_route_answers_each_identity_as_the_matrix_says(app, world, clients):
    observed = observed_matrix(app, world, clients)
    if os.environ.get("PORTAL_WRITE_ACCESS_MATRIX") == "1":
        write_matrix(observed)
    expected = read_matrix()
    assert sorted(set(observed) - set(expected)) == [], "routes without a row in the matrix"
    assert sorted(set(expected) - set(observed)) == [], "rows for routes that no longer exist"
    differences = [
        f"{method} {rule} as {identity}: expected {expected[key][identity]}, got {got}"
        for key, row in observed.items()
        for identity, got in row.items()
        if expected[key][identity] != got
        for method, rule in [key]
    ]
    assert differences == []
