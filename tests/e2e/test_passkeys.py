"""Passkeys in a real Chromium with the CDP virtual authenticator, on a phone, in both languages."""

from __future__ import annotations

from datetime import timedelta

import pytest
import sqlalchemy as sa

from patient_portal import clock
from patient_portal.accounts import services
from patient_portal.accounts.models import PasskeyCredential
from patient_portal.extensions import db
from tests.e2e.conftest import assert_accessible, assert_no_horizontal_scroll


def virtual_authenticator(page, *, user_verified: bool = True):
    """A platform authenticator with resident keys, like a phone's fingerprint sensor."""
    cdp = page.context.new_cdp_session(page)
    cdp.send("WebAuthn.enable")
    added = cdp.send(
        "WebAuthn.addVirtualAuthenticator",
        {
            "options": {
                "protocol": "ctap2",
                "transport": "internal",
                "hasResidentKey": True,
                "hasUserVerification": True,
                "isUserVerified": user_verified,
                "automaticPresenceSimulation": True,
            }
        },
    )
    return cdp, added["authenticatorId"]


def enrolment_link(owner, coordinator, reason: str | None = None) -> str:
    raw = services.issue_enrolment_link(owner, coordinator, reason=reason)
    db.session.commit()
    return services.enrolment_url(raw)


TEXTS = {
    "fr": {
        "create": "Créer ma clé d’accès",
        "sign_in": "Se connecter avec ma clé d’accès",
        "sign_out": "Se déconnecter de cet appareil",
        "welcome": "Bienvenue sur le portail CARE-SSc",
    },
    "en": {
        "create": "Create my passkey",
        "sign_in": "Sign in with my passkey",
        "sign_out": "Sign out of this device",
        "welcome": "Welcome to the CARE-SSc portal",
    },
}


@pytest.mark.parametrize(("language", "locale"), [("fr", "fr-CA"), ("en", "en-CA")])
def test_enrol_register_sign_out_sign_in(
    live_server, new_phone, make_participant, make_staff, language, locale
):
    coordinator = make_staff()
    participant = make_participant(language=language, status="enrolled")
    link = enrolment_link(participant, coordinator)
    texts = TEXTS[language]

    page = new_phone(
        "en-CA" if language == "fr" else "fr-CA"
    )  # the phone's language does not matter
    virtual_authenticator(page)
    page.goto(link)
    assert page.get_by_role("heading", level=1).inner_text() == texts["welcome"]
    assert page.locator("html").get_attribute("lang") == language
    assert_accessible(page)
    assert_no_horizontal_scroll(page)
    page.get_by_role("button", name=texts["create"]).click()
    page.wait_for_url(lambda url: "/enrol/" not in url)
    assert page.locator("html").get_attribute("lang") == language

    page.goto(live_server + "/sign-out")
    page.get_by_role("button", name=texts["sign_out"]).click()
    page.wait_for_url("**/signed-out")

    page.goto(live_server + "/sign-in")
    assert_accessible(page)
    page.get_by_role("button", name=texts["sign_in"]).click()
    page.wait_for_url(lambda url: "/sign-in" not in url)
    db.session.expire_all()
    passkey = db.session.scalar(
        sa.select(PasskeyCredential).where(PasskeyCredential.participant_id == participant.id)
    )
    assert passkey.last_used_at is not None
    assert passkey.aaguid and passkey.transports is not None


def test_a_used_link_and_an_expired_link_are_refused(
    live_server, new_phone, make_participant, make_staff
):
    coordinator = make_staff()
    participant = make_participant(language="en", status="enrolled")
    link = enrolment_link(participant, coordinator)
    page = new_phone("en-CA")
    virtual_authenticator(page)
    page.goto(link)
    page.get_by_role("button", name="Create my passkey").click()
    page.wait_for_url(lambda url: "/enrol/" not in url)

    second = new_phone("en-CA")
    response = second.goto(link)
    assert response.status == 410
    assert "already been used" in second.content()
    assert_accessible(second)

    # The participant has a passkey now: a further link is a replacement, with a reason.
    expired_link = enrolment_link(participant, coordinator, reason="new_device")
    from patient_portal.accounts.models import EnrolmentToken

    token = db.session.scalar(sa.select(EnrolmentToken).order_by(EnrolmentToken.id.desc()))
    token.expires_at = clock.now() - timedelta(minutes=1)
    db.session.commit()
    response = second.goto(expired_link)
    assert response.status == 410
    assert "expired" in second.content()


def test_a_second_device_adds_a_passkey_from_settings(
    live_server, new_phone, make_participant, make_staff
):
    coordinator = make_staff()
    participant = make_participant(language="en", status="enrolled")
    page = new_phone("en-CA")
    cdp, authenticator = virtual_authenticator(page)
    page.goto(enrolment_link(participant, coordinator))
    page.get_by_role("button", name="Create my passkey").click()
    page.wait_for_url(lambda url: "/enrol/" not in url)

    # The "new phone": a second authenticator on the same browser, the first one removed.
    cdp.send("WebAuthn.removeVirtualAuthenticator", {"authenticatorId": authenticator})
    virtual_authenticator(page)
    page.goto(live_server + "/settings")
    assert_accessible(page)
    page.get_by_role("button", name="Add a passkey").click()
    page.wait_for_function("() => document.querySelectorAll('.cards > li h3').length >= 2")
    db.session.expire_all()
    assert (
        len(
            db.session.scalars(
                sa.select(PasskeyCredential).where(
                    PasskeyCredential.participant_id == participant.id
                )
            ).all()
        )
        == 2
    )


def test_user_verification_off_is_refused(live_server, new_phone, make_participant, make_staff):
    coordinator = make_staff()
    participant = make_participant(language="en", status="enrolled")
    page = new_phone("en-CA")
    virtual_authenticator(page, user_verified=False)
    page.goto(enrolment_link(participant, coordinator))
    page.get_by_role("button", name="Create my passkey").click()
    page.get_by_role("status").filter(has_text="try again").wait_for()
    assert "/enrol/" in page.url
    assert db.session.scalar(sa.select(sa.func.count(PasskeyCredential.id))) == 0


def test_a_sign_count_that_goes_backwards_is_refused_and_audited(
    live_server, new_phone, make_participant, make_staff
):
    from patient_portal.audit import AuditEvent

    coordinator = make_staff()
    participant = make_participant(language="en", status="enrolled")
    page = new_phone("en-CA")
    virtual_authenticator(page)
    page.goto(enrolment_link(participant, coordinator))
    page.get_by_role("button", name="Create my passkey").click()
    page.wait_for_url(lambda url: "/enrol/" not in url)
    page.context.clear_cookies()

    # The server has seen this passkey count far higher than the authenticator will say next.
    db.session.expire_all()
    passkey = db.session.scalar(sa.select(PasskeyCredential))
    passkey.sign_count = 1000
    db.session.commit()
    page.goto(live_server + "/sign-in")
    page.get_by_role("button", name="Sign in with my passkey").click()
    page.get_by_role("status").filter(has_text="could not sign you in").wait_for()
    failure = db.session.scalar(sa.select(AuditEvent).where(AuditEvent.action == "signin.failed"))
    assert failure is not None and "sign count" in failure.reason
