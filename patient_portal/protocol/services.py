"""The CARE-SSc protocol as data: sites, visits and windows, loaded and validated at start-up."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from datetime import time
from pathlib import Path
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from flask import Flask, current_app

DEFAULT_PROTOCOL_FILE = Path(__file__).with_name("care_ssc.json")
VISIT_KINDS = ("screening", "infusion", "safety", "follow_up", "end_of_study")
LANGUAGES = ("fr", "en")
COUNTRIES = ("CA", "FR")
SEVERITIES = ("urgent", "routine")
_CLOCK_TIME = re.compile(r"^([01][0-9]|2[0-3]):[0-5][0-9]$")


class ProtocolError(RuntimeError):
    """The protocol file is wrong: the message names the file, the field and the problem."""


@dataclass(frozen=True)
class WorkingHours:
    """When a site's team works: ISO weekdays (1 = Monday) and a daily span on its wall clock."""

    days: tuple[int, ...] = (1, 2, 3, 4, 5)
    start: time = time(9, 0)
    end: time = time(17, 0)

    @property
    def day_minutes(self) -> int:
        """How many working minutes one working day holds."""
        return (self.end.hour * 60 + self.end.minute) - (self.start.hour * 60 + self.start.minute)


@dataclass(frozen=True)
class StudyTeam:
    """A site's study-team direct line and what to do outside its working hours.

    `placeholder` marks a number that is an example in the shipped protocol file: the pages
    and the start-up check say so until the trial writes its real line there.
    """

    phone: str
    after_hours: dict[str, str]
    placeholder: bool = False


@dataclass(frozen=True)
class VisitKindDescription:
    """What a participant is told about a kind of visit: what happens, how long, what to bring."""

    what: dict[str, str]
    duration: dict[str, str]
    bring: dict[str, str]


@dataclass(frozen=True)
class Site:
    code: str
    study_id_prefix: str
    name: dict[str, str]
    city: str
    timezone: str
    country: str
    languages: tuple[str, ...]
    address: str
    phone: str
    emergency_number: str
    working_hours: WorkingHours = field(default_factory=WorkingHours)
    study_team: StudyTeam | None = None

    @property
    def team_phone(self) -> str:
        """The number a participant calls: the study team's line, else the switchboard."""
        return self.study_team.phone if self.study_team else self.phone

    @property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)

    def formatting_locale(self, language: str) -> str:
        """Language plus the site's country: fr_CA, en_CA, fr_FR, en_FR."""
        return f"{language}_{self.country}"


@dataclass(frozen=True)
class VisitDefinition:
    code: str
    kind: str
    day: int
    window_before: int
    window_after: int
    name: dict[str, str]
    questionnaires: tuple[str, ...]

    @property
    def is_infusion(self) -> bool:
        return self.kind == "infusion"


@dataclass(frozen=True)
class Series:
    code: str
    instrument: str
    every_days: int
    from_day: int
    to_day: int
    open_days: int


@dataclass(frozen=True)
class VisitSeries:
    """A daily questionnaire on days 1..`days` after each listed visit's actual date, each day
    open from `open_hour` on the site's wall clock until the same hour the next day."""

    code: str
    instrument: str
    after_visits: tuple[str, ...]
    days: int
    open_hour: int

    def occurrence_code(self, visit_code: str) -> str:
        """The series code stored on one visit's diaries (DIARY_M0), as exports show it."""
        return f"{self.code}_{visit_code}"


@dataclass(frozen=True)
class Unscheduled:
    """Reports a participant may start at any time ("report a symptom"), open `open_hours`."""

    code: str
    instrument: str
    open_hours: int


@dataclass(frozen=True)
class AlertTarget:
    """How soon a person must respond to an alert of one severity, in the site's working time
    (working days count as the site's working-day length)."""

    working_hours: int = 0
    working_days: int = 0

    def minutes(self, hours: WorkingHours) -> int:
        return self.working_hours * 60 + self.working_days * hours.day_minutes


DEFAULT_ALERT_TARGETS = {
    "urgent": AlertTarget(working_hours=4),
    "routine": AlertTarget(working_days=2),
}


