"""What a reminder says: its subject, and its text in the participant's language on every
channel (the e-mail's text and HTML parts included).

Only when and where, nothing else: a lock screen or an inbox is no place for a treatment's name
or a questionnaire's title.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import date, datetime, timedelta

from flask import current_app
from flask_babel import force_locale
from flask_babel import gettext as _

from patient_portal.accounts.models import Participant
from patient_portal.i18n import format_date, format_time, text_locale
from patient_portal.protocol.services import get_protocol
from patient_portal.reminders.channels import Message
from patient_portal.reminders.models import Reminder
from patient_portal.schedule.models import Visit


@dataclass(frozen=True)
class Subject:
    """What a reminder is about, as stored in `Reminder.subject`.

    The stored text is part of the reminder's unique key, so its format never changes:
    `visit:<visit id>:<moment>:<day>` (moment: week-before, day-before, morning),
    `questionnaire:<visit|one>:<visit or assignment id>:<opens|closes>:<day>`, and for a test
    reminder `test:<stamp>:<nonce>`, with neither moment nor day.
    """

    topic: str
    ref: str
    """Which visit or questionnaires: "12"; "visit:12" or "one:40"; a test's stamp and nonce."""
    moment: str = ""
    day: date | None = None
    """The visit's day, or the day the questionnaires open or close: a visit moved to another
    day is another reminder."""

    @classmethod
    def parse(cls, text: str) -> Subject:
        parts = text.split(":")
        if len(parts) < 4:
            return cls(parts[0], ":".join(parts[1:]))
        return cls(parts[0], ":".join(parts[1:-2]), parts[-2], date.fromisoformat(parts[-1]))

    def __str__(self) -> str:
        if self.day is None:
            return f"{self.topic}:{self.ref}"
        return f"{self.topic}:{self.ref}:{self.moment}:{self.day.isoformat()}"


def _path(endpoint: str, **values) -> str:
    """A path on the portal, inside or outside a request (the dispatcher has none)."""
    adapter = current_app.extensions.get("reminders_url_adapter")
    if adapter is None:
        adapter = current_app.extensions["reminders_url_adapter"] = current_app.url_map.bind(
            "localhost"
        )
    return adapter.build(endpoint, values)


def compose(
    reminder: Reminder,
    participant: Participant,
    visit: Visit | None,
    now: datetime,
    email: bool | None = None,
) -> Message:
    """The reminder's text in the participant's language: when and where, nothing else.

    Infusions are "study visits" here: a lock screen is no place for a treatment's name.
    """
    site = get_protocol().site(participant.site_code)
    zone, language = site.zone, participant.language
    locale = site.formatting_locale(language)
    moment = Subject.parse(reminder.subject).moment
    catalogue = text_locale(language, site.country)
    with force_locale(catalogue):
        place = site.name[language]
        if reminder.kind in ("infusion", "visit") and visit is not None:
            title = {
                "week-before": _("CARE-SSc study visit in 7 days"),
                "day-before": _("CARE-SSc study visit tomorrow"),
                "morning": _("CARE-SSc study visit today"),
            }.get(moment, _("CARE-SSc study visit"))
            if visit.scheduled_at is not None:
                body = _(
                    "%(date)s at %(time)s, %(place)s.",
                    date=format_date(visit.scheduled_at, locale, zone),
                    time=format_time(visit.scheduled_at, locale, zone),
                    place=place,
                )
            else:
                body = _(
                    "%(date)s, %(place)s. Your study team will confirm the time.",
                    date=format_date(visit.target_date, locale, zone),
                    place=place,
                )
            path = _path("schedule.home")
        elif reminder.kind == "questionnaire":
            last_day = (reminder.expires_at - timedelta(seconds=1)).astimezone(zone).date()
            if moment == "opens":
                title = _("A CARE-SSc questionnaire is open")
            else:
                title = _("A CARE-SSc questionnaire closes soon")
            body = _(
                "You can answer it until the end of %(date)s.",
                date=format_date(last_day, locale, zone),
            )
            path = (
                _path("questionnaires.start", assignment_id=reminder.assignment_id)
                if reminder.assignment_id
                else _path("questionnaires.index")
            )
        elif reminder.kind == "new_device":
            # Only that a device was added and when: no study detail, nothing about health.
            title = _("A new device was added to your CARE-SSc account")
            body = _(
                "A passkey for a new device was added to your account on %(date)s at %(time)s. "
                "If it was not you, please call your study team: %(phone)s.",
                date=format_date(reminder.due_at, locale, zone),
                time=format_time(reminder.due_at, locale, zone),
                phone=site.phone,
            )
            path = _path("accounts.settings")
        else:
            title = _("CARE-SSc test reminder")
            body = _("Reminders from the CARE-SSc study portal will reach you here.")
            path = _path("reminders.preferences")
    ttl = int((reminder.expires_at - now).total_seconds())
    message = Message(
        title=title,
        body=body,
        url=path,
        # Infusion or not, the phone only ever sees "visit".
        tag="care-ssc-visit" if reminder.kind == "infusion" else f"care-ssc-{reminder.kind}",
        subject_line=title,
        text="",
        html="",
        language=language,
        ttl=max(ttl, 60),
        reminder_id=reminder.id,
        catalogue=catalogue,
    )
    if email if email is not None else reminder.channel == "email":
        return with_email_parts(message)
    return message


def _email_texts(language: str) -> dict[str, str]:
    """The e-mail's fixed words in one catalogue (fr_CA, fr_FR, en), translated once per app."""
    cache = current_app.extensions.setdefault("reminders_email_texts", {})
    if language not in cache:
        with force_locale(language):
            cache[language] = {
                "open": _("Open the CARE-SSc study portal"),
                "why": _(
                    "You receive this e-mail because you asked for reminders from the "
                    "CARE-SSc study portal."
                ),
                "change": _("Change my reminder settings"),
                "footer": _(
                    "You receive this e-mail because you asked for reminders from the CARE-SSc "
                    "study portal. To stop them, change your reminder settings: %(url)s",
                    url="{url}",
                ),
            }
    return cache[language]


def with_email_parts(message: Message) -> Message:
    """The message with its e-mail text and HTML parts, in its language."""
    origin = current_app.config["PORTAL_ORIGIN"]
    settings_url = origin + _path("reminders.preferences")
    link = origin + message.url
    texts = _email_texts(message.catalogue or message.language)
    footer = texts["footer"].replace("{url}", settings_url)
    # The template alone, without the page context processors: it needs none of them.
    html = current_app.jinja_env.get_template("reminders/email.html").render(
        title=message.title,
        body=message.body,
        link=link,
        settings_url=settings_url,
        language=message.language,
        texts=texts,
    )
    text = f"{message.title}\n\n{message.body}\n\n{link}\n\n-- \n{footer}\n"
    return replace(message, text=text, html=html)
