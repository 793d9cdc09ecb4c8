"""Instrument file format: frozen dataclasses and a strict validating parser (files are read
by loader.py, FHIR Questionnaires converted by fhir.py).

An instrument is a questionnaire described as data (JSON, both languages inline). Everything is
checked when the file is loaded, so a typo in a trial's file fails at start-up with a message that
names the file, the item and the problem, rather than in front of a participant.
The format is documented in docs/instruments.md.
"""

from __future__ import annotations

import datetime as dt
import math
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from functools import cached_property
from types import MappingProxyType
from typing import Any

from patient_portal.i18n import LANGUAGES

ITEM_TYPES = (
    "single_choice",
    "multiple_choice",
    "rating_0_10",
    "vas_0_100",
    "yes_no",
    "integer",
    "date",
    "text",
    "display",
)

OPERATORS = ("=", "!=", ">", ">=", "<", "<=", "exists", "in")
ORDER_OPERATORS = (">", ">=", "<", "<=")

SCORE_KINDS = ("sum", "mean", "haq_di", "shaq_vas")

# How soon a person must look at an alert; each has a response target per site (protocol file).
SEVERITIES = ("urgent", "routine")

# The eight HAQ-DI categories, in the order of the published instrument.
HAQ_CATEGORIES = (
    "dressing_grooming",
    "arising",
    "eating",
    "walking",
    "hygiene",
    "reach",
    "grip",
    "activities",
)

TEXT_MAX_LENGTH = 500

_INSTRUMENT_ID = re.compile(r"^[a-z][a-z0-9_]{0,63}$")
# Item ids end up in URLs and HTML ids, so they stay within a safe alphabet.
ITEM_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,63}$")
# A whole number spelt canonically: as an option value it is that number, never a code.
CANONICAL_INT = re.compile(r"^-?(0|[1-9][0-9]*)$")

_COMMON_ITEM_FIELDS = {"id", "type", "text", "help", "required", "enable_when", "enable_behavior"}
_TYPE_FIELDS: dict[str, set[str]] = {
    "single_choice": {"options", "category"},
    "multiple_choice": {"options", "exclusive", "aid_for"},
    "rating_0_10": {"anchors", "category"},
    "vas_0_100": {"anchors", "step", "category"},
    "yes_no": {"aid_for", "category"},
    "integer": {"min", "max", "unit", "category"},
    "date": {"not_in_future"},
    "text": {"max_length"},
    "display": set(),
}
_FIXED_RANGES = {"rating_0_10": (0, 10), "vas_0_100": (0, 100)}


class InstrumentError(ValueError):
    """An instrument file that cannot be used; the message names the file, item and problem."""

    def __init__(self, source: str, problem: str, item_id: str | None = None, where: str = "item"):
        self.source = source
        self.item_id = item_id
        self.problem = problem
        location = f"{where} '{item_id}': " if item_id is not None else ""
        super().__init__(f"{source}: {location}{problem}")


@dataclass(frozen=True)
class LocalizedText:
    """A string in both portal languages."""

    en: str
    fr: str

    def get(self, lang: str) -> str:
        """The text in `lang` ("en" or "fr", or a locale such as "fr_CA")."""
        return self.fr if lang[:2].lower() == "fr" else self.en

    def to_dict(self) -> dict[str, str]:
        """The JSON form, {"en": ..., "fr": ...}."""
        return {"en": self.en, "fr": self.fr}


@dataclass(frozen=True)
class Option:
    """One answer option of a choice item; `aid_for` marks an aid/device option (HAQ-DI)."""

    value: int | str
    label: LocalizedText
    aid_for: tuple[str, ...] = ()


@dataclass(frozen=True)
class Anchors:
    """Labels shown at both ends of a 0–10 rating or a 0–100 scale."""

    min_label: LocalizedText
    max_label: LocalizedText


@dataclass(frozen=True)
class Condition:
    """`item <operator> value`; for "in" the value is a tuple, for "exists" a bool."""

    item: str
    operator: str
    value: Any


