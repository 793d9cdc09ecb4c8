"""The portal's one clock.

Every module reads the time as `clock.now()` through this module, never a copy imported by
name, so that moving the clock (the demo's past year, a test's day after an infusion) moves it
for services, model defaults and views alike.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime

_fixed: datetime | None = None


def now() -> datetime:
    """The current time, aware, in UTC (or the moment the clock was set to)."""
    return _fixed if _fixed is not None else datetime.now(UTC)


def wall_time() -> datetime:
    """The real time, whatever the clock was set to: when an audit event was really written."""
    return datetime.now(UTC)


def set_to(moment: datetime | None) -> None:
    """Stop the clock at `moment` (aware); None lets it run again."""
    global _fixed
    if moment is not None and moment.tzinfo is None:
        raise ValueError("the clock is set to an aware datetime")
    _fixed = moment.astimezone(UTC) if moment is not None else None


@contextmanager
def stopped_at(moment: datetime) -> Iterator[None]:
    """The clock reads `moment` inside the block, then whatever it read before."""
    before = _fixed
    set_to(moment)
    try:
        yield
    finally:
        set_to(before)
