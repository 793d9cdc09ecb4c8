"""Rotating the key that encrypts participants' e-mail addresses, as docs/deployment.md says:
both keys for a while, the command, then the new key alone."""

from __future__ import annotations

from cryptography.fernet import Fernet

from patient_portal.extensions import db
from patient_portal.reminders import preferences
from patient_portal.reminders.models import ReminderPreference


def _use_keys(app, *keys: bytes) -> None:
    app.config["PORTAL_CONTACT_KEY"] = " ".join(key.decode() for key in keys)
    app.extensions.pop("reminders_contact_cipher", None)


def test_the_contact_key_is_rotated_without_losing_an_address(app, runner, make_participant):
    old, new = Fernet.generate_key(), Fernet.generate_key()
    _use_keys(app, old)
    person = make_participant()
    preferences.set_email(person, "person@example.org")
    db.session.commit()

    _use_keys(app, new, old)
    assert preferences.email_of(person) == "person@example.org"
    result = runner.invoke(args=["reminders", "rotate-contact-key"])
    assert result.exit_code == 0 and "1 addresses" in result.output

    _use_keys(app, new)
    assert preferences.email_of(person) == "person@example.org"
    stored = db.session.get(ReminderPreference, person.id)
    assert stored is not None and b"person@example.org" not in bytes(stored.email_encrypted)


def test_without_the_old_key_an_address_reads_as_none(app, make_participant):
    """The failure is visible (no address) rather than a crash of the dispatcher."""
    _use_keys(app, Fernet.generate_key())
    person = make_participant()
    preferences.set_email(person, "person@example.org")
    db.session.commit()
    _use_keys(app, Fernet.generate_key())
    assert preferences.email_of(person) is None
