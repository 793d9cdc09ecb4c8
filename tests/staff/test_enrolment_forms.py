"""Enrolment forms follow Post/Redirect/Get: the link is shown once on a page of its own, and
neither reloading that page nor sending the same form again enrols anyone twice (issue 18)."""

from __future__ import annotations

import re

import sqlalchemy as sa

from patient_portal.accounts.models import EnrolmentToken, Participant
from patient_portal.extensions import db

FORM_KEY = re.compile(r'name="form_key" value="([^"]+)"')


def _participants() -> int:
    return db.session.scalar(sa.select(sa.func.count()).select_from(Participant)) or 0


def _enrol_form(client, csrf_token) -> dict[str, str]:
    page = client.get("/staff/participants").get_data(as_text=True)
    match = FORM_KEY.search(page)
    assert match
    token = csrf_token(client, "/staff/participants")
    return {"csrf_token": token, "form_key": match.group(1), "site": "JGH", "language": "fr"}


def test_the_link_is_shown_once_and_a_reload_makes_nobody(
    app, client, sign_in, make_staff, csrf_token
):
    sign_in(client, make_staff(sites=["JGH"]))
    sent = client.post("/staff/participants", data=_enrol_form(client, csrf_token))
    assert sent.status_code == 303 and sent.headers["Location"] == "/staff/enrolment-link"
    shown = client.get("/staff/enrolment-link")
    assert shown.status_code == 200 and "/enrol/" in shown.get_data(as_text=True)
    again = client.get("/staff/enrolment-link")
    assert again.status_code == 410
    assert "No longer shown" in again.get_data(as_text=True)
    assert "An enrolment link is shown only once" in again.get_data(as_text=True)
    assert "/enrol/" not in again.get_data(as_text=True)
    assert _participants() == 1


def test_the_same_form_sent_twice_enrols_once(app, client, sign_in, make_staff, csrf_token):
    sign_in(client, make_staff(sites=["JGH"]))
    form = _enrol_form(client, csrf_token)
    first = client.post("/staff/participants", data=form)
    second = client.post("/staff/participants", data=form)
    assert first.headers["Location"] == "/staff/enrolment-link"
    # The second press opens the participant the first one made.
    assert second.status_code == 303 and second.headers["Location"] == "/staff/participants/JGH-001"
    assert _participants() == 1
    # A new form (a new key) is a new participant, as intended.
    client.post("/staff/participants", data=_enrol_form(client, csrf_token))
    assert _participants() == 2


def test_a_new_link_for_a_participant_is_shown_on_its_own_page(
    app, client, sign_in, make_staff, make_participant, csrf_token
):
    person = make_participant(site_code="JGH")
    sign_in(client, make_staff(sites=["JGH"]))
    token = csrf_token(client, f"/staff/participants/{person.study_id}")
    sent = client.post(
        f"/staff/participants/{person.study_id}/enrolment-link", data={"csrf_token": token}
    )
    assert sent.status_code == 303
    assert "/enrol/" in client.get(sent.headers["Location"]).get_data(as_text=True)
    assert client.get(sent.headers["Location"]).status_code == 410
    links = db.session.scalars(
        sa.select(EnrolmentToken).where(EnrolmentToken.participant_id == person.id)
    ).all()
    assert len(links) == 1


def test_nothing_to_show_for_a_participant(app, client, sign_in, make_participant):
    sign_in(client, make_participant())
    assert client.get("/staff/enrolment-link").status_code == 403
