"""The participant's pages: one question per screen, autosave, review, submit, errors."""

from __future__ import annotations

from datetime import timedelta

import pytest
import sqlalchemy as sa

from patient_portal.audit import AuditEvent
from patient_portal.extensions import db
from patient_portal.questionnaires import services
from patient_portal.questionnaires.models import Alert, Answer, Submission
from tests.questionnaires.conftest import CALM_WEEK, weekly

HTMX = {"HX-Request": "true"}


@pytest.fixture
def participant_client(client, planned, sign_in, csrf_token):
    participant = planned(language="en")
    sign_in(client, participant)
    assignment = weekly(participant)
    token = csrf_token(client, f"/questionnaires/{assignment.id}/items/raynaud")
    return client, participant, assignment, token


def _post(client, token, assignment, item_id, values, htmx=True):
    data = {"csrf_token": token, "value": values}
    headers = HTMX if htmx else {}
    return client.post(
        f"/questionnaires/{assignment.id}/items/{item_id}", data=data, headers=headers
    )


def _value(assignment, item_id):
    db.session.expire_all()
    row = db.session.scalars(
        sa.select(Answer).where(Answer.assignment_id == assignment.id, Answer.item_id == item_id)
    ).one_or_none()
    return None if row is None else row.value


def test_pages_need_a_signed_in_participant(client, planned):
    participant = planned()
    assignment = weekly(participant)
    for path in ("/questionnaires", f"/questionnaires/{assignment.id}/items/pain"):
        response = client.get(path)
        assert response.status_code == 302 and "/sign-in" in response.location


def test_list_and_start_page(participant_client):
    client, _, assignment, _ = participant_client
    page = client.get("/questionnaires").get_data(as_text=True)
    assert "Weekly check-in" in page and f"/questionnaires/{assignment.id}" in page
    start = client.get(f"/questionnaires/{assignment.id}").get_data(as_text=True)
    assert "About 2 minutes." in start and "items/raynaud" in start


def test_item_page_shows_eleven_buttons_and_progress(participant_client):
    client, _, assignment, _ = participant_client
    response = client.get(f"/questionnaires/{assignment.id}/items/raynaud")
    page = response.get_data(as_text=True)
    assert response.status_code == 200
    assert page.count('class="button answer answer-number"') == 11
    assert "Question 1 of 10" in page and 'role="status"' in page
    assert "HX-Request" in response.headers.get("Vary", "")
    assert "no-store" in response.headers["Cache-Control"]


def test_htmx_one_tap_answer_returns_the_next_question_with_saved(participant_client):
    client, _, assignment, token = participant_client
    response = _post(client, token, assignment, "raynaud", "7")
    page = response.get_data(as_text=True)
    assert response.status_code == 200
    assert "<html" not in page and "Saved" in page and "Question 2 of 10" in page
    # The next question takes this one's place, under its own address.
    assert response.headers["HX-Push-Url"] == (
        f"/questionnaires/{assignment.id}/items/finger_ulcers"
    )
    assert 'aria-pressed="true"' not in page
    assert _value(assignment, "raynaud") == 7
    # Back keeps the answer.
    back = client.get(f"/questionnaires/{assignment.id}/items/raynaud").get_data(as_text=True)
    assert 'aria-pressed="true"><span class="answer-value">7<' in back


def test_htmx_one_tap_answer_from_the_review_goes_back_to_it(participant_client):
    client, _, assignment, token = participant_client
    response = client.post(
        f"/questionnaires/{assignment.id}/items/raynaud",
        data={"csrf_token": token, "value": "3", "review": "1"},
        headers=HTMX,
    )
    assert response.status_code == 200
    assert response.headers["HX-Redirect"] == f"/questionnaires/{assignment.id}/review"
    assert _value(assignment, "raynaud") == 3


def test_htmx_answer_of_several_choices_stays_with_saved(participant_client):
    client, _, assignment, token = participant_client
    _post(client, token, assignment, "anything_new", "yes")
    response = _post(client, token, assignment, "new_areas", "skin")
    page = response.get_data(as_text=True)
    assert response.status_code == 200, page
    assert "HX-Push-Url" not in response.headers
    assert "Saved" in page and 'aria-pressed="true"' in page and ">Next<" in page


def test_without_javascript_the_form_moves_to_the_next_question(participant_client):
    client, _, assignment, token = participant_client
    response = _post(client, token, assignment, "raynaud", "2", htmx=False)
    assert response.status_code == 303
    assert response.location.endswith(
        f"/questionnaires/{assignment.id}/items/finger_ulcers?saved=1"
    )
    assert "Saved" in client.get(response.location).get_data(as_text=True)


@pytest.mark.parametrize(
    ("item_id", "values", "message"),
    [
        ("raynaud", "11", "Please give a number from 0 to 10."),
        ("raynaud", ["1", "2"], "This answer could not be understood."),
        ("new_areas", "skin", "This question does not apply"),
    ],
)
def test_bad_value_is_a_422_with_the_earlier_answer_untouched(
    participant_client, item_id, values, message
):
    client, _, assignment, token = participant_client
    _post(client, token, assignment, "raynaud", "4")
    response = _post(client, token, assignment, item_id, values)
    assert response.status_code == 422
    assert message in response.get_data(as_text=True)
    assert _value(assignment, "raynaud") == 4


