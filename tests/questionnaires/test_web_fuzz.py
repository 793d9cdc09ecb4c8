"""Fuzzing the answer and submit endpoints: never a 5xx, never a partial write."""

from __future__ import annotations

import string

import sqlalchemy as sa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from patient_portal.extensions import db
from patient_portal.questionnaires.models import Answer, Submission
from tests.questionnaires.conftest import weekly

ITEM_IDS = [
    "raynaud",
    "breathing",
    "anything_new",
    "new_areas",
    "urgent_note",
    "overall",
]
RAW = st.one_of(
    st.sampled_from(
        [
            "",
            " 3 ",
            "0",
            "10",
            "11",
            "-1",
            "1e3",
            "yes",
            "no",
            "true",
            "skin",
            "breathing",
            "other",
            "2026-12-01",
            "３",
            "\x00",
            "9" * 40,
        ]
    ),
    st.text(max_size=30),
)
REQUESTS = st.lists(
    st.tuples(
        st.one_of(
            st.sampled_from(ITEM_IDS),
            st.text(alphabet=string.ascii_letters + string.digits + "_.-", min_size=1, max_size=12),
        ),
        st.lists(RAW, max_size=3),
        st.booleans(),  # htmx or plain form
        st.booleans(),  # submit afterwards
    ),
    min_size=1,
    max_size=6,
)


def _snapshot(assignment_id: int) -> dict:
    db.session.expire_all()
    return {
        row.item_id: row.value
        for row in db.session.scalars(
            sa.select(Answer).where(Answer.assignment_id == assignment_id)
        )
    }


@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(requests=REQUESTS)
def test_answer_and_submit_endpoints_hold_under_any_input(
    client, planned, sign_in, csrf_token, requests
):
    # A fresh participant per example: each run starts from an empty questionnaire.
    participant = planned(language="en")
    sign_in(client, participant)
    assignment = weekly(participant)
    token = csrf_token(client, "/questionnaires")
    for item_id, values, htmx, then_submit in requests:
        before = _snapshot(assignment.id)
        response = client.post(
            f"/questionnaires/{assignment.id}/items/{item_id}",
            data={"csrf_token": token, "value": values},
            headers={"HX-Request": "true"} if htmx else {},
        )
        assert response.status_code < 500, response.get_data(as_text=True)[:500]
        after = _snapshot(assignment.id)
        if response.status_code >= 400:
            assert after == before
        else:
            assert {k for k in after if after.get(k) != before.get(k)} <= {item_id}
        if then_submit:
            submitted_before = db.session.scalar(sa.select(sa.func.count(Submission.id)))
            response = client.post(
                f"/questionnaires/{assignment.id}/submit", data={"csrf_token": token}
            )
            assert response.status_code in (303, 409, 422)
            count = db.session.scalar(sa.select(sa.func.count(Submission.id)))
            assert count <= 1 and (response.status_code == 303 or count == submitted_before)
            assert _snapshot(assignment.id) == after
