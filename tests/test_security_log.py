"""Refused requests leave a line in the log for the security review: the reason, the route's
rule (never its path, which may hold a token), who and from where."""

from __future__ import annotations

import logging


def _warnings(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]


def test_a_coordinator_looking_at_another_sites_participant_is_logged(
    app, client, sign_in, make_staff, make_participant, caplog
):
    paris = make_participant(site_code="SLS")
    coordinator = make_staff(sites=["JGH"])
    sign_in(client, coordinator)
    with caplog.at_level(logging.WARNING, logger="patient_portal.errors"):
        assert client.get(f"/staff/participants/{paris.study_id}").status_code == 404
    (line,) = [w for w in _warnings(caplog) if w.startswith("security:")]
    assert "no visible participant" in line and "/staff/participants/<study_id>" in line
    assert coordinator.email in line and paris.study_id not in line


def test_a_participant_on_a_staff_page_and_a_forged_form_are_logged(
    app, client, sign_in, make_participant, caplog
):
    participant = make_participant()
    sign_in(client, participant)
    with caplog.at_level(logging.WARNING, logger="patient_portal.errors"):
        assert client.get("/staff/dashboard").status_code == 403
        assert client.post("/language", data={"language": "en"}).status_code == 400
    lines = [w for w in _warnings(caplog) if w.startswith("security:")]
    assert any("forbidden: GET /staff/dashboard" in line for line in lines)
    assert any("CSRF" in line and "POST /language" in line for line in lines)
    assert all(participant.study_id in line for line in lines)


def test_an_enrolment_token_never_reaches_the_log(app, client, caplog):
    with caplog.at_level(logging.WARNING, logger="patient_portal.errors"):
        client.post("/enrol/secret-token-value/options", data={})
    assert all("secret-token-value" not in w for w in _warnings(caplog))
