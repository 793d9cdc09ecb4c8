"""Push endpoints are URLs a participant's browser hands the server, so the server must post
only to the browsers' push services: https, a host of PORTAL_PUSH_HOSTS, an address on the
public internet (checked on the address actually connected to), no redirect followed. Else a
participant could make the server probe its own network (server-side request forgery)."""

from __future__ import annotations

import socket
from datetime import UTC, date, datetime
from types import SimpleNamespace

import pytest
import sqlalchemy as sa

from patient_portal import clock
from patient_portal.config import ConfigError, load_settings
from patient_portal.errors import PortalError
from patient_portal.extensions import db
from patient_portal.reminders import channels, preferences
from patient_portal.reminders.models import PushSubscription, ReminderAttempt
from patient_portal.security import token_digest
from tests.reminders.receivers import Browser, PushService

BROWSER = Browser()
REFUSED_FR = (
    "Le portail ne peut pas envoyer de notifications par ce navigateur. Veuillez essayer un "
    "autre navigateur sur ce téléphone, ou choisir les rappels par courriel ou sur la page "
    "d’accueil."
)

# One address of each kind the server must never be sent to, whatever the allow-list says.
FORBIDDEN = {
    "loopback": "127.0.0.1",
    "loopback, elsewhere in 127/8": "127.3.2.1",
    "private 10/8": "10.1.2.3",
    "private 172.16/12": "172.16.5.4",
    "private 192.168/16": "192.168.1.1",
    "shared, carrier-grade NAT": "100.64.0.1",
    "link-local, cloud metadata": "169.254.169.254",
    "multicast": "224.0.0.1",
    "reserved": "240.0.0.1",
    "broadcast": "255.255.255.255",
    "unspecified": "0.0.0.0",
    "documentation": "192.0.2.10",
    "IPv6 loopback": "::1",
    "IPv6 unspecified": "::",
    "IPv6 unique local": "fd12:3456::1",
    "IPv6 link-local": "fe80::1",
    "IPv6 site-local": "fec0::1",
    "IPv6 multicast": "ff02::1",
    "IPv4-mapped loopback": "::ffff:127.0.0.1",
    "IPv4-mapped private": "::ffff:10.0.0.1",
    "IPv4-mapped metadata": "::ffff:169.254.169.254",
    "6to4 of loopback": "2002:7f00:1::1",
    "NAT64 of private": "64:ff9b::a00:1",
}


def _literal(address: str) -> str:
    return f"[{address}]" if ":" in address else address


@pytest.fixture
def participant(make_participant, now, client, sign_in):
    now(datetime(2026, 11, 20, 15, tzinfo=UTC))
    person = make_participant(day0=date(2026, 12, 1), language="fr")
    sign_in(client, person)
    return person


def _subscribe(client, csrf_token, endpoint: str, browser: Browser = BROWSER):
    return client.post(
        "/reminders/push/subscribe",
        json=browser.subscription(endpoint),
        headers={"X-CSRFToken": csrf_token(client, "/reminders")},
    )


def _stored_subscription(participant, endpoint: str, browser: Browser = BROWSER):
    """A row as an older version of the portal, or a narrower allow-list since, left it."""
    row = PushSubscription(
        participant_id=participant.id,
        endpoint=endpoint,
        endpoint_hash=token_digest(endpoint),
        p256dh=browser.p256dh,
        auth=browser.subscription(endpoint)["keys"]["auth"],
        created_at=clock.now(),
    )
    db.session.add(row)
    db.session.flush()
    return row


def _send(app, endpoint: str) -> channels.Outcome:
    message = channels.Message(
        title="t",
        body="b",
        url="/home",
        tag="test",
        subject_line="s",
        text="t",
        html="<p>t</p>",
        language="en",
        ttl=60,
        reminder_id=1,
    )
    subscription = SimpleNamespace(
        id=1,
        endpoint=endpoint,
        p256dh=BROWSER.p256dh,
        auth=BROWSER.subscription("")["keys"]["auth"],
    )
    return channels.PushChannel(app).send(message, channels.Target(subscriptions=[subscription]))