@dataclass(frozen=True)
class Protocol:
    study_code: str
    registry: str
    title: dict[str, str]
    sites: dict[str, Site]
    visits: tuple[VisitDefinition, ...]
    series: tuple[Series, ...]
    open_days_before_target: int
    grace_hours: int
    default_visit_hour: int
    visit_series: tuple[VisitSeries, ...] = ()
    unscheduled: Unscheduled | None = None
    alert_targets: dict[str, AlertTarget] = field(
        default_factory=lambda: dict(DEFAULT_ALERT_TARGETS)
    )
    visit_kinds: dict[str, VisitKindDescription] = field(default_factory=dict)

    def site(self, code: str) -> Site:
        return self.sites[code]

    def series_codes(self) -> list[str]:
        """Every series code an assignment can carry: the repeating series, each visit
        series once per visit it follows, then the unscheduled reports."""
        codes = [series.code for series in self.series]
        codes += [vs.occurrence_code(v) for vs in self.visit_series for v in vs.after_visits]
        if self.unscheduled is not None:
            codes.append(self.unscheduled.code)
        return codes

    def visit(self, code: str) -> VisitDefinition:
        return next(v for v in self.visits if v.code == code)


class _Reader:
    """Reads typed fields out of the JSON, naming the exact place of any problem."""

    def __init__(self, filename: str):
        self.filename = filename

    def fail(self, where: str, problem: str) -> ProtocolError:
        return ProtocolError(f"{self.filename}: {where}: {problem}")

    def field(self, obj: object, key: str, kind: type | tuple[type, ...], where: str):
        if not isinstance(obj, dict):
            raise self.fail(where, "must be an object")
        if key not in obj:
            raise self.fail(f"{where}.{key}" if where else key, "is missing")
        value = obj[key]
        # bool is an int in Python; a protocol day of `true` is a mistake, not 1.
        if not isinstance(value, kind) or (isinstance(value, bool) and kind is int):
            raise self.fail(f"{where}.{key}" if where else key, f"must be {_kind_name(kind)}")
        return value

    def text(self, obj: object, key: str, where: str) -> str:
        value = self.field(obj, key, str, where)
        if not value.strip():
            raise self.fail(f"{where}.{key}", "must not be empty")
        return value

    def translated(self, obj: object, key: str, where: str) -> dict[str, str]:
        value = self.field(obj, key, dict, where)
        for language in LANGUAGES:
            self.text(value, language, f"{where}.{key}")
        return {language: value[language] for language in LANGUAGES}


def _kind_name(kind: type | tuple[type, ...]) -> str:
    names = {str: "a string", int: "a whole number", dict: "an object", list: "a list"}
    kinds = kind if isinstance(kind, tuple) else (kind,)
    return " or ".join(names.get(k, k.__name__) for k in kinds)


def _read_site(r: _Reader, raw: object, where: str) -> Site:
    timezone = r.text(raw, "timezone", where)
    try:
        ZoneInfo(timezone)
    except (ZoneInfoNotFoundError, ValueError):
        raise r.fail(f"{where}.timezone", f"{timezone!r} is not a known time zone") from None
    country = r.text(raw, "country", where)
    if country not in COUNTRIES:
        raise r.fail(f"{where}.country", f"{country!r} is not one of {', '.join(COUNTRIES)}")
    languages = r.field(raw, "languages", list, where)
    if not languages or any(language not in LANGUAGES for language in languages):
        raise r.fail(f"{where}.languages", "must list fr and/or en")
    return Site(
        code=r.text(raw, "code", where),
        study_id_prefix=r.text(raw, "study_id_prefix", where),
        name=r.translated(raw, "name", where),
        city=r.text(raw, "city", where),
        timezone=timezone,
        country=country,
        languages=tuple(languages),
        address=r.text(raw, "address", where),
        phone=r.text(raw, "phone", where),
        emergency_number=r.text(raw, "emergency_number", where),
        working_hours=_read_working_hours(r, raw, where),
        study_team=_read_study_team(r, raw, where),
    )


def _read_study_team(r: _Reader, raw: object, where: str) -> StudyTeam | None:
    if not isinstance(raw, dict) or "study_team" not in raw:
        return None
    team = r.field(raw, "study_team", dict, where)
    where = f"{where}.study_team"
    placeholder = team.get("placeholder", False)
    if not isinstance(placeholder, bool):
        raise r.fail(f"{where}.placeholder", "must be true or false")
    return StudyTeam(
        phone=r.text(team, "phone", where),
        after_hours=r.translated(team, "after_hours", where),
        placeholder=placeholder,
    )


def _read_visit_kinds(r: _Reader, raw: object) -> dict[str, VisitKindDescription]:
    kinds = {}
    for kind, text in r.field(raw, "visit_kinds", dict, "").items():
        where = f"visit_kinds.{kind}"
        if kind not in VISIT_KINDS:
            raise r.fail(where, f"is not one of {', '.join(VISIT_KINDS)}")
        kinds[kind] = VisitKindDescription(
            what=r.translated(text, "what", where),
            duration=r.translated(text, "duration", where),
            bring=r.translated(text, "bring", where),
        )
    return kinds