@dataclass(frozen=True)
class Item:
    """One question (or a display-only text). Fields that do not apply to the type keep defaults."""

    id: str
    type: str
    text: LocalizedText
    required: bool
    help: LocalizedText | None = None
    enable_when: tuple[Condition, ...] = ()
    enable_behavior: str = "all"
    options: tuple[Option, ...] = ()
    exclusive: tuple[int | str, ...] = ()
    anchors: Anchors | None = None
    step: int = 1
    min: int | None = None
    max: int | None = None
    unit: LocalizedText | None = None
    not_in_future: bool = False
    max_length: int | None = None
    category: str | None = None
    aid_for: tuple[str, ...] = ()

    @property
    def answerable(self) -> bool:
        """False for display items, which carry text only."""
        return self.type != "display"

    @property
    def value_range(self) -> tuple[int, int] | None:
        """Inclusive bounds of a numeric item, None for other types."""
        if self.type in _FIXED_RANGES:
            return _FIXED_RANGES[self.type]
        if self.type == "integer":
            assert self.min is not None and self.max is not None
            return (self.min, self.max)
        return None

    def option(self, value: int | str) -> Option | None:
        """The option whose value is `value`, if any."""
        for option in self.options:
            if option.value == value and type(option.value) is type(value):
                return option
        return None


@dataclass(frozen=True)
class Page:
    """A group of items; shown together on the review screen (the UI asks one item per screen)."""

    items: tuple[Item, ...]
    title: LocalizedText | None = None


@dataclass(frozen=True)
class ScoreRule:
    """A named score. See scoring.py for what each kind computes."""

    name: str
    kind: str
    items: tuple[str, ...] = ()
    # A read-only mapping cannot be hashed; leaving it out of the hash keeps instruments hashable.
    value_map: Mapping[str, float] | None = field(default=None, hash=False)
    min_answered: int | float | None = None
    missing: str | None = None
    decimals: int | None = None


@dataclass(frozen=True)
class AlertRule:
    """Raise alert `id` when an item answer or a score meets the condition."""

    id: str
    operator: str
    value: Any
    item: str | None = None
    score: str | None = None
    message_key: str | None = None
    severity: str = "routine"
    label: LocalizedText | None = None


@dataclass(frozen=True)
class Instrument:
    """A validated questionnaire. `source` (the file name) is informative, not part of equality."""

    id: str
    version: str
    title: LocalizedText
    introduction: LocalizedText
    licence: str
    pages: tuple[Page, ...]
    estimated_minutes: int | None = None
    scoring: tuple[ScoreRule, ...] = ()
    alerts: tuple[AlertRule, ...] = ()
    # Item rules are also checked as each answer is saved, so an urgent answer raises its
    # alert before the form is finished (the post-infusion diary, symptom reports).
    alerts_on_answer: bool = False
    source: str = field(default="", compare=False)

    @cached_property
    def items(self) -> tuple[Item, ...]:
        """Every item of every page, in order."""
        return tuple(item for page in self.pages for item in page.items)

    @cached_property
    def _index(self) -> dict[str, int]:
        return {item.id: position for position, item in enumerate(self.items)}

    def item(self, item_id: str) -> Item:
        """The item with this id; KeyError if there is none."""
        return self.items[self._index[item_id]]

    def has_item(self, item_id: object) -> bool:
        """True if `item_id` names an item of this instrument."""
        return isinstance(item_id, str) and item_id in self._index

    def position(self, item_id: str) -> int:
        """Position of the item in the whole instrument (0-based)."""
        return self._index[item_id]


# ---------------------------------------------------------------------------------------------
# Validation entry point (files are read by loader.py)


def parse_instrument(data: object, source: str) -> Instrument:
    """Validate an instrument given as decoded JSON; `source` names it in error messages."""
    return _Parser(source).instrument(data)


# ---------------------------------------------------------------------------------------------
# Serialising parts of an instrument in the JSON file format (the FHIR export's portal extensions)


def item_type_fields_to_dict(item: Item) -> dict[str, Any]:
    """The type-specific and HAQ-DI fields of an item that differ from their defaults."""
    data: dict[str, Any] = {}
    if item.options:
        data["options"] = [_option_to_dict(option) for option in item.options]
    if item.exclusive:
        data["exclusive"] = list(item.exclusive)
    if item.anchors is not None:
        data["anchors"] = {
            "min_label": item.anchors.min_label.to_dict(),
            "max_label": item.anchors.max_label.to_dict(),
        }
    if item.type == "vas_0_100" and item.step != 1:
        data["step"] = item.step
    if item.type == "integer":
        data["min"], data["max"] = item.min, item.max
    if item.unit is not None:
        data["unit"] = item.unit.to_dict()
    if item.not_in_future:
        data["not_in_future"] = True
    if item.max_length is not None:
        data["max_length"] = item.max_length
    if item.category is not None:
        data["category"] = item.category
    if item.aid_for:
        data["aid_for"] = list(item.aid_for)
    return data