@pytest.fixture
def resolver(monkeypatch: pytest.MonkeyPatch):
    """resolver(name, *addresses): the name resolves to those addresses, others as usual."""
    real = socket.getaddrinfo
    names: dict[str, tuple[str, ...]] = {}
    connects: list = []

    def getaddrinfo(host, port, *args, **kwargs):
        if host in names:
            return [
                (
                    socket.AF_INET6 if ":" in a else socket.AF_INET,
                    socket.SOCK_STREAM,
                    6,
                    "",
                    (a, port, 0, 0) if ":" in a else (a, port),
                )
                for a in names[host]
            ]
        return real(host, port, *args, **kwargs)

    real_connect = socket.socket.connect

    def connect(sock, address):
        connects.append(address)
        if address[0] not in ("127.0.0.1", "::1"):
            raise ConnectionRefusedError  # no packet leaves the machine during tests
        return real_connect(sock, address)

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    monkeypatch.setattr(socket.socket, "connect", connect)

    def resolve(name: str, *addresses: str) -> list:
        names[name] = addresses
        return connects

    return resolve


# --- At subscription ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "endpoint",
    [
        "https://fcm.googleapis.com/fcm/send/abc:APA91b",
        "https://updates.push.services.mozilla.com/wpush/v2/gAAAAAB",
        "https://wns2-par02p.notify.windows.com/w/?token=BQYAAAB",
        "https://web.push.apple.com/QGuQyavXutnMH",
        "https://fcm.googleapis.com:443/wp/abc",
    ],
)
def test_the_browsers_push_services_are_accepted(client, csrf_token, participant, endpoint):
    answer = _subscribe(client, csrf_token, endpoint)
    assert answer.status_code == 201
    assert db.session.scalars(sa.select(PushSubscription.endpoint)).all() == [endpoint]


@pytest.mark.parametrize(
    "endpoint",
    [
        "https://push.example.org/x",  # not a push service
        "https://evil-fcm.googleapis.com.example.org/x",
        "https://notfcm.googleapis.com/x",  # a suffix of the text is not a subdomain
        "https://notify.windows.com/x",  # only its subdomains are WNS endpoints
        "https://fcm.googleapis.com:8443/x",  # another port: a port scan of the host
        "http://fcm.googleapis.com/x",  # not https
        "https://user@fcm.googleapis.com/x",
        "http://localhost:8080/x",  # development shortcut of old, gone
        "http://127.0.0.1:5000/x",
    ],
)
def test_an_endpoint_that_is_not_an_allowed_push_service_is_refused(
    client, csrf_token, participant, endpoint
):
    answer = _subscribe(client, csrf_token, endpoint)
    assert answer.status_code == 422
    assert answer.get_json()["error"] == REFUSED_FR
    assert db.session.scalars(sa.select(PushSubscription)).all() == []


@pytest.mark.parametrize("kind", FORBIDDEN)
def test_an_address_inside_a_network_is_refused_at_subscription_whatever_the_list_says(
    app, client, csrf_token, participant, kind
):
    address = FORBIDDEN[kind]
    # Even an operator's slip that lists the address itself does not open it.
    app.config["PORTAL_PUSH_HOSTS"] = (address, "fcm.googleapis.com")
    answer = _subscribe(client, csrf_token, f"https://{_literal(address)}/push")
    assert answer.status_code == 422
    assert answer.get_json()["error"] == REFUSED_FR
    assert db.session.scalars(sa.select(PushSubscription)).all() == []


