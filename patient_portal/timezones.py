"""Wall-clock time at a site, and the UTC instants it stands for (DESIGN.md, Time).

Everything is stored in UTC; visit days, questionnaire windows and reminder hours are decided on
the site's wall clock (`America/Toronto`, `Europe/Paris`) and converted here, in one place, with
the two DST cases resolved explicitly: a wall-clock time in the spring-forward gap, and one that
occurs twice at the fall-back change (always its FIRST occurrence, fold=0).
"""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from flask_babel import gettext as _

from patient_portal.errors import PortalError


class NonexistentLocalTime(PortalError):
    """The wall-clock time falls in the spring-forward gap: no clock shows it that day."""

    status = 422


# Every date a person types (dashboard and audit periods, day 0, appointments) lies in these
# bounds: beyond them dates overflow the wall-clock conversions (year 1, 9999-12-31 23:00) and
# PostgreSQL's 32-bit epoch arithmetic (after 19 January 2038). The trial runs 2020-2037.
DATE_EARLIEST = date(2000, 1, 1)
DATE_LATEST = date(2037, 12, 31)


def parse_day(text: str | None, message: str, field: str | None = None, status: int = 422) -> date:
    """A day on the wall calendar written year-month-day (what `<input type=date>` sends and
    the query strings carry), or a PortalError with the caller's `message`; a day outside
    DATE_EARLIEST..DATE_LATEST is refused with a message naming the bounds."""
    try:
        day = date.fromisoformat((text or "").strip())
    except ValueError:
        raise PortalError(message, status, field) from None
    if not DATE_EARLIEST <= day <= DATE_LATEST:
        raise PortalError(
            _(
                "Please give a date between the years %(first)d and %(last)d.",
                first=DATE_EARLIEST.year,
                last=DATE_LATEST.year,
            ),
            status,
            field,
        )
    return day


def local_today(zone: ZoneInfo, now: datetime) -> date:
    """Today's date on the site's wall calendar."""
    return now.astimezone(zone).date()


def local_instant(day: date, zone: ZoneInfo, at: time = time.min) -> datetime:
    """The UTC instant at which the wall clock shows `at` on `day` (midnight by default).

    For planned moments (a window's opening, a reminder's hour) a time in the spring-forward
    gap is read with the offset before the change, which lands an hour later on the clock
    (02:00 → 03:00); a repeated time is its first occurrence.
    """
    return datetime.combine(day, at, tzinfo=zone).replace(fold=0).astimezone(UTC)


def wall_clock_to_utc(local_date: date, local_time: time, zone: ZoneInfo) -> datetime:
    """Convert a wall-clock date and time that a person chose (an appointment) to UTC.

    A time inside the spring-forward gap (e.g. 02:30 on 8 March 2026 in Montréal) does not
    exist and raises NonexistentLocalTime. A time that occurs twice at the fall-back change
    (e.g. 01:30 on 1 November 2026 in Montréal) resolves to its FIRST occurrence, fold=0, which
    is still summer time (UTC−4 there): the appointment is the earlier of the two instants.
    """
    naive = datetime.combine(local_date, local_time.replace(tzinfo=None, fold=0))
    as_utc = naive.replace(tzinfo=zone, fold=0).astimezone(UTC)
    if not wall_clock_exists(naive, zone):
        raise NonexistentLocalTime(
            _(
                "%(time)s does not exist on that day: the clocks jump forward an hour. "
                "Please choose another time.",
                time=local_time.strftime("%H:%M"),
            ),
            field="time",
        )
    return as_utc


def wall_clock_exists(naive: datetime, zone: ZoneInfo) -> bool:
    """Whether a clock in the zone ever shows this naive date and time."""
    return naive.replace(tzinfo=zone).astimezone(UTC).astimezone(zone).replace(tzinfo=None) == naive


def is_repeated_local_time(moment: datetime, zone: ZoneInfo) -> bool:
    """True when the wall-clock reading of this instant occurs twice (fall-back change)."""
    naive = moment.astimezone(zone).replace(tzinfo=None)
    return naive.replace(tzinfo=zone, fold=0).utcoffset() != naive.replace(
        tzinfo=zone, fold=1
    ).utcoffset() and wall_clock_exists(naive, zone)


def utc_offset_label(moment: datetime, zone: ZoneInfo) -> str:
    """UTC−04:00 style, for a repeated local time shown with its offset."""
    offset = moment.astimezone(zone).utcoffset() or timedelta(0)
    minutes = int(offset.total_seconds() // 60)
    sign = "+" if minutes >= 0 else "−"
    minutes = abs(minutes)
    return f"UTC{sign}{minutes // 60:02d}:{minutes % 60:02d}"