def test_unknown_item_is_404(participant_client):
    client, _, assignment, token = participant_client
    assert client.get(f"/questionnaires/{assignment.id}/items/nope").status_code == 404
    assert _post(client, token, assignment, "nope", "1").status_code == 404


def test_foreign_assignment_is_404(participant_client, planned):
    client, _, _, token = participant_client
    other = weekly(planned())
    assert client.get(f"/questionnaires/{other.id}").status_code == 404
    assert client.get(f"/questionnaires/{other.id}/items/pain").status_code == 404
    assert _post(client, token, other, "pain", "3").status_code == 404
    response = client.post(f"/questionnaires/{other.id}/submit", data={"csrf_token": token})
    assert response.status_code == 404
    assert db.session.scalar(sa.select(sa.func.count(Answer.id))) == 0


def test_closed_assignment_is_409_in_the_participants_language(
    client, planned, sign_in, csrf_token, clock
):
    participant = planned(language="fr")
    sign_in(client, participant)
    assignment = weekly(participant)
    token = csrf_token(client, f"/questionnaires/{assignment.id}/items/raynaud")
    _post(client, token, assignment, "raynaud", "4")
    clock.set(assignment.closes_at + timedelta(hours=2))
    response = _post(client, token, assignment, "raynaud", "9")
    assert response.status_code == 409
    assert "Ce questionnaire est fermé" in response.get_data(as_text=True)
    assert _value(assignment, "raynaud") == 4


def test_two_tabs_last_write_wins(participant_client, app):
    client, _, assignment, token = participant_client
    other_tab = app.test_client()
    other_tab.set_cookie(
        app.config["SESSION_COOKIE_NAME"],
        client.get_cookie(app.config["SESSION_COOKIE_NAME"]).value,
        domain="localhost",
    )
    assert _post(client, token, assignment, "pain", "2").status_code == 200
    assert _post(other_tab, token, assignment, "pain", "8").status_code == 200
    assert _value(assignment, "pain") == 8
    events = db.session.scalars(
        sa.select(AuditEvent).where(AuditEvent.action == "answer.saved").order_by(AuditEvent.id)
    ).all()
    assert [e.after["value"] for e in events] == [2, 8]


def test_review_submit_twice_and_confirmation(participant_client):
    client, _, assignment, token = participant_client
    for item_id, value in CALM_WEEK.items():
        assert _post(client, token, assignment, item_id, value).status_code == 200
    review = client.get(f"/questionnaires/{assignment.id}/review").get_data(as_text=True)
    assert "Review your answers" in review and "4 out of 10" in review and ">No<" in review
    for _ in range(2):
        response = client.post(
            f"/questionnaires/{assignment.id}/submit", data={"csrf_token": token}
        )
        assert response.status_code == 303
        assert response.location.endswith(f"/questionnaires/{assignment.id}/done")
    assert db.session.scalar(sa.select(sa.func.count(Submission.id))) == 1
    done = client.get(f"/questionnaires/{assignment.id}/done").get_data(as_text=True)
    assert "Thank you, your answers have been sent" in done and "911" not in done
    response = _post(client, token, assignment, "pain", "9")
    assert response.status_code == 409
    assert _value(assignment, "pain") == 4


def test_incomplete_submit_is_422_and_nothing_is_submitted(participant_client):
    client, _, assignment, token = participant_client
    _post(client, token, assignment, "raynaud", "1")
    response = client.post(f"/questionnaires/{assignment.id}/submit", data={"csrf_token": token})
    assert response.status_code == 422
    assert "An answer is needed." in response.get_data(as_text=True)
    assert db.session.scalar(sa.select(sa.func.count(Submission.id))) == 0


def test_alert_confirmation_gives_the_sites_emergency_number(client, planned, sign_in, csrf_token):
    participant = planned(site_code="SLS", language="fr")
    sign_in(client, participant)
    assignment = weekly(participant)
    token = csrf_token(client, f"/questionnaires/{assignment.id}/items/raynaud")
    for item_id, value in dict(CALM_WEEK, finger_ulcers="9").items():
        _post(client, token, assignment, item_id, value)
    client.post(f"/questionnaires/{assignment.id}/submit", data={"csrf_token": token})
    done = client.get(f"/questionnaires/{assignment.id}/done").get_data(as_text=True)
    assert "L’équipe de recherche verra certaines de vos réponses." in done
    assert "15 / 112" in done


def test_staff_of_the_site_can_enter_answers_others_get_404(
    client, planned, make_staff, sign_in, csrf_token
):
    participant = planned()
    assignment = weekly(participant)
    paris = make_staff(sites=["SLS"])
    sign_in(client, paris)
    assert client.get(f"/questionnaires/{assignment.id}/items/pain").status_code == 404
    assert (
        client.get(f"/staff/participants/{participant.study_id}/questionnaires").status_code == 404
    )

    montreal = make_staff(sites=["JGH"])
    sign_in(client, montreal)
    token = csrf_token(client, f"/questionnaires/{assignment.id}/items/pain")
    page = client.get(f"/questionnaires/{assignment.id}/items/pain").get_data(as_text=True)
    assert participant.study_id in page
    assert _post(client, token, assignment, "pain", "5").status_code == 200
    row = db.session.scalars(sa.select(Answer)).one()
    assert row.entered_by_staff_id == montreal.id
    overview = client.get(f"/staff/participants/{participant.study_id}/questionnaires")
    assert overview.status_code == 200


