"""Language choice and locale-aware formatting.

The language comes from the signed-in person's stored choice, then the `lang` cookie, then
Accept-Language, then the configured default. Formatting uses language + site country (fr_CA,
en_CA, fr_FR) and the site's wall-clock time zone, never the server's.

French is read as fr_CA or fr_FR: the base catalogue (translations/fr) is Québec French, and
translations/regional/fr_FR overrides the few words France says otherwise (patient_portal/wording.py).
The site decides for a signed-in person; before sign-in, Accept-Language's region does.
"""

from __future__ import annotations

import re
from datetime import date, datetime, timedelta
from functools import lru_cache
from zoneinfo import ZoneInfo

from babel import Locale
from babel import dates as babel_dates
from babel import numbers as babel_numbers
from flask import Flask, current_app, g, request
from flask_babel import get_locale, get_translations, gettext
from flask_login import current_user
from jinja2 import pass_context

from patient_portal.extensions import babel
from patient_portal.protocol.services import LANGUAGES, Site, get_protocol

# LANGUAGES, the study's languages, is the protocol's: the pages offer the same ones.
LANGUAGE_COOKIE = "lang"
LANGUAGE_NAMES = {"fr": "Français", "en": "English"}


def select_language() -> str:
    """Pick the page language in the order the design sets, with French's region."""
    if current_user and current_user.is_authenticated:
        return text_locale(current_user.language, _country_of(current_user))
    cookie = request.cookies.get(LANGUAGE_COOKIE)
    # best_match ignores malformed entries and never raises on them.
    language = (
        cookie
        if cookie in LANGUAGES
        else request.accept_languages.best_match(LANGUAGES)
        or current_app.config["PORTAL_DEFAULT_LANGUAGE"]
    )
    return text_locale(language, _visitor_country())


def text_locale(language: str, country: str | None) -> str:
    """The catalogue a person reads: fr_CA or fr_FR (the site's, else France, as for dates), or
    English (one text for every country)."""
    if language != "fr":
        return language
    return formatting_locale(language, "CA" if country == "CA" else "FR")


def person_text_locale(person) -> str:
    """The catalogue for a person outside their own request (an e-mail, a calendar, a link)."""
    return text_locale(person.language, _country_of(person))


def site_codes_of(person) -> list[str]:
    """A participant's site, or a staff member's sites (every site for one without any): the
    first decides their dates, zone and French."""
    if person.kind == "participant":
        return [person.site_code]
    return person.site_codes or list(get_protocol().sites)


def _country_of(person) -> str | None:
    protocol = get_protocol()
    codes = site_codes_of(person)
    return protocol.site(codes[0]).country if codes and codes[0] in protocol.sites else None


def _visitor_country() -> str | None:
    """The first region Accept-Language names for French (fr-CA → CA), if any."""
    for value, _quality in request.accept_languages:
        language, _, region = value.replace("_", "-").partition("-")
        if language.lower() == "fr" and region:
            return region.upper()[:2]
    return None


def current_language() -> str:
    locale = get_locale()
    return str(locale.language) if locale else current_app.config["PORTAL_DEFAULT_LANGUAGE"]


def formatting_locale(language: str, country: str | None) -> str:
    """fr_CA, en_CA or fr_FR; without a site, Canada for English and France for French."""
    if country is None:
        country = "CA" if language == "en" else "FR"
    return f"{language}_{country}"


@lru_cache(maxsize=16)
def babel_locale(identifier: str) -> Locale:
    """A parsed locale, kept: parsing one per date was most of a long list's formatting time."""
    return Locale.parse(identifier)


def format_date(value: date | datetime, locale: str, zone: ZoneInfo, format: str = "full") -> str:
    """A calendar date in the site's zone: « jeudi 3 décembre 2026 » / “Thursday, December 3, 2026”."""
    if isinstance(value, datetime):
        value = value.astimezone(zone).date()
    return babel_dates.format_date(value, format=format, locale=babel_locale(locale))


def format_time(value: datetime, locale: str, zone: ZoneInfo) -> str:
    """A wall-clock time in the site's zone: « 9 h 30 » (fr_CA), « 09:30 » (fr_FR), “9:30 AM”."""
    return babel_dates.format_time(value.astimezone(zone), format="short", locale=locale)


def format_datetime(value: datetime, locale: str, zone: ZoneInfo, format: str = "long") -> str:
    """Date and time in the site's zone, in the formatting locale."""
    return babel_dates.format_datetime(
        value.astimezone(zone), format=format, locale=babel_locale(locale), tzinfo=zone
    )