def _read_working_hours(r: _Reader, raw: object, where: str) -> WorkingHours:
    if not isinstance(raw, dict) or "working_hours" not in raw:
        return WorkingHours()
    where = f"{where}.working_hours"
    hours = r.field(raw, "working_hours", dict, where.rsplit(".", 1)[0])
    days = r.field(hours, "days", list, where)
    if not days or any(
        not isinstance(d, int) or isinstance(d, bool) or not 1 <= d <= 7 for d in days
    ):
        raise r.fail(f"{where}.days", "must list ISO weekdays 1 (Monday) to 7 (Sunday)")
    start, end = (r.text(hours, key, where) for key in ("start", "end"))
    for key, value in (("start", start), ("end", end)):
        if not _CLOCK_TIME.match(value):
            raise r.fail(f"{where}.{key}", "must be a time HH:MM")
    opens, closes = time.fromisoformat(start), time.fromisoformat(end)
    if closes <= opens:
        raise r.fail(where, "end must come after start")
    return WorkingHours(days=tuple(sorted(set(days))), start=opens, end=closes)


def _read_visit(r: _Reader, raw: object, where: str) -> VisitDefinition:
    kind = r.text(raw, "kind", where)
    if kind not in VISIT_KINDS:
        raise r.fail(f"{where}.kind", f"{kind!r} is not one of {', '.join(VISIT_KINDS)}")
    before = r.field(raw, "window_before", int, where)
    after = r.field(raw, "window_after", int, where)
    if before < 0 or after < 0:
        raise r.fail(where, "window_before and window_after must be 0 or more days")
    questionnaires = r.field(raw, "questionnaires", list, where)
    if not all(isinstance(q, str) and q for q in questionnaires):
        raise r.fail(f"{where}.questionnaires", "must list instrument ids")
    return VisitDefinition(
        code=r.text(raw, "code", where),
        kind=kind,
        day=r.field(raw, "day", int, where),
        window_before=before,
        window_after=after,
        name=r.translated(raw, "name", where),
        questionnaires=tuple(questionnaires),
    )


def _read_series(r: _Reader, raw: object, where: str) -> Series:
    series = Series(
        code=r.text(raw, "code", where),
        instrument=r.text(raw, "instrument", where),
        every_days=r.field(raw, "every_days", int, where),
        from_day=r.field(raw, "from_day", int, where),
        to_day=r.field(raw, "to_day", int, where),
        open_days=r.field(raw, "open_days", int, where),
    )
    if series.every_days <= 0 or series.open_days <= 0:
        raise r.fail(where, "every_days and open_days must be greater than 0")
    if series.to_day < series.from_day:
        raise r.fail(where, "to_day must not come before from_day")
    return series


def _read_visit_series(
    r: _Reader, raw: object, where: str, visits: list[VisitDefinition]
) -> VisitSeries:
    after = r.field(raw, "after_visits", list, where)
    codes = {v.code for v in visits}
    if not after or any(code not in codes for code in after):
        raise r.fail(f"{where}.after_visits", "must list visit codes of this protocol")
    series = VisitSeries(
        code=r.text(raw, "code", where),
        instrument=r.text(raw, "instrument", where),
        after_visits=tuple(after),
        days=r.field(raw, "days", int, where),
        open_hour=r.field(raw, "open_hour", int, where),
    )
    if not 1 <= series.days <= 60:
        raise r.fail(f"{where}.days", "must be 1 to 60 days")
    if not 0 <= series.open_hour <= 23:
        raise r.fail(f"{where}.open_hour", "must be an hour from 0 to 23")
    if any(len(series.occurrence_code(code)) > 20 for code in after):
        raise r.fail(f"{where}.code", "code, underscore and visit code must fit 20 characters")
    return series


def _read_unscheduled(r: _Reader, raw: object) -> Unscheduled:
    unscheduled = Unscheduled(
        code=r.text(raw, "code", "unscheduled"),
        instrument=r.text(raw, "instrument", "unscheduled"),
        open_hours=r.field(raw, "open_hours", int, "unscheduled"),
    )
    if not 1 <= unscheduled.open_hours <= 24 * 7:
        raise r.fail("unscheduled.open_hours", "must be 1 to 168 hours")
    return unscheduled


def _read_alert_targets(r: _Reader, raw: object) -> dict[str, AlertTarget]:
    targets = dict(DEFAULT_ALERT_TARGETS)
    for severity, target in r.field(raw, "alert_targets", dict, "").items():
        where = f"alert_targets.{severity}"
        if severity not in SEVERITIES:
            raise r.fail(where, f"is not one of {', '.join(SEVERITIES)}")
        if not isinstance(target, dict) or len(target) != 1:
            raise r.fail(where, "must give one of working_hours or working_days")
        ((unit, amount),) = target.items()
        if unit not in ("working_hours", "working_days"):
            raise r.fail(where, "must give one of working_hours or working_days")
        amount = r.field(target, unit, int, where)
        if amount <= 0:
            raise r.fail(f"{where}.{unit}", "must be greater than 0")
        targets[severity] = AlertTarget(**{unit: amount})
    return targets


