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