def format_number(value: float | int, locale: str, decimals: int = 0) -> str:
    """A number with the locale's separators: 1 234,5 in French, 1,234.5 in English."""
    pattern = "#,##0" + ("." + "0" * decimals if decimals else "")
    return babel_numbers.format_decimal(value, format=pattern, locale=babel_locale(locale))


def format_relative_days(days: int, locale: str) -> str:
    """“in 3 days”, « dans 3 jours », “today”."""
    if days == 0:
        return gettext("today")
    return babel_dates.format_timedelta(
        days * 86400, granularity="day", threshold=10_000, add_direction=True, locale=locale
    )


def person_locale_and_zone(person) -> tuple[str, ZoneInfo]:
    """Formatting locale and wall-clock zone for a participant (their site) or staff (first site)."""
    protocol = get_protocol()
    language = current_language()
    if person is not None and getattr(person, "is_authenticated", False):
        site = protocol.site(site_codes_of(person)[0])
        return site.formatting_locale(language), site.zone
    return formatting_locale(language, None), ZoneInfo("America/Toronto")


def viewer_locale_and_zone() -> tuple[str, ZoneInfo]:
    """person_locale_and_zone for the signed-in person, worked out once per request and
    language (a coordinator's dashboard formats some 200 dates)."""
    key = (current_language(), current_user.get_id() if current_user else None)
    cached = g.get("viewer_locale_and_zone")
    if cached is None or cached[0] != key:
        cached = (key, person_locale_and_zone(current_user))
        g.viewer_locale_and_zone = cached
    return cached[1]


def local_datetime(value: datetime, format: str = "medium") -> str:
    """A moment shown to the signed-in person in their locale and their site's zone."""
    locale, zone = viewer_locale_and_zone()
    return format_datetime(value, locale, zone, format)


def local_date(value: date | datetime, format: str = "medium") -> str:
    """A calendar date for the signed-in person, in their formatting locale."""
    locale, zone = viewer_locale_and_zone()
    return format_date(value, locale, zone, format)


def viewer_sites() -> list[Site]:
    """The sites the signed-in staff member covers (every site for an admin without one)."""
    person = current_user
    if person is None or not getattr(person, "is_authenticated", False):
        return []
    return [get_protocol().site(code) for code in site_codes_of(person)]


def viewer_covers_zones() -> bool:
    """Whether the viewer's sites keep more than one wall clock (JGH and Saint-Louis): then a
    time shown to them names its zone. Worked out once per request and viewer."""
    key = current_user.get_id() if current_user else None
    cached = g.get("viewer_covers_zones")
    if cached is None or cached[0] != key:
        cached = (key, len({site.timezone for site in viewer_sites()}) > 1)
        g.viewer_covers_zones = cached
    return cached[1]


def zone_name(site: Site) -> str:
    """“Paris time”, « heure de Paris »: the site's city, which staff know, not an offset."""
    return gettext("%(city)s time", city=site.city)


def site_datetime(value: datetime, site_code: str | None = None) -> str:
    """A moment for staff, to the minute, on the wall clock of the site it belongs to (the
    viewer's first site without one), its zone named when the viewer covers two zones."""
    locale, zone = viewer_locale_and_zone()
    site = get_protocol().site(site_code) if site_code else None
    if site is not None:
        zone = site.zone
    moment = value.astimezone(zone)
    parsed = babel_locale(locale)
    text = str(parsed.datetime_formats["medium"]).format(
        babel_dates.format_time(moment, format="short", locale=parsed),
        babel_dates.format_date(moment, format="medium", locale=parsed),
    )
    if viewer_covers_zones():
        named = site or next(
            (s for s in viewer_sites() if s.timezone == getattr(zone, "key", "")), None
        )
        if named is not None:
            text = f"{text} ({zone_name(named)})"
    return text


def site_zone_note(site_code: str) -> str:
    """“ (Paris time)” after a site's wall-clock time when the viewer covers two zones."""
    if not viewer_covers_zones():
        return ""
    return f" ({zone_name(get_protocol().site(site_code))})"


def site_date(value: date | datetime, site_code: str | None = None, format: str = "medium") -> str:
    """A calendar date for staff, decided on the wall clock of the site it belongs to."""
    locale, zone = viewer_locale_and_zone()
    if site_code:
        zone = get_protocol().site(site_code).zone
    return format_date(value, locale, zone, format)


def first_answerable_day(opens_at: datetime, zone: ZoneInfo) -> date:
    """The first calendar day, on the site's clock, on which a questionnaire can be answered."""
    return opens_at.astimezone(zone).date()