def test_the_refusal_is_in_english_for_an_english_speaker(
    client, csrf_token, make_participant, sign_in
):
    sign_in(client, make_participant(day0=None, language="en"))
    answer = _subscribe(client, csrf_token, "https://169.254.169.254/latest/meta-data")
    assert answer.status_code == 422
    assert answer.get_json()["error"] == (
        "The portal cannot send notifications through this browser. Please try another "
        "browser on this phone, or choose e-mail or home-page reminders."
    )


# --- At sending --------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", FORBIDDEN)
def test_a_push_service_name_resolving_inside_a_network_is_never_connected_to(app, resolver, kind):
    connects = resolver("fcm.googleapis.com", FORBIDDEN[kind])
    outcome = _send(app, "https://fcm.googleapis.com/fcm/send/abc")
    assert outcome.status == "failed"  # final: not retried against the same address
    assert "push endpoint refused" in outcome.detail
    assert connects == []


def test_one_address_inside_a_network_among_public_ones_is_enough_to_refuse(app, resolver):
    connects = resolver("fcm.googleapis.com", "142.250.74.42", "10.0.0.7")
    outcome = _send(app, "https://fcm.googleapis.com/fcm/send/abc")
    assert (outcome.status, connects) == ("failed", [])


def test_a_listed_name_that_resolves_to_loopback_is_refused_at_send(app):
    # `localhost` is a name, so it passes the subscription check if an operator lists it;
    # the address it resolves to, 127.0.0.1 or ::1, is refused when sending.
    app.config["PORTAL_PUSH_HOSTS"] = ("localhost",)
    outcome = _send(app, "https://localhost/push/phone")
    assert outcome.status == "failed"
    assert "localhost resolves to an address not on the internet" in outcome.detail


def test_a_public_address_is_connected_to_exactly_as_resolved(app, resolver):
    # The check lets a public address through and the socket goes to that very address
    # (refused by the fixture's connect: a push service that cannot be reached is retried).
    connects = resolver("fcm.googleapis.com", "142.250.74.42", "2a00:1450:4007:80e::200a")
    outcome = _send(app, "https://fcm.googleapis.com/fcm/send/abc")
    assert [address[0] for address in connects] == ["142.250.74.42", "2a00:1450:4007:80e::200a"]
    assert outcome.status == "retry"


def test_a_subscription_stored_before_the_rules_is_refused_at_send(
    app, client, csrf_token, participant
):
    browser = Browser()
    with PushService(browser) as service:  # a real listener, not named a test receiver
        _stored_subscription(participant, service.url(), browser)
        page = client.post(
            "/reminders/test/push", data={"csrf_token": csrf_token(client, "/reminders")}
        )
    assert service.deliveries == [] and service.refused == []
    assert page.status_code == 303
    html = client.get(page.headers["Location"]).get_data(as_text=True)
    assert "Le rappel d’essai n’a pas pu être envoyé. L’échec est noté" in html
    # What went wrong is for the study team's log, never on the participant's page.
    assert "127.0.0.1" not in html and "refused" not in html
    detail = db.session.scalars(sa.select(ReminderAttempt.detail)).one()
    assert detail == "push endpoint refused: not https"


def test_a_redirect_from_the_push_service_is_not_followed(app, client, csrf_token, participant):
    browser = Browser()
    with PushService(browser) as service:
        service.allowed_in(app)
        assert _subscribe(client, csrf_token, service.url("redirect"), browser).status_code == 201
        page = client.post(
            "/reminders/test/push", data={"csrf_token": csrf_token(client, "/reminders")}
        )
    assert service.deliveries == []  # the 307 pointed at /push/, which would have accepted
    html = client.get(page.headers["Location"]).get_data(as_text=True)
    assert "Le rappel d’essai n’a pas pu être envoyé. L’échec est noté" in html
    assert "307" not in html
    assert db.session.scalars(sa.select(ReminderAttempt.detail)).one() == (
        "push service answered 307"
    )