def _option_to_dict(option: Option) -> dict[str, Any]:
    data: dict[str, Any] = {"value": option.value, "label": option.label.to_dict()}
    if option.aid_for:
        data["aid_for"] = list(option.aid_for)
    return data


def condition_to_dict(condition: Condition) -> dict[str, Any]:
    """A condition in the JSON file format."""
    return {
        "item": condition.item,
        "operator": condition.operator,
        "value": _json_value(condition.value),
    }


def score_rule_to_dict(rule: ScoreRule) -> dict[str, Any]:
    """A score rule in the JSON file format."""
    data: dict[str, Any] = {"name": rule.name, "kind": rule.kind}
    if rule.items:
        data["items"] = list(rule.items)
    if rule.value_map is not None:
        data["value_map"] = dict(rule.value_map)
    for key in ("min_answered", "missing", "decimals"):
        if getattr(rule, key) is not None:
            data[key] = getattr(rule, key)
    return data


def alert_rule_to_dict(rule: AlertRule) -> dict[str, Any]:
    """An alert rule in the JSON file format."""
    when: dict[str, Any] = {"item": rule.item} if rule.item is not None else {"score": rule.score}
    when["operator"] = rule.operator
    when["value"] = _json_value(rule.value)
    data: dict[str, Any] = {"id": rule.id, "when": when}
    if rule.message_key is not None:
        data["message_key"] = rule.message_key
    data["severity"] = rule.severity
    if rule.label is not None:
        data["label"] = rule.label.to_dict()
    return data


def _json_value(value: Any) -> Any:
    if isinstance(value, tuple):
        return [_json_value(v) for v in value]
    if isinstance(value, dt.date):
        return value.isoformat()
    return value


def _default_required(item_type: str) -> bool:
    return item_type not in ("text", "display")


def _score_names(rules: Iterable[ScoreRule]) -> list[str]:
    names: list[str] = []
    for rule in rules:
        if rule.kind == "shaq_vas":
            # One converted value per VAS item; the rule name alone is not a score.
            names.extend(f"{rule.name}.{item_id}" for item_id in rule.items)
            continue
        names.append(rule.name)
        if rule.kind == "haq_di":
            names.extend(f"{rule.name}.{category}" for category in HAQ_CATEGORIES)
    return names


# ---------------------------------------------------------------------------------------------
# Validation


def _is_int(value: object) -> bool:
    # bool is a subclass of int, but True is not a valid option value or bound.
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: object) -> bool:
    return _is_int(value) or (isinstance(value, float) and math.isfinite(value))


