"""The completion tally: the dashboard's counts, kept up to date by the database itself.

A coordinator's dashboard counts every questionnaire of the sites in scope by state. Counting the
assignment rows at each view grows with the trial (about 60 per participant), so the database
keeps a tally beside them: how many assignments share a site, a visit, a questionnaire, a stored
status and an opening and closing hour. Triggers on `assignment` (migration 7b2e4c6d8f10) move
one row's count from its old key to its new one in the same transaction as the write, whatever
wrote it (a submission, a withdrawal's bulk update, a re-planning, a bulk import), so the tally
is never behind the data it counts. `flask workspace tally` checks it against a recount.

Hours, not states, are stored because "open" and "missed" change with the clock: the dashboard
derives each tally row's state from its hours at the moment it is asked, and counts only the
assignments of the current hour (and the grace period) row by row.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column

from patient_portal.extensions import db

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
HOUR = timedelta(hours=1)


def hour_number(moment: datetime) -> int:
    """Whole hours since 1970 (UTC): the tally's unit for opening and closing times."""
    return (moment - EPOCH) // HOUR


def hour_start(number: int) -> datetime:
    return EPOCH + number * HOUR


class CompletionTally(db.Model):
    """How many assignments share these values; written only by the triggers on `assignment`."""

    __tablename__ = "completion_tally"
    # On SQLite the rows live in the primary key's b-tree (no rowid): read in key order, once.
    __table_args__ = {"sqlite_with_rowid": False}

    site_code: Mapped[str] = mapped_column(sa.String(10), primary_key=True)
    # The visit's code, or the series code of a series occurrence (the weekly check-in).
    visit_key: Mapped[str] = mapped_column(sa.String(20), primary_key=True)
    instrument_id: Mapped[str] = mapped_column(sa.String(64), primary_key=True)
    status: Mapped[str] = mapped_column(sa.String(12), primary_key=True)
    opens_hour: Mapped[int] = mapped_column(primary_key=True, autoincrement=False)
    closes_hour: Mapped[int] = mapped_column(primary_key=True, autoincrement=False)
    total: Mapped[int] = mapped_column(default=0)


class QuestionnaireStanding(db.Model):
    """Per participant: in which states their questionnaires are, and until when that holds.

    The matrix's state and visit filters ask "who has a missed (open, …) questionnaire", "who
    has one at M3"; checked participant by participant, that read every participant's
    questionnaires at each view (0.2–0.35 s at 100,000 participants). A row here answers it for
    one participant. States change with the clock, so each row says until when it holds: the
    next opening or closing among the participant's questionnaires not done. Triggers on
    `assignment` (migration 2c7f9a4e1b86) set `fresh_until` to 0 whenever one of the
    participant's questionnaires is written, and the dashboard recounts the rows whose time has
    come before it reads them (standing.py), so a row is never read stale.
    """

    __tablename__ = "questionnaire_standing"

    participant_id: Mapped[int] = mapped_column(
        sa.ForeignKey("participant.id", ondelete="CASCADE"), primary_key=True, autoincrement=False
    )
    # The participant's site, copied as the tally copies it (a participant never changes site):
    # "how many at these sites have one missed" reads this table alone.
    site_code: Mapped[str] = mapped_column(sa.String(10))
    upcoming: Mapped[bool] = mapped_column(default=False)
    open: Mapped[bool] = mapped_column(default=False)
    completed: Mapped[bool] = mapped_column(default=False)
    missed: Mapped[bool] = mapped_column(default=False)
    withdrawn: Mapped[bool] = mapped_column(default=False)
    # The visit keys (visit codes, series codes) of the participant's questionnaires, between
    # commas: ",M0,M1,M3,WEEKLY,".
    visits: Mapped[str] = mapped_column(sa.Text, default="")
    # Whole seconds since 1970 (UTC) until which the states hold: 0 = recount now (a
    # questionnaire was written), None = until a questionnaire is written.
    fresh_until: Mapped[int | None] = mapped_column(sa.BigInteger, index=True)