def parse_protocol(raw: object, filename: str) -> Protocol:
    """Validate the decoded protocol file and build the Protocol, or raise ProtocolError."""
    r = _Reader(filename)
    study = r.field(raw, "study", dict, "")
    sites = [_read_site(r, s, f"sites[{i}]") for i, s in enumerate(r.field(raw, "sites", list, ""))]
    visits = [
        _read_visit(r, v, f"visits[{i}]") for i, v in enumerate(r.field(raw, "visits", list, ""))
    ]
    series = [
        _read_series(r, s, f"series[{i}]") for i, s in enumerate(r.field(raw, "series", list, ""))
    ]
    windows = r.field(raw, "questionnaire_windows", dict, "")
    hour = r.field(raw, "default_visit_hour", int, "")
    if not sites:
        raise r.fail("sites", "must list at least one site")
    if not visits:
        raise r.fail("visits", "must list at least one visit")
    for label, codes in (("sites", [s.code for s in sites]), ("visits", [v.code for v in visits])):
        duplicates = {c for c in codes if codes.count(c) > 1}
        if duplicates:
            raise r.fail(label, f"duplicate code {sorted(duplicates)[0]!r}")
    days = [v.day for v in visits]
    if days != sorted(days):
        raise r.fail("visits", "must be listed in order of their day")
    if not 0 <= hour <= 23:
        raise r.fail("default_visit_hour", "must be an hour from 0 to 23")
    assert isinstance(raw, dict)  # r.field above refused anything else
    visit_series = [
        _read_visit_series(r, s, f"visit_series[{i}]", visits)
        for i, s in enumerate(
            r.field(raw, "visit_series", list, "") if "visit_series" in raw else []
        )
    ]
    unscheduled = _read_unscheduled(r, raw["unscheduled"]) if "unscheduled" in raw else None
    series_codes = [s.code for s in series] + [
        vs.occurrence_code(v) for vs in visit_series for v in vs.after_visits
    ]
    if unscheduled is not None:
        series_codes.append(unscheduled.code)
    duplicates = {c for c in series_codes if series_codes.count(c) > 1}
    if duplicates:
        raise r.fail("series", f"duplicate series code {sorted(duplicates)[0]!r}")
    return Protocol(
        study_code=r.text(study, "code", "study"),
        registry=r.text(study, "registry", "study"),
        title=r.translated(study, "title", "study"),
        sites={s.code: s for s in sites},
        visits=tuple(visits),
        series=tuple(series),
        open_days_before_target=r.field(
            windows, "open_days_before_target", int, "questionnaire_windows"
        ),
        grace_hours=r.field(windows, "grace_hours", int, "questionnaire_windows"),
        default_visit_hour=hour,
        visit_series=tuple(visit_series),
        unscheduled=unscheduled,
        alert_targets=_read_alert_targets(r, raw)
        if "alert_targets" in raw
        else dict(DEFAULT_ALERT_TARGETS),
        visit_kinds=_read_visit_kinds(r, raw) if "visit_kinds" in raw else {},
    )


def load_protocol(path: Path) -> Protocol:
    """Read and validate a protocol file."""
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ProtocolError(f"{path}: file not found") from None
    except json.JSONDecodeError as error:
        raise ProtocolError(
            f"{path.name}: not valid JSON (line {error.lineno}: {error.msg})"
        ) from None
    return parse_protocol(raw, path.name)


def get_protocol() -> Protocol:
    """The protocol loaded for the running app."""
    return current_app.extensions["protocol"]


def placeholder_lines(protocol: Protocol) -> list[str]:
    """The sites whose study-team line is still the shipped example, not a real number."""
    return [
        code
        for code, site in protocol.sites.items()
        if site.study_team and site.study_team.placeholder
    ]


def init_app(app: Flask) -> None:
    path = Path(app.config["PORTAL_PROTOCOL_FILE"] or DEFAULT_PROTOCOL_FILE)
    protocol = load_protocol(path)
    app.extensions["protocol"] = protocol
    placeholders = placeholder_lines(protocol)
    if placeholders:
        # Participants are told to call this line: a deployment must not ship the example.
        app.logger.warning(
            "%s: the study-team line of %s is a placeholder; write the real number in the"
            " protocol file",
            path.name,
            ", ".join(placeholders),
        )