class _Parser:
    """Walks the decoded JSON once, raising InstrumentError at the first problem."""

    def __init__(self, source: str):
        self.source = source
        self.item_id: str | None = None
        self.where = "item"

    def fail(self, problem: str) -> InstrumentError:
        return InstrumentError(self.source, problem, self.item_id, self.where)

    # -- instrument level

    def instrument(self, data: object) -> Instrument:
        data = self.mapping(data, "the instrument")
        self.keys(
            data,
            required={"id", "version", "title", "introduction", "licence", "pages"},
            optional={"estimated_minutes", "scoring", "alerts", "alerts_on_answer"},
            what="the instrument",
        )
        instrument_id = data["id"]
        if not isinstance(instrument_id, str) or not _INSTRUMENT_ID.match(instrument_id):
            raise self.fail(f"id {instrument_id!r} must be a slug (a-z, 0-9, _)")
        version = self.string(data["version"], "version")
        licence = self.string(data["licence"], "licence")
        minutes = data.get("estimated_minutes")
        if minutes is not None and not (_is_int(minutes) and 1 <= minutes <= 120):
            raise self.fail(f"estimated_minutes {minutes!r} must be a whole number 1..120")
        pages_data = data["pages"]
        if not isinstance(pages_data, list) or not pages_data:
            raise self.fail("pages must be a non-empty list")
        items_so_far: dict[str, Item] = {}
        pages = tuple(self.page(page, items_so_far) for page in pages_data)
        if not any(item.answerable for item in items_so_far.values()):
            raise self.fail("the instrument has no question to answer")
        scoring = self.scoring(data.get("scoring", []), items_so_far)
        alerts = self.alerts(data.get("alerts", []), items_so_far, scoring)
        self.item_id, self.where = None, "item"
        alerts_on_answer = self.boolean(data.get("alerts_on_answer", False), "alerts_on_answer")
        return Instrument(
            id=instrument_id,
            version=version,
            title=self.text(data["title"], "title"),
            introduction=self.text(data["introduction"], "introduction"),
            licence=licence,
            estimated_minutes=minutes,
            pages=pages,
            scoring=scoring,
            alerts=alerts,
            alerts_on_answer=alerts_on_answer,
            source=self.source,
        )

    def page(self, data: object, items_so_far: dict[str, Item]) -> Page:
        self.item_id = None
        data = self.mapping(data, "a page")
        self.keys(data, required={"items"}, optional={"title"}, what="a page")
        title = self.text(data["title"], "page title") if "title" in data else None
        if not isinstance(data["items"], list) or not data["items"]:
            raise self.fail("a page must have a non-empty list of items")
        items = []
        for raw_item in data["items"]:
            item = self.item(raw_item, items_so_far)
            items_so_far[item.id] = item
            items.append(item)
        self.item_id = None
        return Page(items=tuple(items), title=title)

    # -- items

    def item(self, data: object, items_so_far: dict[str, Item]) -> Item:
        self.item_id = None
        self.where = "item"
        data = self.mapping(data, "an item")
        item_id = data.get("id")
        if not isinstance(item_id, str) or not ITEM_ID.match(item_id):
            raise self.fail(f"item id {item_id!r} must use only letters, digits, _ . - (max 64)")
        self.item_id = item_id
        if item_id in items_so_far:
            raise self.fail("the id is used by another item")
        item_type = data.get("type")
        if item_type not in ITEM_TYPES:
            raise self.fail(f"unknown type {item_type!r}; known types: {', '.join(ITEM_TYPES)}")
        allowed = _COMMON_ITEM_FIELDS | _TYPE_FIELDS[item_type]
        if item_type == "display":
            allowed = allowed - {"required", "help"}
        self.keys(data, required={"id", "type", "text"}, optional=allowed, what=item_type)
        required = data.get("required", _default_required(item_type))
        if not isinstance(required, bool):
            raise self.fail("required must be true or false")
        fields: dict[str, Any] = {
            "id": item_id,
            "type": item_type,
            "text": self.text(data["text"], "text"),
            "required": required,
        }
        if "help" in data:
            fields["help"] = self.text(data["help"], "help")
        fields.update(self.enable_when(data, items_so_far))
        fields.update(self.type_fields(item_type, data))
        return Item(**fields)

    def enable_when(self, data: Mapping[str, Any], items_so_far: dict[str, Item]) -> dict:
        behavior = data.get("enable_behavior", "all")
        if behavior not in ("all", "any"):
            raise self.fail(f"enable_behavior {behavior!r} must be 'all' or 'any'")
        raw_conditions = data.get("enable_when", [])
        if not isinstance(raw_conditions, list):
            raise self.fail("enable_when must be a list of conditions")
        conditions = []
        for raw in raw_conditions:
            raw = self.mapping(raw, "an enable_when condition")
            self.keys(raw, required={"item", "operator"}, optional={"value"}, what="a condition")
            target_id = raw["item"]
            if not isinstance(target_id, str) or target_id not in items_so_far:
                if isinstance(target_id, str) and target_id == data.get("id"):
                    raise self.fail("enable_when refers to the item itself")
                raise self.fail(
                    f"enable_when refers to {target_id!r}, which is not an earlier item"
                )
            conditions.append(self.condition(raw, items_so_far[target_id]))
        return {"enable_when": tuple(conditions), "enable_behavior": behavior}

    def condition(self, raw: Mapping[str, Any], target: Item) -> Condition:
        """Check a condition against the item it tests; used by enable_when and alerts."""
        operator = raw["operator"]
        if operator not in OPERATORS:
            raise self.fail(f"unknown operator {operator!r}; known: {' '.join(OPERATORS)}")
        if not target.answerable:
            raise self.fail(f"a condition refers to display item '{target.id}'")
        if "value" not in raw:
            raise self.fail(f"condition on '{target.id}' has no value")
        value = raw["value"]
        if operator == "exists":
            if not isinstance(value, bool):
                raise self.fail("the value of an 'exists' condition must be true or false")
            return Condition(target.id, operator, value)
        if operator in ORDER_OPERATORS and target.type not in (
            "rating_0_10",
            "vas_0_100",
            "integer",
            "date",
            "single_choice",
        ):
            raise self.fail(f"operator {operator} cannot compare answers to '{target.id}'")
        if operator == "in":
            if not isinstance(value, list) or not value:
                raise self.fail("the value of an 'in' condition must be a non-empty list")
            checked = tuple(self.condition_value(v, target, operator) for v in value)
            return Condition(target.id, operator, checked)
        return Condition(target.id, operator, self.condition_value(value, target, operator))

    def condition_value(self, value: object, target: Item, operator: str) -> Any:
        kind = target.type
        if kind in ("single_choice", "multiple_choice"):
            if operator in ORDER_OPERATORS:
                if not all(_is_int(option.value) for option in target.options):
                    raise self.fail(f"operator {operator} needs numeric options on '{target.id}'")
                if not _is_number(value):
                    raise self.fail(f"condition value {value!r} must be a number")
                return value
            if isinstance(value, bool) or target.option(value) is None:  # type: ignore[arg-type]
                raise self.fail(f"condition value {value!r} is not an option of '{target.id}'")
            return value
        if kind == "yes_no":
            if not isinstance(value, bool):
                raise self.fail(f"condition value {value!r} on '{target.id}' must be true/false")
            return value
        if kind in ("rating_0_10", "vas_0_100", "integer"):
            if not _is_number(value):
                raise self.fail(f"condition value {value!r} must be a number")
            low, high = target.value_range or (0, 0)
            if not low <= value <= high:  # type: ignore[operator]
                raise self.fail(f"condition value {value} is outside {low}..{high}")
            return value
        if kind == "date":
            return self.iso_date(value, "condition value")
        if not isinstance(value, str):
            raise self.fail(f"condition value {value!r} on '{target.id}' must be a string")
        return value

    def type_fields(self, item_type: str, data: Mapping[str, Any]) -> dict[str, Any]:
        fields: dict[str, Any] = {}
        if item_type in ("single_choice", "multiple_choice"):
            fields["options"] = self.options(data.get("options"), item_type)
        if item_type == "multiple_choice":
            fields["exclusive"] = self.exclusive(data.get("exclusive", []), fields["options"])
        if "anchors" in data:
            fields["anchors"] = self.anchors(data["anchors"])
        if item_type == "vas_0_100":
            step = data.get("step", 1)
            if not (_is_int(step) and 1 <= step <= 50):
                raise self.fail(f"step {step!r} must be a whole number 1..50")
            fields["step"] = step
        if item_type == "integer":
            fields.update(self.integer_bounds(data))
            if "unit" in data:
                fields["unit"] = self.text(data["unit"], "unit")
        if item_type == "date":
            fields["not_in_future"] = self.boolean(
                data.get("not_in_future", False), "not_in_future"
            )
        if item_type == "text":
            max_length = data.get("max_length", TEXT_MAX_LENGTH)
            if not (_is_int(max_length) and 1 <= max_length <= TEXT_MAX_LENGTH):
                raise self.fail(f"max_length {max_length!r} must be 1..{TEXT_MAX_LENGTH}")
            fields["max_length"] = max_length
        if "category" in data:
            fields["category"] = self.slug(data["category"], "category")
        if "aid_for" in data:
            fields["aid_for"] = self.slug_list(data["aid_for"], "aid_for")
        return fields

    def options(self, raw: object, item_type: str) -> tuple[Option, ...]:
        if not isinstance(raw, list) or len(raw) < 2:
            raise self.fail(f"a {item_type} item needs a list of at least 2 options")
        options: list[Option] = []
        seen: set[str] = set()
        for entry in raw:
            entry = self.mapping(entry, "an option")
            allowed = {"aid_for"} if item_type == "multiple_choice" else set()
            self.keys(entry, required={"value", "label"}, optional=allowed, what="an option")
            value = entry["value"]
            self.option_value(value)
            # Form values arrive as strings, so 1 and "1" would be the same answer.
            if str(value) in seen:
                raise self.fail(f"option value {value!r} is used twice")
            seen.add(str(value))
            aid_for = self.slug_list(entry["aid_for"], "aid_for") if "aid_for" in entry else ()
            label = self.text(entry["label"], f"label of option {value!r}")
            options.append(Option(value=value, label=label, aid_for=aid_for))
        return tuple(options)

    def option_value(self, value: object) -> None:
        if _is_int(value):
            return
        if not isinstance(value, str) or not ITEM_ID.match(value):
            raise self.fail(
                f"option value {value!r} must be a whole number or a code (letters, digits, _ . -)"
            )
        if CANONICAL_INT.match(value):
            raise self.fail(f"option value {value!r} looks like a number: write it as {value}")

    def exclusive(self, raw: object, options: tuple[Option, ...]) -> tuple[int | str, ...]:
        if not isinstance(raw, list):
            raise self.fail("exclusive must be a list of option values")
        values = {(type(o.value), o.value) for o in options}
        for value in raw:
            if (type(value), value) not in values:
                raise self.fail(f"exclusive value {value!r} is not an option")
        if len(set(map(str, raw))) != len(raw):
            raise self.fail("exclusive lists a value twice")
        return tuple(raw)

    def anchors(self, raw: object) -> Anchors:
        raw = self.mapping(raw, "anchors")
        self.keys(raw, required={"min_label", "max_label"}, optional=set(), what="anchors")
        return Anchors(
            min_label=self.text(raw["min_label"], "anchors.min_label"),
            max_label=self.text(raw["max_label"], "anchors.max_label"),
        )

    def integer_bounds(self, data: Mapping[str, Any]) -> dict[str, int]:
        low, high = data.get("min"), data.get("max")
        if not (_is_int(low) and _is_int(high)):
            raise self.fail("an integer item needs whole-number min and max")
        if low > high:  # type: ignore[operator]
            raise self.fail(f"min {low} is greater than max {high}")
        if max(abs(low), abs(high)) >= 10**12:  # type: ignore[arg-type]
            raise self.fail("min and max must be below 10^12 in size")
        return {"min": low, "max": high}  # type: ignore[dict-item]

    # -- scoring and alerts

    def scoring(self, raw: object, items: dict[str, Item]) -> tuple[ScoreRule, ...]:
        self.item_id, self.where = None, "score"
        if not isinstance(raw, list):
            raise self.fail("scoring must be a list of score rules")
        rules: list[ScoreRule] = []
        for entry in raw:
            self.item_id, self.where = None, "score"
            entry = self.mapping(entry, "a score rule")
            name = entry.get("name")
            if not isinstance(name, str) or not _INSTRUMENT_ID.match(name):
                raise self.fail(f"score name {name!r} must be a slug (a-z, 0-9, _)")
            self.item_id = name
            if any(rule.name == name for rule in rules):
                raise self.fail("the score name is used twice")
            rules.append(self.score_rule(entry, items))
        self.item_id, self.where = None, "item"
        return tuple(rules)

    def score_rule(self, entry: Mapping[str, Any], items: dict[str, Item]) -> ScoreRule:
        kind = entry.get("kind")
        if kind not in SCORE_KINDS:
            raise self.fail(f"unknown kind {kind!r}; known kinds: {', '.join(SCORE_KINDS)}")
        optional = {
            "sum": {"value_map", "min_answered", "missing", "decimals"},
            "mean": {"value_map", "min_answered", "decimals"},
            "haq_di": set(),
            "shaq_vas": set(),
        }[kind]
        required = {"name", "kind"} | ({"items"} if kind != "haq_di" else set())
        self.keys(entry, required=required, optional=optional, what=f"a {kind} score")
        if kind == "haq_di":
            self.check_haq_items(items)
            return ScoreRule(name=entry["name"], kind=kind)
        rule_items = self.score_items(entry["items"], items)
        if kind == "shaq_vas":
            for item_id in rule_items:
                if items[item_id].type != "vas_0_100":
                    raise self.fail(f"item '{item_id}' is not a vas_0_100 item")
            return ScoreRule(name=entry["name"], kind=kind, items=rule_items)
        value_map = self.value_map(entry.get("value_map"))
        for item_id in rule_items:
            self.check_scorable(items[item_id], value_map)
        missing = entry.get("missing", "none") if kind == "sum" else None
        if missing not in (None, "none", "prorate"):
            raise self.fail(f"missing {missing!r} must be 'none' or 'prorate'")
        if kind == "sum" and missing == "none" and "min_answered" in entry:
            raise self.fail('min_answered needs "missing": "prorate" (a plain sum needs all)')
        decimals = entry.get("decimals")
        if decimals is not None and not (_is_int(decimals) and 0 <= decimals <= 6):
            raise self.fail(f"decimals {decimals!r} must be 0..6")
        return ScoreRule(
            name=entry["name"],
            kind=kind,
            items=rule_items,
            value_map=value_map,
            min_answered=self.min_answered(entry.get("min_answered"), len(rule_items)),
            missing=entry.get("missing"),
            decimals=decimals,
        )

    def score_items(self, raw: object, items: dict[str, Item]) -> tuple[str, ...]:
        if not isinstance(raw, list) or not raw:
            raise self.fail("items must be a non-empty list of item ids")
        for item_id in raw:
            if not isinstance(item_id, str) or item_id not in items:
                raise self.fail(f"unknown item {item_id!r}")
        if len(set(raw)) != len(raw):
            raise self.fail("items lists an item twice")
        return tuple(raw)

    def value_map(self, raw: object) -> Mapping[str, float] | None:
        if raw is None:
            return None
        raw = self.mapping(raw, "value_map")
        for key, value in raw.items():
            if not _is_number(value):
                raise self.fail(f"value_map[{key!r}] = {value!r} must be a number")
        return MappingProxyType(dict(raw))

    def check_scorable(self, item: Item, value_map: Mapping[str, float] | None) -> None:
        """Every possible answer of a scored item must turn into a number."""
        mapped = value_map or {}
        if item.type in ("rating_0_10", "vas_0_100", "integer", "yes_no"):
            return
        if item.type == "single_choice":
            for option in item.options:
                if not _is_int(option.value) and str(option.value) not in mapped:
                    raise self.fail(
                        f"option {option.value!r} of item '{item.id}' is not a number "
                        "and has no value_map entry"
                    )
            return
        raise self.fail(f"item '{item.id}' ({item.type}) cannot be scored")

    def min_answered(self, raw: object, count: int) -> int | float | None:
        if raw is None:
            return None
        if _is_int(raw) and 1 <= raw <= count:  # type: ignore[operator]
            return raw  # type: ignore[return-value]
        if isinstance(raw, float) and 0 < raw <= 1:
            return raw
        raise self.fail(f"min_answered {raw!r} must be a count 1..{count} or a fraction 0..1")

    def check_haq_items(self, items: dict[str, Item]) -> None:
        """A HAQ-DI needs 0–3 single-choice items in each of the eight categories."""
        seen = set()
        for item in items.values():
            if item.category is not None:
                self.check_haq_item(item)
                seen.add(item.category)
            for category in item.aid_for + tuple(a for o in item.options for a in o.aid_for):
                if category not in HAQ_CATEGORIES:
                    problem = f"aid_for names {category!r}, not a HAQ-DI category"
                    raise InstrumentError(self.source, problem, item.id)
        absent = [category for category in HAQ_CATEGORIES if category not in seen]
        if absent:
            raise self.fail(f"no item for HAQ-DI categories: {', '.join(absent)}")

    def check_haq_item(self, item: Item) -> None:
        # The problem is in the item, so the message names the item rather than the score.
        problem = None
        if item.category not in HAQ_CATEGORIES:
            problem = f"category {item.category!r} is not a HAQ-DI category"
        elif item.type != "single_choice":
            problem = "a HAQ-DI item must be single_choice"
        else:
            for option in item.options:
                if not (_is_int(option.value) and 0 <= option.value <= 3):  # type: ignore[operator]
                    problem = f"option value {option.value!r} is outside 0..3"
                    break
        if problem is not None:
            raise InstrumentError(self.source, problem, item.id)

    def alerts(
        self, raw: object, items: dict[str, Item], scoring: tuple[ScoreRule, ...]
    ) -> tuple[AlertRule, ...]:
        self.item_id, self.where = None, "alert"
        if not isinstance(raw, list):
            raise self.fail("alerts must be a list of alert rules")
        names = set(_score_names(scoring))
        rules: list[AlertRule] = []
        for entry in raw:
            self.item_id = None
            entry = self.mapping(entry, "an alert rule")
            alert_id = entry.get("id")
            if not isinstance(alert_id, str) or not _INSTRUMENT_ID.match(alert_id):
                raise self.fail(f"alert id {alert_id!r} must be a slug (a-z, 0-9, _)")
            self.item_id = alert_id
            if any(rule.id == alert_id for rule in rules):
                raise self.fail("the alert id is used twice")
            self.keys(
                entry,
                required={"id", "when"},
                optional={"message_key", "severity", "label"},
                what="an alert",
            )
            rules.append(self.alert(entry, items, names))
        self.item_id, self.where = None, "item"
        return tuple(rules)

    def alert(self, entry: Mapping[str, Any], items: dict[str, Item], names: set[str]) -> AlertRule:
        message_key = entry.get("message_key")
        if message_key is not None and not (isinstance(message_key, str) and message_key):
            raise self.fail("message_key must be a non-empty string")
        severity = entry.get("severity", "routine")
        if severity not in SEVERITIES:
            raise self.fail(f"severity {severity!r} must be one of {', '.join(SEVERITIES)}")
        label = self.text(entry["label"], "label") if "label" in entry else None
        when = self.mapping(entry["when"], "when")
        if "item" in when:
            self.keys(when, required={"item", "operator", "value"}, optional=set(), what="when")
            target = items.get(when["item"]) if isinstance(when["item"], str) else None
            if target is None:
                raise self.fail(f"unknown item {when['item']!r}")
            condition = self.condition(when, target)
            return AlertRule(
                id=entry["id"],
                operator=condition.operator,
                value=condition.value,
                item=target.id,
                message_key=message_key,
                severity=severity,
                label=label,
            )
        self.keys(when, required={"score", "operator", "value"}, optional=set(), what="when")
        if when["score"] not in names:
            raise self.fail(f"unknown score {when['score']!r}")
        operator, value = when["operator"], when["value"]
        if operator not in OPERATORS:
            raise self.fail(f"unknown operator {operator!r}; known: {' '.join(OPERATORS)}")
        valid = (
            isinstance(value, bool)
            if operator == "exists"
            else (isinstance(value, list) and value and all(map(_is_number, value)))
            if operator == "in"
            else _is_number(value)
        )
        if not valid:
            raise self.fail(f"value {value!r} does not suit operator {operator}")
        value = tuple(value) if operator == "in" else value
        return AlertRule(
            entry["id"],
            operator,
            value,
            score=when["score"],
            message_key=message_key,
            severity=severity,
            label=label,
        )

    # -- small checks

    def mapping(self, data: object, what: str) -> dict[str, Any]:
        if not isinstance(data, dict):
            raise self.fail(f"{what} must be a JSON object")
        return data

    def keys(self, data: Mapping[str, Any], required: set[str], optional: set[str], what: str):
        absent = sorted(required - data.keys())
        if absent:
            raise self.fail(f"{what} is missing {', '.join(absent)}")
        unknown = sorted(data.keys() - required - optional)
        if unknown:
            raise self.fail(f"field {', '.join(unknown)} is not allowed in {what}")

    def text(self, data: object, what: str) -> LocalizedText:
        if not isinstance(data, dict):
            raise self.fail(f'{what} must be an object with "en" and "fr" texts')
        unknown = sorted(data.keys() - set(LANGUAGES))
        if unknown:
            raise self.fail(f"{what} has unknown language {', '.join(unknown)}")
        # Alphabetical, so a text missing in both languages is reported for "en" first.
        for lang in sorted(LANGUAGES):
            value = data.get(lang)
            if not isinstance(value, str) or not value.strip():
                raise self.fail(f"{what} has no {lang!r} text")
        return LocalizedText(en=data["en"].strip(), fr=data["fr"].strip())

    def string(self, data: object, what: str) -> str:
        if not isinstance(data, str) or not data.strip():
            raise self.fail(f"{what} must be a non-empty string")
        return data.strip()

    def boolean(self, data: object, what: str) -> bool:
        if not isinstance(data, bool):
            raise self.fail(f"{what} must be true or false")
        return data

    def slug(self, data: object, what: str) -> str:
        if not isinstance(data, str) or not _INSTRUMENT_ID.match(data):
            raise self.fail(f"{what} {data!r} must be a slug (a-z, 0-9, _)")
        return data

    def slug_list(self, data: object, what: str) -> tuple[str, ...]:
        if not isinstance(data, list) or not data:
            raise self.fail(f"{what} must be a non-empty list")
        return tuple(self.slug(value, what) for value in data)

    def iso_date(self, value: object, what: str) -> dt.date:
        try:
            return dt.date.fromisoformat(value)  # type: ignore[arg-type]
        except (TypeError, ValueError):
            raise self.fail(f"{what} {value!r} must be a date YYYY-MM-DD") from None
