"""What the participant chose: channels per kind of reminder, quiet hours, the optional e-mail
address and the phones that accept notifications, and which channels can reach them now.

Every change is audited and flushed, never committed, then announced with
`signals.reminder_preferences_changed` so that the planner (reminders.planning, connected in
create_app) re-plans: the planner reads these choices, so it cannot be imported from here.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
from dataclasses import dataclass
from datetime import datetime, timedelta
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo

import sqlalchemy as sa
from cryptography.fernet import InvalidToken
from flask import current_app, url_for
from flask_babel import force_locale
from flask_babel import gettext as _
from itsdangerous import BadSignature, SignatureExpired, TimestampSigner, URLSafeTimedSerializer

from patient_portal import audit, clock, signals
from patient_portal.accounts.models import Participant
from patient_portal.errors import PortalError
from patient_portal.extensions import db
from patient_portal.i18n import person_text_locale
from patient_portal.reminders import channels as channels_module
from patient_portal.reminders.models import (
    CHANNELS,
    KINDS,
    PushSubscription,
    ReminderPreference,
)
from patient_portal.security import token_digest

DEFAULT_QUIET = (21, 8)
# Quiet hours shorter than this or longer than that are a slip of the finger, not a choice.
QUIET_MIN_HOURS, QUIET_MAX_HOURS = 1, 14
EMAIL_MAX = 254
# Deliberately simple: one @, a dot in the domain, no spaces. The SMTP server has the last word.
EMAIL_PATTERN = re.compile(r"^[^@\s]{1,64}@[^@\s]+\.[^@\s.]{2,}$")
PUSH_KEY_PATTERN = re.compile(r"^[A-Za-z0-9_-]+={0,2}$")
# How long the link sent to a new address can confirm it: long enough for a mailbox read once a
# day, short enough that an old e-mail in someone else's hands is useless.
EMAIL_LINK_LIFETIME = timedelta(hours=48)
EMAIL_LINK_SALT = "reminders.email-verification"


def _refused(message: str, field: str) -> PortalError:
    """Bad input from the preferences page: 422, shown beside `field` (or as JSON to the
    phone's script)."""
    return PortalError(message, status=422, field=field)


@dataclass(frozen=True)
class Preferences:
    channels: dict[str, tuple[str, ...]]
    quiet: tuple[int, int] | None
    has_email: bool
    email_verified: bool = False


def _preference_row(participant: Participant) -> ReminderPreference | None:
    return db.session.get(ReminderPreference, participant.id)


def preferences_of(participant: Participant, row: ReminderPreference | None = None) -> Preferences:
    """The participant's choices, or the defaults: every channel, quiet from 21:00 to 08:00."""
    row = row if row is not None else _preference_row(participant)
    if row is None:
        return Preferences({kind: CHANNELS for kind in KINDS}, DEFAULT_QUIET, False)
    stored = row.channels or {}
    chosen = {kind: tuple(c for c in CHANNELS if c in stored.get(kind, CHANNELS)) for kind in KINDS}
    # The quiet_hours constraint keeps both hours NULL or both set.
    quiet = (
        None
        if row.quiet_start is None or row.quiet_end is None
        else (row.quiet_start, row.quiet_end)
    )
    return Preferences(
        chosen,
        quiet,
        row.email_encrypted is not None,
        row.email_encrypted is not None and row.email_verified_at is not None,
    )


def _ensure_row(participant: Participant) -> ReminderPreference:
    row = _preference_row(participant)
    if row is None:
        row = ReminderPreference(
            participant_id=participant.id,
            channels={kind: list(CHANNELS) for kind in KINDS},
            quiet_start=DEFAULT_QUIET[0],
            quiet_end=DEFAULT_QUIET[1],
            updated_at=clock.now(),
        )
        db.session.add(row)
    return row


def parse_quiet_hours(enabled: bool, start: str | None, end: str | None) -> tuple[int, int] | None:
    """Quiet hours from the page's choices, or a refusal naming what makes no sense."""
    if not enabled:
        return None
    try:
        start_hour, end_hour = int(start or ""), int(end or "")
    except ValueError:
        raise _refused(_("Please choose the hours from the lists."), "quiet") from None
    if not (0 <= start_hour <= 23 and 0 <= end_hour <= 23):
        raise _refused(_("Please choose the hours from the lists."), "quiet")
    length = (end_hour - start_hour) % 24
    if not QUIET_MIN_HOURS <= length <= QUIET_MAX_HOURS:
        raise _refused(
            _(
                "Quiet hours must last between %(min)s and %(max)s hours.",
                min=QUIET_MIN_HOURS,
                max=QUIET_MAX_HOURS,
            ),
            "quiet",
        )
    return start_hour, end_hour


def save_preferences(
    participant: Participant, channels: dict[str, list[str]], quiet: tuple[int, int] | None
) -> bool:
    """Store channels per kind and quiet hours (audited), then re-plan; True if anything changed."""
    unknown = [c for chosen in channels.values() for c in chosen if c not in CHANNELS]
    if unknown or any(kind not in KINDS for kind in channels):
        raise _refused(_("Please choose among the channels shown."), "channels")
    row = _ensure_row(participant)
    before = {"channels": row.channels, "quiet": [row.quiet_start, row.quiet_end]}
    row.channels = {kind: [c for c in CHANNELS if c in channels.get(kind, [])] for kind in KINDS}
    row.quiet_start, row.quiet_end = quiet if quiet else (None, None)
    after = {"channels": row.channels, "quiet": [row.quiet_start, row.quiet_end]}
    if before == after:
        return False
    row.updated_at = clock.now()
    db.session.flush()
    audit.record(
        "reminder_preferences.changed",
        "participant",
        participant.id,
        before=before,
        after=after,
        stream=participant.audit_stream,
    )
    signals.reminder_preferences_changed.send(participant)
    return True


def smtp_configured() -> bool:
    return bool(current_app.config.get("PORTAL_SMTP_HOST"))


def email_of(participant: Participant) -> str | None:
    """The participant's decrypted address, for the page and the e-mail channel only."""
    row = _preference_row(participant)
    return channels_module.decrypt_contact(current_app, row.email_encrypted if row else None)


def set_email(participant: Participant, address: str | None) -> bool:
    """Set, change or remove (empty) the optional address, encrypted at rest; audited without
    the address itself. True if it changed."""
    address = (address or "").strip()
    if address and (len(address) > EMAIL_MAX or not EMAIL_PATTERN.match(address)):
        raise _refused(_("Please enter a valid e-mail address, like name@example.org."), "email")
    if address == (email_of(participant) or ""):
        return False
    row = _ensure_row(participant)
    had = row.email_encrypted is not None
    row.email_encrypted = channels_module.encrypt_contact(current_app, address) if address else None
    # A new address receives nothing until its owner opens the link sent to it.
    row.email_verified_at = None
    row.updated_at = clock.now()
    db.session.flush()
    audit.record(
        "reminder_email.changed",
        "participant",
        participant.id,
        before={"email": "set" if had else None},
        after={"email": "set" if address else None},
        stream=participant.audit_stream,
    )
    signals.reminder_preferences_changed.send(participant)
    return True


def _address_tag(address: str) -> str:
    """Binds a link to one address without carrying it: a keyed digest, so a link in a log
    cannot be matched to an address by guessing."""
    key = current_app.config["SECRET_KEY"].encode()
    return hmac.new(key, address.lower().encode(), hashlib.sha256).hexdigest()[:32]


class _ClockSigner(TimestampSigner):
    """Signs and checks a link's age on the portal's one clock (clock.now), as everything else."""

    def get_timestamp(self) -> int:
        return int(clock.now().timestamp())


def _link_serializer() -> URLSafeTimedSerializer:
    return URLSafeTimedSerializer(
        current_app.config["SECRET_KEY"], salt=EMAIL_LINK_SALT, signer=_ClockSigner
    )


def verification_token(participant: Participant) -> str:
    """A signed token for the participant's current address, valid EMAIL_LINK_LIFETIME."""
    address = email_of(participant)
    if address is None:
        raise _refused(_("Please enter a valid e-mail address, like name@example.org."), "email")
    return str(_link_serializer().dumps({"p": participant.id, "a": _address_tag(address)}))


def send_verification(participant: Participant) -> channels_module.Outcome:
    """E-mail the link that confirms the participant's address (audited, the address never
    written anywhere but the mail itself). Sent at once: it is no reminder, and the participant
    waits for it."""
    address = email_of(participant)
    if address is None or not smtp_configured():
        return channels_module.Outcome("failed", "no address or no SMTP server")
    origin = current_app.config["PORTAL_ORIGIN"]
    link = origin + url_for("reminders.confirm_email", token=verification_token(participant))
    settings_url = origin + url_for("reminders.preferences")
    with force_locale(person_text_locale(participant)):
        title = _("Please confirm your e-mail address for CARE-SSc reminders")
        body = _(
            "Open this link to receive your CARE-SSc reminders at this address. It works for "
            "%(hours)s hours. If you did not ask for reminders, you can ignore this e-mail.",
            hours=int(EMAIL_LINK_LIFETIME.total_seconds() // 3600),
        )
        texts = {
            "open": _("Confirm my e-mail address"),
            "why": _("This address was entered on the CARE-SSc study portal."),
            "change": _("Change my reminder settings"),
        }
    message = channels_module.Message(
        title=title,
        body=body,
        url=link,
        tag="care-ssc-email",
        subject_line=title,
        text=f"{title}\n\n{body}\n\n{link}\n",
        html=current_app.jinja_env.get_template("reminders/email.html").render(
            title=title,
            body=body,
            link=link,
            settings_url=settings_url,
            language=participant.language,
            texts=texts,
        ),
        language=participant.language,
        ttl=int(EMAIL_LINK_LIFETIME.total_seconds()),
        reminder_id=0,
    )
    outcome = channels_module.EmailChannel(current_app).send(
        message, channels_module.Target(email=address)
    )
    audit.record(
        "reminder_email.verification_sent",
        "participant",
        participant.id,
        after={"outcome": outcome.status},
        stream=participant.audit_stream,
    )
    return outcome


def participant_of_link(token: str) -> tuple[Participant, bool]:
    """The participant a confirmation link is for, and whether their address is already
    confirmed; a refusal (translated) for a link that is wrong, too old or for another address."""
    not_valid = PortalError(
        _("This confirmation link is not valid. Please ask for a new one on your reminders page."),
        400,
    )
    try:
        data = _link_serializer().loads(token, max_age=int(EMAIL_LINK_LIFETIME.total_seconds()))
    except SignatureExpired:
        raise PortalError(
            _(
                "This confirmation link has expired. Please ask for a new one on your reminders page."
            ),
            410,
        ) from None
    except BadSignature:
        raise not_valid from None
    if not isinstance(data, dict) or not isinstance(data.get("p"), int):
        raise not_valid
    participant = db.session.get(Participant, data["p"])
    address = email_of(participant) if participant is not None else None
    if participant is None or address is None or data.get("a") != _address_tag(address):
        raise not_valid
    if participant.status == "withdrawn":
        raise not_valid
    row = _preference_row(participant)
    return participant, row is not None and row.email_verified_at is not None


def confirm_email(participant: Participant) -> bool:
    """Mark the participant's address as confirmed (audited) and turn e-mail on for each kind of
    reminder they receive at all, then re-plan; False if it already was."""
    row = _preference_row(participant)
    if row is None or row.email_encrypted is None or row.email_verified_at is not None:
        return False
    row.email_verified_at = clock.now()
    before = row.channels
    row.channels = {
        kind: [c for c in CHANNELS if c in chosen or (c == "email" and chosen)]
        for kind, chosen in (row.channels or {}).items()
    }
    row.updated_at = row.email_verified_at
    db.session.flush()
    audit.record(
        "reminder_email.verified",
        "participant",
        participant.id,
        before={"email": "set", "channels": before},
        after={"email": "verified", "channels": row.channels},
        stream=participant.audit_stream,
    )
    signals.reminder_preferences_changed.send(participant)
    return True


def rotate_contact_key() -> int:
    """Every stored address encrypted again with the current first key; flushes. An address no
    key can read is left as it is (it reads as no address). Returns how many were rewritten."""
    cipher = channels_module.contact_cipher(current_app)
    rows = db.session.scalars(
        sa.select(ReminderPreference).where(ReminderPreference.email_encrypted.is_not(None))
    ).all()
    rotated = 0
    for row in rows:
        try:
            row.email_encrypted = cipher.rotate(bytes(row.email_encrypted or b""))
        except InvalidToken:
            continue
        rotated += 1
    db.session.flush()
    if rotated:
        audit.record("contacts.key_rotated", "reminder_preference", "all", after={"count": rotated})
    return rotated


def _b64url_decode(value: str) -> bytes:
    return base64.urlsafe_b64decode(value + "=" * (-len(value) % 4))


def _check_subscription(data: object) -> tuple[str, str, str]:
    """(endpoint, p256dh, auth) from a browser's PushSubscription JSON, or a refusal."""
    unusable = _refused(
        _("This phone sent notification details the portal cannot use. Please try again."),
        "push",
    )
    if not isinstance(data, dict) or not isinstance(data.get("keys"), dict):
        raise unusable
    endpoint, keys = data.get("endpoint"), data["keys"]
    p256dh, auth = keys.get("p256dh"), keys.get("auth")
    if not (isinstance(endpoint, str) and isinstance(p256dh, str) and isinstance(auth, str)):
        raise unusable
    if len(endpoint) > 2000:
        raise unusable
    try:
        parts = urlsplit(endpoint)
    except ValueError:
        raise unusable from None
    if not parts.hostname or parts.scheme not in ("http", "https"):
        raise unusable
    try:
        channels_module.PushPolicy.of(current_app).check_url(endpoint)
    except channels_module.PushEndpointRefused:
        # The browser's push service is not one we post to (or the address is inside a
        # network): the server would otherwise send requests wherever a participant says.
        raise _refused(
            _(
                "The portal cannot send notifications through this browser. Please try "
                "another browser on this phone, or choose e-mail or home-page reminders."
            ),
            "push",
        ) from None
    if not (PUSH_KEY_PATTERN.match(p256dh) and PUSH_KEY_PATTERN.match(auth)):
        raise unusable
    try:
        point, secret = _b64url_decode(p256dh), _b64url_decode(auth)
    except ValueError:
        raise unusable from None
    if len(point) != 65 or point[0] != 4 or len(secret) != 16:
        raise unusable
    return endpoint, p256dh, auth


def add_subscription(
    participant: Participant, data: object, user_agent: str = ""
) -> PushSubscription:
    """Keep a phone's push subscription (the same endpoint again updates it); audited; re-plans."""
    endpoint, p256dh, auth = _check_subscription(data)
    digest = token_digest(endpoint)
    subscription = db.session.scalar(
        sa.select(PushSubscription).where(PushSubscription.endpoint_hash == digest)
    )
    if subscription is None:
        subscription = PushSubscription(
            endpoint=endpoint, endpoint_hash=digest, created_at=clock.now()
        )
        db.session.add(subscription)
    subscription.participant_id = participant.id
    subscription.p256dh, subscription.auth = p256dh, auth
    subscription.user_agent = (user_agent or "")[:200]
    db.session.flush()
    audit.record(
        "push_subscription.added",
        "push_subscription",
        subscription.id,
        after={"participant": participant.id},
        stream=participant.audit_stream,
    )
    signals.reminder_preferences_changed.send(participant)
    return subscription


def remove_subscription(participant: Participant, endpoint: object) -> bool:
    """Forget this phone's subscription (turned off on the page); True if there was one."""
    if not isinstance(endpoint, str):
        return False
    digest = token_digest(endpoint)
    subscription = db.session.scalar(
        sa.select(PushSubscription).where(
            PushSubscription.endpoint_hash == digest,
            PushSubscription.participant_id == participant.id,
        )
    )
    if subscription is None:
        return False
    audit.record(
        "push_subscription.removed",
        "push_subscription",
        subscription.id,
        before={"participant": participant.id},
        stream=participant.audit_stream,
    )
    db.session.delete(subscription)
    db.session.flush()
    signals.reminder_preferences_changed.send(participant)
    return True


def subscriptions_of(participant: Participant) -> list[PushSubscription]:
    return list(
        db.session.scalars(
            sa.select(PushSubscription)
            .where(PushSubscription.participant_id == participant.id)
            .order_by(PushSubscription.id)
        )
    )


def usable_channels(participant: Participant, prefs: Preferences | None = None) -> set[str]:
    """The channels that can reach this participant now: push needs a phone that accepted
    notifications, e-mail a confirmed address and an SMTP server."""
    prefs = prefs or preferences_of(participant)
    usable = {"inapp"}
    if db.session.scalar(
        sa.select(PushSubscription.id).where(PushSubscription.participant_id == participant.id)
    ):
        usable.add("push")
    if prefs.email_verified and smtp_configured():
        usable.add("email")
    return usable


def in_quiet_hours(moment: datetime, zone: ZoneInfo, quiet: tuple[int, int] | None) -> bool:
    """Whether the site's wall clock at `moment` is within the quiet hours (which may span
    midnight)."""
    if quiet is None:
        return False
    start, end = quiet
    hour = moment.astimezone(zone).hour
    return start <= hour < end if start < end else hour >= start or hour < end