def test_a_busy_push_service_shows_only_that_the_test_could_not_be_sent(
    app, client, csrf_token, participant
):
    browser = Browser()
    with PushService(browser) as service:
        service.allowed_in(app)
        _subscribe(client, csrf_token, service.url("busy"), browser)
        page = client.post(
            "/reminders/test/push", data={"csrf_token": csrf_token(client, "/reminders")}
        )
    html = client.get(page.headers["Location"]).get_data(as_text=True)
    assert "Le rappel d’essai n’a pas pu être envoyé pour le moment." in html
    assert "503" not in html.replace('status="503"', "")


# --- The local test receiver ---------------------------------------------------------------------


def test_production_ignores_a_test_receiver(app, client, csrf_token, participant):
    browser = Browser()
    with PushService(browser) as service:
        service.allowed_in(app)
        assert _subscribe(client, csrf_token, service.url(), browser).status_code == 201
        db.session.execute(sa.delete(PushSubscription))
        app.config["PORTAL_ENV"] = "production"
        # (In the service: a production app also wants https pages for the request itself.)
        with app.test_request_context(), pytest.raises(PortalError) as refused:
            preferences.add_subscription(participant, browser.subscription(service.url()))
        assert refused.value.status == 422
        _stored_subscription(participant, service.url(), browser)
        outcome = _send(app, service.url())
    assert outcome.status == "failed" and "refused" in outcome.detail
    assert service.deliveries == []


def test_production_refuses_to_start_with_a_test_receiver(tmp_path):
    environ = {
        "PORTAL_ENV": "production",
        "PORTAL_ORIGIN": "https://portal.example.org",
        "PORTAL_RP_ID": "portal.example.org",
        "SECRET_KEY": "x" * 40,
        "PORTAL_AUDIT_KEY": "a" * 40,
        "RATELIMIT_STORAGE_URI": "redis://127.0.0.1:6379/0",
        "PORTAL_PUSH_TEST_RECEIVERS": "127.0.0.1:8765",
    }
    with pytest.raises(ConfigError, match="PORTAL_PUSH_TEST_RECEIVERS"):
        load_settings(tmp_path, environ)
    del environ["PORTAL_PUSH_TEST_RECEIVERS"]
    assert load_settings(tmp_path, environ)["PORTAL_PUSH_TEST_RECEIVERS"] == ()


def test_a_test_receiver_must_be_a_loopback_address(tmp_path):
    for value in ("10.0.0.1:80", "localhost:80", "127.0.0.1", "example.org:443"):
        with pytest.raises(ConfigError, match="PORTAL_PUSH_TEST_RECEIVERS"):
            load_settings(tmp_path, {"PORTAL_PUSH_TEST_RECEIVERS": value})
    settings = load_settings(tmp_path, {"PORTAL_PUSH_TEST_RECEIVERS": "127.0.0.1:8765,[::1]:9"})
    assert settings["PORTAL_PUSH_TEST_RECEIVERS"] == (("127.0.0.1", 8765), ("::1", 9))


def test_the_allow_list_defaults_to_the_browsers_push_services_and_can_be_set(tmp_path):
    assert load_settings(tmp_path, {})["PORTAL_PUSH_HOSTS"] == (
        "fcm.googleapis.com",
        "updates.push.services.mozilla.com",
        "*.notify.windows.com",
        "web.push.apple.com",
        "*.push.apple.com",
    )
    chosen = load_settings(
        tmp_path, {"PORTAL_PUSH_HOSTS": " FCM.googleapis.com , *.push.apple.com"}
    )
    assert chosen["PORTAL_PUSH_HOSTS"] == ("fcm.googleapis.com", "*.push.apple.com")
    for value in ("https://fcm.googleapis.com", "fcm.googleapis.com:443", "*", "com", "a..b"):
        with pytest.raises(ConfigError, match="PORTAL_PUSH_HOSTS"):
            load_settings(tmp_path, {"PORTAL_PUSH_HOSTS": value})