def last_answerable_day(closes_at: datetime, zone: ZoneInfo) -> date:
    """The last calendar day on which a questionnaire can be answered: the stored end is the
    first moment it no longer can (midnight after the last day), so the day before it."""
    return (closes_at - timedelta(microseconds=1)).astimezone(zone).date()


def window_bound(moment: datetime, site_code: str, closing: bool) -> str:
    """The first or last day of a questionnaire's window on its site's clock; with the hour
    when the window turns at some other time than midnight (the evening diary)."""
    zone = get_protocol().site(site_code).zone
    local = moment.astimezone(zone)
    day = last_answerable_day(moment, zone) if closing else first_answerable_day(moment, zone)
    text = site_date(day, site_code)
    if local.hour or local.minute:
        locale, _zone = viewer_locale_and_zone()
        hour = format_time(moment, locale, zone)
        text = (
            gettext("%(day)s, until %(time)s", day=text, time=hour)
            if closing
            else gettext("%(day)s, from %(time)s", day=text, time=hour)
        )
    return text


# The name the portal gives a passkey, in either language: it is stored in the language of
# the moment it was added and shown in the viewer's.
_DEFAULT_PASSKEY_NAME = re.compile(r"^(?:Passkey|Clé d[’']accès) (\d+)$")


def passkey_label(nickname: str) -> str:
    """A passkey's name in the viewer's language when the portal named it (“Passkey 1”)."""
    default = _DEFAULT_PASSKEY_NAME.match(nickname or "")
    if default:
        return gettext("Passkey %(number)s", number=default.group(1))
    return nickname


def language_name(code: str) -> str:
    """A language's name in the viewer's language: “French” on an English page."""
    names = {"fr": gettext("French"), "en": gettext("English")}
    return names.get(code, code)


def device_label(user_agent: str) -> str:
    """“Chrome · Android” from a User-Agent string, for the list of signed-in devices."""
    agent = user_agent or ""
    systems = [
        ("iPhone", "iPhone"),
        ("iPad", "iPad"),
        ("Android", "Android"),
        ("Windows", "Windows"),
        ("Mac OS", "Mac"),
        ("Linux", "Linux"),
    ]
    browsers = [
        ("Edg/", "Edge"),
        ("Firefox/", "Firefox"),
        ("Chrome/", "Chrome"),
        ("Safari/", "Safari"),
    ]
    system = next((name for marker, name in systems if marker in agent), None)
    browser = next((name for marker, name in browsers if marker in agent), None)
    parts = [part for part in (browser, system) if part]
    return " · ".join(parts) if parts else gettext("Unknown device")


PAGE_CATALOGUE = "_page_catalogue"


def _page_catalogue(context):
    """The catalogue the page started with; a macro imported without context finds it anew."""
    return context.get(PAGE_CATALOGUE) or get_translations()


@pass_context
def _page_gettext(context, string: str) -> str:
    return _page_catalogue(context).ugettext(string)


@pass_context
def _page_ngettext(context, singular: str, plural: str, number: int) -> str:
    return _page_catalogue(context).ungettext(singular, plural, number)


def init_app(app: Flask) -> None:
    babel.init_app(
        app,
        locale_selector=select_language,
        # The regional overrides come second: Flask-Babel merges each over the one before.
        default_translation_directories=";".join(
            [f"{app.root_path}/../translations", f"{app.root_path}/../translations/regional"]
        ),
        default_domain="messages",
    )
    # A page's strings through the catalogue found once per render, where Flask-Babel's
    # callables found it again for every string (context, locale, cache: about a tenth of a
    # participant page's time, issue 19). The catalogue is the one in force when the page
    # starts rendering, so force_locale around a render (an e-mail) still works.
    app.jinja_env.install_gettext_callables(  # type: ignore[attr-defined]  # i18n extension
        gettext=_page_gettext,
        ngettext=_page_ngettext,
        newstyle=True,
        # Unused by the templates; kept as Flask-Babel installs them.
        pgettext=lambda context, string: get_translations().upgettext(context, string),
        npgettext=lambda context, singular, plural, number: get_translations().unpgettext(
            context, singular, plural, number
        ),
    )
    app.context_processor(lambda: {PAGE_CATALOGUE: get_translations()})
    app.jinja_env.globals.update(
        current_language=current_language,
        local_datetime=local_datetime,
        local_date=local_date,
        device_label=device_label,
        site_datetime=site_datetime,
        site_date=site_date,
        site_zone_note=site_zone_note,
        zone_name=zone_name,
        window_bound=window_bound,
        passkey_label=passkey_label,
        language_name=language_name,
        LANGUAGE_NAMES=LANGUAGE_NAMES,
        LANGUAGES=LANGUAGES,
    )
