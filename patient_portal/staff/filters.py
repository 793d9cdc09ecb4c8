"""The staff pages' query strings: the dashboard's and the audit viewer's filters.

Filters are plain GET arguments, so a filtered view is a shareable URL that works without
JavaScript. Anything malformed is a translated 400 (a `PortalError`); a site that exists but is
not the staff member's is a 404, as for any other record of another site.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date

from flask_babel import gettext as _

from patient_portal import clock
from patient_portal.accounts.auth import visible_site_codes
from patient_portal.accounts.models import StaffUser
from patient_portal.errors import PortalError
from patient_portal.protocol.services import get_protocol
from patient_portal.questionnaires.loader import get_instruments
from patient_portal.questionnaires.states import STATES
from patient_portal.timezones import parse_day

# Rows on a page of the matrix or of the audit log.
PAGE_SIZE = 50
CHART_MAX_DAYS = 731
MAX_PAGE = 100_000
STUDY_ID_PATTERN = re.compile(r"^[A-Za-z0-9-]{1,20}$")
PAGE_PATTERN = re.compile(r"[0-9]{1,6}")
AUDIT_TEXT = re.compile(r"^[\w.@:+\- ]{1,120}$")


@dataclass(frozen=True)
class Filters:
    """What the dashboard shows; `sites` are the sites in scope after the site filter."""

    sites: tuple[str, ...]
    site: str | None = None
    visit: str | None = None
    instrument: str | None = None
    state: str | None = None
    study_id: str | None = None
    page: int = 1
    start: date | None = None
    end: date | None = None

    def query_args(self, **changes) -> dict[str, str]:
        """The filters as URL arguments (for links that keep them), with some changed."""
        values = {
            "site": self.site,
            "visit": self.visit,
            "instrument": self.instrument,
            "state": self.state,
            "study_id": self.study_id,
            "from": self.start.isoformat() if self.start else None,
            "to": self.end.isoformat() if self.end else None,
            "page": str(self.page) if self.page != 1 else None,
        }
        values.update(changes)
        return {key: value for key, value in values.items() if value}


def visit_keys() -> list[str]:
    """Every visit with questionnaires, in protocol order, then the series (weekly check-in),
    then each visit's diary (DIARY_M0); never the unscheduled reports, which nobody is due."""
    protocol = get_protocol()
    return (
        [v.code for v in protocol.visits if v.questionnaires]
        + [s.code for s in protocol.series]
        + [vs.occurrence_code(code) for vs in protocol.visit_series for code in vs.after_visits]
    )


def parse_date(value: str, name: str) -> date:
    """A filter's day, or a 400 naming the filter."""
    return parse_day(
        value, _("“%(name)s” must be a date written year-month-day.", name=name), status=400
    )


def parse_date_range(args: Mapping[str, str]) -> tuple[date | None, date | None]:
    """`from` and `to` as dates; a malformed or reversed range, or one too long, is refused."""
    start = parse_date(args["from"], _("First day")) if args.get("from") else None
    end = parse_date(args["to"], _("Last day")) if args.get("to") else None
    if start and end:
        if start > end:
            raise PortalError(_("The start of the period must be before its end."))
        if (end - start).days > CHART_MAX_DAYS:
            raise PortalError(_("Please choose a period of at most two years."))
    return start, end


def parse_page(value: str | None) -> int:
    """A page number, 1..MAX_PAGE, in ASCII digits (`str.isdigit` also accepts "²", which
    `int` refuses)."""
    if not value:
        return 1
    if not PAGE_PATTERN.fullmatch(value) or not 1 <= int(value) <= MAX_PAGE:
        raise PortalError(_("The page number is not valid."))
    return int(value)


def scoped_sites(staff: StaffUser, site: str | None) -> tuple[str, ...]:
    """The sites a request may read: all the staff member's sites, or the one asked for.

    An unknown site is a 400; a known site that is not theirs is a 404, as for any other record
    of another site.
    """
    visible = tuple(visible_site_codes(staff))
    if not site:
        return visible
    if site not in get_protocol().sites:
        raise PortalError(_("This site does not exist."))
    if site not in visible:
        raise PortalError(_("Page not found"), 404)
    return (site,)


def parse_filters(args: Mapping[str, str], staff: StaffUser) -> Filters:
    """The dashboard's filters from the query string; anything unknown is a translated 400."""
    site = args.get("site") or None
    visit = args.get("visit") or None
    instrument = args.get("instrument") or None
    state = args.get("state") or None
    study_id = (args.get("study_id") or "").strip() or None
    if visit is not None and visit not in visit_keys():
        raise PortalError(_("This visit does not exist."))
    if instrument is not None and instrument not in get_instruments():
        raise PortalError(_("This questionnaire does not exist."))
    if state is not None and state not in STATES:
        raise PortalError(_("This state does not exist."))
    if study_id is not None and not STUDY_ID_PATTERN.match(study_id):
        raise PortalError(_("A study ID has only letters, digits and hyphens."))
    start, end = parse_date_range(args)
    if start and not end and (clock.now().date() - start).days > CHART_MAX_DAYS:
        # Left open, the period ends today: its chart would have a bar for every week since.
        raise PortalError(_("Please choose a period of at most two years."))
    return Filters(
        sites=scoped_sites(staff, site),
        site=site,
        visit=visit,
        instrument=instrument,
        state=state,
        study_id=study_id.upper() if study_id else None,
        page=parse_page(args.get("page")),
        start=start,
        end=end,
    )


@dataclass(frozen=True)
class AuditFilters:
    """What the audit viewer shows: text searched in actor and action, an entity, a period."""

    actor: str | None = None
    action: str | None = None
    entity: str | None = None
    start: date | None = None
    end: date | None = None
    page: int = 1

    def query_args(self, **changes) -> dict[str, str]:
        values = {
            "actor": self.actor,
            "action": self.action,
            "entity": self.entity,
            "from": self.start.isoformat() if self.start else None,
            "to": self.end.isoformat() if self.end else None,
            "page": str(self.page) if self.page != 1 else None,
        }
        values.update(changes)
        return {key: value for key, value in values.items() if value}


def parse_audit_filters(args: Mapping[str, str]) -> AuditFilters:
    """The audit viewer's filters; anything malformed is a translated 400."""
    values = {}
    for name in ("actor", "action", "entity"):
        value = (args.get(name) or "").strip()
        if value and not AUDIT_TEXT.match(value):
            raise PortalError(_("Please search with letters, digits and . @ : - _ only."))
        values[name] = value or None
    start, end = parse_date_range(args)
    return AuditFilters(**values, start=start, end=end, page=parse_page(args.get("page")))
