"""Who may reach each workspace route: a coordinator of another site gets 404, a participant 403,
an anonymous visitor the sign-in page, a coordinator the admin pages 403."""

from __future__ import annotations

import pytest
import sqlalchemy as sa

from patient_portal.extensions import db
from patient_portal.questionnaires.models import Alert

EXPORTS = [
    "completion.csv",
    "answers.csv",
    "scores.csv",
    "questionnaire-responses.fhir.json",
    "clinical-data.odm.xml",
]
# (method, path); {alert} is an alert of CHUM-001.
STAFF_ROUTES = [
    ("GET", "/staff/dashboard"),
    ("GET", "/staff/exports"),
    *[("GET", f"/staff/exports/{kind}") for kind in EXPORTS],
    ("GET", "/staff/participants/CHUM-001"),
    ("POST", "/staff/participants/CHUM-001/withdraw"),
    ("POST", "/staff/alerts/{alert}/acknowledge"),
]
OTHER_SITE = [
    ("GET", "/staff/dashboard?site=CHUM"),
    *[("GET", f"/staff/exports/{kind}?site=CHUM") for kind in EXPORTS],
    ("GET", "/staff/participants/CHUM-001"),
    ("POST", "/staff/participants/CHUM-001/withdraw"),
    ("POST", "/staff/alerts/{alert}/acknowledge"),
]
ADMIN_ROUTES = [
    ("GET", "/staff/audit"),
    ("GET", "/staff/team"),
    ("POST", "/staff/team/{staff}"),
    ("POST", "/staff/team/{staff}/active"),
]


@pytest.fixture
def world(in_year, make_staff):
    chum = in_year("CHUM", days=10, habit="all")
    jgh = in_year("JGH", days=10, habit="all")
    alert = db.session.scalar(sa.select(Alert).where(Alert.participant_id == chum.id))
    other = make_staff(sites=["CHUM"])
    return {"alert": alert.id, "staff": other.id, "participant": jgh}


def _call(client, csrf_token, method, path, world):
    path = path.format(**world)
    if method == "GET":
        return client.get(path)
    token = csrf_token(client, "/")
    return client.post(path, data={"csrf_token": token, "reason": "x", "note": "x"})


@pytest.mark.parametrize(("method", "path"), OTHER_SITE)
def test_coordinator_of_another_site_gets_404(
    client, sign_in, make_staff, world, csrf_token, method, path
):
    sign_in(client, make_staff(sites=["JGH"]))
    response = _call(client, csrf_token, method, path, world)
    assert response.status_code == 404
    # The study ID may only come back inside the page's own URL (the language switch's "next").
    text = response.get_data(as_text=True).replace(path.format(**world), "")
    assert "CHUM-001" not in text
    db.session.expire_all()
    assert db.session.get(Alert, world["alert"]).acknowledged_at is None


@pytest.mark.parametrize(("method", "path"), STAFF_ROUTES + ADMIN_ROUTES)
def test_participant_gets_403(client, sign_in, world, csrf_token, method, path):
    sign_in(client, world["participant"])
    assert _call(client, csrf_token, method, path, world).status_code == 403


@pytest.mark.parametrize(("method", "path"), STAFF_ROUTES + ADMIN_ROUTES)
def test_anonymous_is_sent_to_sign_in(client, world, csrf_token, method, path):
    response = _call(client, csrf_token, method, path, world)
    assert response.status_code == 302
    assert "/sign-in" in response.headers["Location"]


@pytest.mark.parametrize(("method", "path"), ADMIN_ROUTES)
def test_coordinator_gets_403_on_admin_pages(
    client, sign_in, make_staff, world, csrf_token, method, path
):
    sign_in(client, make_staff(sites=["JGH"]))
    assert _call(client, csrf_token, method, path, world).status_code == 403


def test_nothing_in_the_workspace_names_an_allocation(client, sign_in, make_staff, world):
    """Blinding: no arm, placebo or product wording on any workspace page or export."""
    sign_in(client, make_staff(role="admin", sites=[]))
    pages = ["/staff/dashboard", "/staff/participants/CHUM-001", "/staff/exports"]
    pages += [f"/staff/exports/{kind}" for kind in EXPORTS]
    for path in pages:
        text = client.get(path).get_data(as_text=True).lower()
        for word in ("placebo", "allocation", "randomi", "ucmsc", " arm ", "treatment group"):
            assert word not in text, (path, word)
