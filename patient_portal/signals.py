"""What one feature tells the others, as blinker signals; create_app connects the receivers.

Features never import each other to react to a change: the service that makes the change sends
a signal, and the receivers are listed in one place (`patient_portal.create_app`), so the
wiring can be read at a glance (docs/architecture.md has the table).
"""

from __future__ import annotations

from blinker import Namespace

_portal = Namespace()

participant_changed = _portal.signal("participant-changed")
"""Sender: a participant whose year must be (re-)planned: enrolled, day 0 moved, an appointment
set, a visit marked. Receivers plan what hangs on it; they are idempotent."""

participant_withdrawn = _portal.signal("participant-withdrawn")
"""Sender: a participant who has just withdrawn. Each feature closes its own rows (what could
still be answered, reminders not yet sent); the data already collected stays."""

reminder_preferences_changed = _portal.signal("reminder-preferences-changed")
"""Sender: a participant who changed how reminders reach them (channels, quiet hours, e-mail
address, a phone's notifications). The reminder planner re-plans; it reads those choices, so the
preferences cannot call it without an import cycle."""

replacement_passkey_added = _portal.signal("replacement-passkey-added")
"""Sender: a participant to whose account a passkey was just added from a replacement enrolment
link (issued while they already had one); `added_at` is when. The participant is told on every
channel they chose that can carry it (the e-mail), since the link may not have been used by
them."""

worker_pass = _portal.signal("worker-pass")
"""Sender: the moment (`clock.now()`) of a pass of the background worker (`flask reminders
dispatch --loop`, every 15 seconds). Receivers bring what the clock alone changes up to date, so
no one's request pays for it: the dashboard's questionnaire standing, whose rows fall due in
waves when windows open and close at a site's midnight."""