def test_multiple_choice_toggles_send_the_whole_selection(participant_client):
    client, _, assignment, token = participant_client
    _post(client, token, assignment, "anything_new", "yes")
    page = _post(client, token, assignment, "new_areas", ["skin"]).get_data(as_text=True)
    # The "Breathing" button now sends skin + breathing; "Skin" sends nothing (untoggle).
    assert _value(assignment, "new_areas") == ["skin"]
    assert page.count('name="value" value="skin"') == 6
    _post(client, token, assignment, "new_areas", ["skin", "breathing"])
    assert _value(assignment, "new_areas") == ["skin", "breathing"]
    _post(client, token, assignment, "new_areas", [])
    assert _value(assignment, "new_areas") is None


def test_home_page_section_and_planning_on_first_visit(client, make_participant, sign_in, clock):
    participant = make_participant(language="en")
    sign_in(client, participant)
    page = client.get("/home").get_data(as_text=True)
    assert 'id="q-home-heading"' in page and "Weekly check-in" in page
    listing = client.get("/questionnaires").get_data(as_text=True)
    assert "Weekly check-in" in listing
    assert weekly(participant).status == "planned"


@pytest.mark.commits
def test_every_acknowledged_answer_is_back_after_a_restart(
    participant_client, make_app, settings, sign_in
):
    client, participant, assignment, token = participant_client
    for item_id in ("raynaud", "finger_ulcers", "breathing"):
        assert _post(client, token, assignment, item_id, "5").status_code == 200
    restarted = make_app(settings)
    other_device = restarted.test_client()
    sign_in(other_device, participant)
    response = other_device.get(f"/questionnaires/{assignment.id}")
    assert response.status_code == 302
    assert response.location.endswith(f"/questionnaires/{assignment.id}/items/swallowing_reflux")
    page = other_device.get(f"/questionnaires/{assignment.id}/items/breathing")
    assert 'aria-pressed="true"><span class="answer-value">5<' in page.get_data(as_text=True)


def test_change_from_the_review_returns_to_the_review(participant_client):
    client, _, assignment, token = participant_client
    for item_id, value in CALM_WEEK.items():
        _post(client, token, assignment, item_id, value)
    review = client.get(f"/questionnaires/{assignment.id}/review").get_data(as_text=True)
    assert f"/questionnaires/{assignment.id}/items/pain?review=1" in review
    page = client.get(f"/questionnaires/{assignment.id}/items/pain?review=1").get_data(as_text=True)
    assert "Back to the review" in page and 'name="review" value="1"' in page
    response = client.post(
        f"/questionnaires/{assignment.id}/items/pain",
        data={"csrf_token": token, "value": "7", "review": "1"},
    )
    assert response.location.endswith(f"/questionnaires/{assignment.id}/review")


def test_coordinator_acknowledges_an_alert(client, planned, make_staff, sign_in, csrf_token):
    participant = planned()
    assignment = weekly(participant)
    for item_id, raw in dict(CALM_WEEK, breathing="9").items():
        services.save_answer(assignment, item_id, raw, participant)
    services.submit(assignment, participant, "fr")
    db.session.commit()
    staff = make_staff(sites=["JGH"])
    sign_in(client, staff)
    path = f"/staff/participants/{participant.study_id}/questionnaires"
    page = client.get(path).get_data(as_text=True)
    # Readable, in the coordinator's language, with the answer that raised it; never the code.
    assert "Shortness of breath this week: 9/10" in page
    assert "Weekly check-in" in page and "breathing_severe" not in page
    alert = db.session.scalars(sa.select(Alert)).one()
    token = csrf_token(client, path)
    form = {"csrf_token": token, "outcome": "called", "note": "Called the participant."}
    old = f"/staff/participants/{participant.study_id}/alerts/{alert.id}/acknowledge"
    response = client.post(old, data=form)
    # The former address hands the same form on to the one acknowledging endpoint.
    assert response.status_code == 307
    assert response.location.endswith(f"/staff/alerts/{alert.id}/acknowledge")
    response = client.post(response.location, data={**form, "next": path})
    assert response.status_code == 303
    db.session.expire_all()
    assert alert.acknowledged_by_id == staff.id and alert.note == "Called the participant."
    assert alert.outcome == "called"
    assert "No alert to acknowledge." in client.get(path).get_data(as_text=True)

    other_site = make_staff(sites=["SLS"])
    sign_in(client, other_site)
    response = client.post(
        f"/staff/alerts/{alert.id}/acknowledge",
        data={"csrf_token": csrf_token(client, "/"), "outcome": "called"},
    )
    assert response.status_code == 404
