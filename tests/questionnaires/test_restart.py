"""A real server process killed (SIGKILL, no clean shutdown) between answers and started again:
every answer it acknowledged with "Saved" is back, and the questionnaire carries on."""

from __future__ import annotations

import http.client
import os
import re
import signal
import subprocess
import sys
import time
from datetime import date, timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa

from patient_portal.extensions import db
from patient_portal.questionnaires.models import Answer, Assignment, Submission
from tests.e2e.conftest import free_port
from tests.factories import open_session_for

ROOT = Path(__file__).resolve().parents[2]
CSRF = re.compile(r'"X-CSRFToken": "([^"]+)"')


class Server:
    """gunicorn serving wsgi:app on the tests' database, in its own process group."""

    def __init__(self, settings: dict, port: int):
        self.port = port
        self.env = {
            **os.environ,
            "DATABASE_URL": settings["SQLALCHEMY_DATABASE_URI"],
            "SECRET_KEY": settings["SECRET_KEY"],
            "PORTAL_AUDIT_KEY": settings["PORTAL_AUDIT_KEY"],
            "PORTAL_ORIGIN": settings["PORTAL_ORIGIN"],
            "PORTAL_RP_ID": settings["PORTAL_RP_ID"],
            "RATELIMIT_STORAGE_URI": "memory://",
        }
        self.process: subprocess.Popen | None = None

    def start(self) -> None:
        self.process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "gunicorn",
                "-w",
                "1",
                "-b",
                f"127.0.0.1:{self.port}",
                "wsgi:app",
            ],
            cwd=ROOT,
            env=self.env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                if self.request("GET", "/healthz")[0] == 200:
                    return
            except OSError:
                time.sleep(0.1)
        raise RuntimeError("the portal did not start")

    def kill(self) -> None:
        """SIGKILL to master and worker: no request finishes, no teardown runs."""
        assert self.process is not None, "the portal was never started"
        os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait(timeout=10)

    def request(self, method: str, path: str, headers: dict | None = None, body: str = ""):
        connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
        try:
            connection.request(method, path, body=body.encode(), headers=headers or {})
            response = connection.getresponse()
            return response.status, response.read().decode()
        finally:
            connection.close()


@pytest.fixture
def server(settings):
    server = Server(settings, free_port())
    yield server
    if server.process and server.process.poll() is None:
        server.kill()


def _answer(server: Server, cookie: str, assignment_id: int, item_id: str, value: str) -> str:
    path = f"/questionnaires/{assignment_id}/items/{item_id}"
    status, page = server.request("GET", path, {"Cookie": cookie})
    assert status == 200
    token = CSRF.search(page)
    assert token, "the question's page carries no CSRF token"
    headers = {
        "Cookie": cookie,
        "HX-Request": "true",
        "X-CSRFToken": token.group(1),
        "Content-Type": "application/x-www-form-urlencoded",
    }
    status, fragment = server.request("POST", path, headers, f"value={value}")
    assert status == 200
    return fragment


@pytest.mark.commits
def test_acknowledged_answers_survive_a_killed_server(app, server, make_participant):
    participant = make_participant(language="en", day0=date.today() - timedelta(days=1))
    assignment = db.session.scalars(
        sa.select(Assignment).where(
            Assignment.participant_id == participant.id,
            Assignment.series_code == "WEEKLY",
            Assignment.occurrence == 0,
        )
    ).one()
    cookie = f"portal_session={open_session_for(participant)}"
    db.session.commit()

    server.start()
    assert "Saved" in _answer(server, cookie, assignment.id, "raynaud", "4")
    assert "Saved" in _answer(server, cookie, assignment.id, "pain", "7")
    server.kill()

    server.start()
    # The new process shows the answer given to the old one as the pressed button.
    path = f"/questionnaires/{assignment.id}/items/pain"
    status, page = server.request("GET", path, {"Cookie": cookie})
    assert status == 200
    assert re.search(r'aria-pressed="true"[^>]*><span class="answer-value">7<', page)
    assert "Saved" in _answer(server, cookie, assignment.id, "fatigue", "2")
    server.kill()

    db.session.expire_all()
    saved = {
        answer.item_id: answer.value
        for answer in db.session.scalars(
            sa.select(Answer).where(Answer.assignment_id == assignment.id)
        )
    }
    assert saved == {"raynaud": 4, "pain": 7, "fatigue": 2}
    assert db.session.scalar(sa.select(sa.func.count(Submission.id))) == 0
