"""FHIR R4 Questionnaire import and export.

Licensed instruments often come as FHIR Questionnaire JSON; the trial drops them into
PORTAL_INSTRUMENTS_DIR and they load like our own files. French text comes from the standard
translation extension. What FHIR R4 cannot say (scores, alerts, HAQ-DI categories, 0–10 scale
anchors) travels in two portal extensions holding JSON strings; see docs/instruments.md.

Import goes through parse_instrument(), so an imported questionnaire is validated exactly like
one of our files.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any, Literal

from patient_portal.i18n import LANGUAGES
from patient_portal.questionnaires.instrument import (
    CANONICAL_INT,
    ITEM_ID,
    Condition,
    Instrument,
    InstrumentError,
    Item,
    LocalizedText,
    Option,
    alert_rule_to_dict,
    condition_to_dict,
    item_type_fields_to_dict,
    parse_instrument,
    score_rule_to_dict,
)

TRANSLATION_URL = "http://hl7.org/fhir/StructureDefinition/translation"
MIN_VALUE_URL = "http://hl7.org/fhir/StructureDefinition/minValue"
MAX_VALUE_URL = "http://hl7.org/fhir/StructureDefinition/maxValue"
UNIT_URL = "http://hl7.org/fhir/StructureDefinition/questionnaire-unit"
ITEM_CONTROL_URL = "http://hl7.org/fhir/StructureDefinition/questionnaire-itemControl"
SLIDER_STEP_URL = "http://hl7.org/fhir/StructureDefinition/questionnaire-sliderStepValue"
OPTION_EXCLUSIVE_URL = "http://hl7.org/fhir/StructureDefinition/questionnaire-optionExclusive"
ITEM_CONTROL_SYSTEM = "http://hl7.org/fhir/questionnaire-item-control"
PORTAL_SCORING_URL = "https://care-ssc.example/fhir/StructureDefinition/portal-scoring"
PORTAL_ITEM_URL = "https://care-ssc.example/fhir/StructureDefinition/portal-item"
CANONICAL_BASE = "https://care-ssc.example/fhir/Questionnaire/"

# Keys accepted in the JSON of each portal extension.
PORTAL_SCORING_KEYS = {"scoring", "alerts", "estimated_minutes", "alerts_on_answer"}
PORTAL_ITEM_KEYS = {
    "type",
    "anchors",
    "step",
    "category",
    "aid_for",
    "not_in_future",
    "enable_when",
    "enable_behavior",
}

_PLAIN_ANSWERS = ("answerBoolean", "answerInteger", "answerDecimal", "answerString", "answerDate")


# ---------------------------------------------------------------------------------------------
# Import


def instrument_from_fhir(questionnaire_json: dict[str, Any], source_name: str) -> Instrument:
    """Convert a FHIR R4 Questionnaire (both languages inline) into a validated Instrument."""
    return parse_instrument(_Importer(questionnaire_json, source_name).instrument(), source_name)


class _Importer:
    def __init__(self, questionnaire: dict[str, Any], source: str):
        self.q = questionnaire
        self.source = source
        base = str(questionnaire.get("language") or "en")[:2].lower()
        if base not in LANGUAGES:
            raise InstrumentError(source, f"language {base!r} is neither en nor fr")
        self.base = base
        self.ids: dict[str, str] = {}

    def fail(self, problem: str, link_id: str | None = None) -> InstrumentError:
        return InstrumentError(self.source, problem, link_id)

    def instrument(self) -> dict[str, Any]:
        q = self.q
        if not isinstance(q, dict) or q.get("resourceType") != "Questionnaire":
            raise self.fail("not a FHIR Questionnaire resource")
        items = q.get("item")
        if not isinstance(items, list) or not items:
            raise self.fail("the Questionnaire has no item")
        self.map_link_ids(items)
        title = self.localized(q, "title")
        data: dict[str, Any] = {
            "id": _slug(str(q.get("id") or q.get("name") or Path(self.source).stem)),
            "version": str(q.get("version") or "1"),
            "title": title,
            # Licensed questionnaires often have no description; the title then introduces it.
            "introduction": self.localized(q, "description") if "description" in q else title,
            "licence": str(q.get("copyright") or f"Loaded from the trial's file {self.source}"),
            "pages": self.pages(items),
        }
        data.update(self.portal_json(q, PORTAL_SCORING_URL, PORTAL_SCORING_KEYS, None))
        return data

    # -- ids

    def map_link_ids(self, items: list[Any]) -> None:
        """Give every linkId a portal item id (most are kept as they are)."""
        for fhir_item in _walk(items):
            link_id = fhir_item.get("linkId")
            if not isinstance(link_id, str) or not link_id:
                raise self.fail("an item has no linkId")
            if _is_help(fhir_item):
                continue
            item_id = link_id if ITEM_ID.match(link_id) else _safe_id(link_id)
            if link_id in self.ids or item_id in self.ids.values():
                raise self.fail("the linkId is used twice (or clashes once made URL-safe)", link_id)
            self.ids[link_id] = item_id

    # -- pages and items

    def pages(self, items: list[dict[str, Any]]) -> list[dict[str, Any]]:
        pages: list[dict[str, Any]] = []
        loose: list[dict[str, Any]] = []
        for fhir_item in items:
            if fhir_item.get("type") != "group":
                loose.extend(self.items(fhir_item, inherited=None))
                continue
            if loose:
                pages.append({"items": loose})
                loose = []
            page: dict[str, Any] = {"items": []}
            if fhir_item.get("text"):
                page["title"] = self.localized(fhir_item, "text")
            inherited = self.conditions(fhir_item)
            for child in fhir_item.get("item") or []:
                page["items"].extend(self.items(child, inherited))
            if not page["items"]:
                raise self.fail("the group has no item", fhir_item["linkId"])
            pages.append(page)
        if loose:
            pages.append({"items": loose})
        return pages

    def items(self, fhir_item: dict[str, Any], inherited: dict | None) -> list[dict[str, Any]]:
        """One FHIR item as portal items: nested groups and follow-up questions are flattened."""
        link_id = fhir_item["linkId"]
        own = self.conditions(fhir_item)
        conditions = _combine(own, inherited) if inherited else own
        if conditions is False:
            raise self.fail("enableWhen of the item and of its group cannot be combined", link_id)
        children = [child for child in fhir_item.get("item") or [] if not _is_help(child)]
        if fhir_item.get("type") == "group":
            converted: list[dict[str, Any]] = []
            if fhir_item.get("text"):
                heading: dict[str, Any] = {"id": self.ids[link_id], "type": "display"}
                heading["text"] = self.localized(fhir_item, "text")
                converted.append(heading | (conditions or {}))
            for child in children:
                converted.extend(self.items(child, conditions))
            return converted
        converted = [self.item(fhir_item, conditions or {})]
        # A follow-up nested under a question is hidden whenever its parent is.
        for child in children:
            converted.extend(self.items(child, conditions or None))
        return converted

    def item(self, fhir_item: dict[str, Any], conditions: dict[str, Any]) -> dict[str, Any]:
        link_id = fhir_item["linkId"]
        data: dict[str, Any] = {"id": self.ids[link_id]}
        data.update(self.typed_fields(fhir_item))
        data["text"] = self.localized(fhir_item, "text")
        help_items = [child for child in fhir_item.get("item") or [] if _is_help(child)]
        if help_items:
            data["help"] = self.localized(help_items[0], "text")
        if data["type"] != "display":
            data["required"] = bool(fhir_item.get("required", False))
        data.update(conditions)
        portal = self.portal_json(fhir_item, PORTAL_ITEM_URL, PORTAL_ITEM_KEYS, link_id)
        if "type" in portal:
            if portal["type"] not in ("rating_0_10", "vas_0_100") or data["type"] != "integer":
                raise self.fail("the portal type applies only to integer items", link_id)
            data.pop("min", None)
            data.pop("max", None)
        if "enable_when" in portal:
            data.pop("enable_behavior", None)
        data.update(portal)
        return data

    def typed_fields(self, fhir_item: dict[str, Any]) -> dict[str, Any]:
        link_id, fhir_type = fhir_item["linkId"], fhir_item.get("type")
        if fhir_type in ("choice", "coding"):
            if "answerValueSet" in fhir_item:
                raise self.fail("answerValueSet is not supported: list answerOption", link_id)
            kind = "multiple_choice" if fhir_item.get("repeats") else "single_choice"
            fields: dict[str, Any] = {"type": kind}
            fields.update(self.options(fhir_item))
            return fields
        if fhir_type == "integer":
            fields = {"type": "integer"}
            for key, url in (("min", MIN_VALUE_URL), ("max", MAX_VALUE_URL)):
                bound = _extension(fhir_item, url)
                if bound is None or "valueInteger" not in bound:
                    raise self.fail("an integer item needs minValue and maxValue", link_id)
                fields[key] = bound["valueInteger"]
            unit = _extension(fhir_item, UNIT_URL)
            if unit is not None:
                fields["unit"] = self.localized(unit.get("valueCoding") or {}, "display")
            return fields
        simple = {"boolean": "yes_no", "date": "date", "display": "display"}
        if fhir_type in simple:
            return {"type": simple[fhir_type]}
        if fhir_type in ("string", "text"):
            fields = {"type": "text"}
            if "maxLength" in fhir_item:
                fields["max_length"] = fhir_item["maxLength"]
            return fields
        raise self.fail(f"FHIR item type {fhir_type!r} is not supported", link_id)

    def options(self, fhir_item: dict[str, Any]) -> dict[str, Any]:
        link_id = fhir_item["linkId"]
        options, exclusive = [], []
        for answer in fhir_item.get("answerOption") or []:
            option = self.option(answer, link_id)
            exclusive_ext = _extension(answer, OPTION_EXCLUSIVE_URL)
            if exclusive_ext is not None and exclusive_ext.get("valueBoolean") is True:
                exclusive.append(option["value"])
            options.append(option)
        fields: dict[str, Any] = {"options": options}
        if exclusive and fhir_item.get("repeats"):
            fields["exclusive"] = exclusive
        return fields

    def option(self, answer: dict[str, Any], link_id: str) -> dict[str, Any]:
        if "valueCoding" in answer:
            coding = answer["valueCoding"]
            value: Any = _code_value(str(coding.get("code", "")))
            if "display" in coding:
                label = self.localized(coding, "display")
            else:
                label = {"en": str(value), "fr": str(value)}
        elif "valueInteger" in answer:
            value = answer["valueInteger"]
            label = {"en": str(value), "fr": str(value)}
        elif "valueString" in answer:
            value = answer["valueString"]
            label = self.localized(answer, "valueString")
        else:
            raise self.fail("answerOption needs valueCoding, valueInteger or valueString", link_id)
        option: dict[str, Any] = {"value": value, "label": label}
        option.update(self.portal_json(answer, PORTAL_ITEM_URL, {"aid_for"}, link_id))
        return option

    def conditions(self, fhir_item: dict[str, Any]) -> dict[str, Any] | None:
        """enable_when/enable_behavior of an item; the portal extension's, if present, wins."""
        link_id = fhir_item["linkId"]
        raw = fhir_item.get("enableWhen") or []
        if not raw:
            return None
        conditions = [self.condition(entry, link_id) for entry in raw]
        data: dict[str, Any] = {"enable_when": conditions}
        if len(conditions) > 1:
            data["enable_behavior"] = fhir_item.get("enableBehavior", "all")
        return data

    def condition(self, entry: dict[str, Any], link_id: str) -> dict[str, Any]:
        question = entry.get("question")
        if question not in self.ids:
            raise self.fail(f"enableWhen refers to unknown question {question!r}", link_id)
        answer_keys = [key for key in entry if key.startswith("answer")]
        if len(answer_keys) != 1:
            raise self.fail("enableWhen needs exactly one answer[x]", link_id)
        key = answer_keys[0]
        value = entry[key]
        if key == "answerCoding":
            value = _code_value(str(value.get("code", "")))
        elif key not in _PLAIN_ANSWERS:
            raise self.fail(f"enableWhen {key} is not supported", link_id)
        return {"item": self.ids[question], "operator": entry.get("operator"), "value": value}

    # -- text and extensions

    def localized(self, element: dict[str, Any], name: str) -> dict[str, str]:
        """{"en", "fr"} from an element and its translation extension; gaps are left for the
        validator to report with the item id."""
        texts: dict[str, str] = {}
        base = element.get(name)
        if base:
            texts[self.base] = str(base)
        for translation in _extensions(element.get(f"_{name}") or {}, TRANSLATION_URL):
            parts = {sub.get("url"): sub for sub in translation.get("extension") or []}
            lang = str((parts.get("lang") or {}).get("valueCode") or "")[:2].lower()
            content = (parts.get("content") or {}).get("valueString")
            if lang in LANGUAGES and lang != self.base and content:
                texts[lang] = str(content)
        return texts

    def portal_json(
        self, element: dict[str, Any], url: str, allowed: set[str], link_id: str | None
    ) -> dict[str, Any]:
        extension = _extension(element, url)
        if extension is None:
            return {}
        try:
            data = json.loads(extension.get("valueString") or "")
        except json.JSONDecodeError as error:
            raise self.fail(f"extension {url} does not hold JSON: {error.msg}", link_id) from None
        if not isinstance(data, dict) or data.keys() - allowed:
            unknown = sorted(data.keys() - allowed) if isinstance(data, dict) else "not an object"
            raise self.fail(f"extension {url}: not allowed: {unknown}", link_id)
        return data


def _walk(items: Iterable[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    for fhir_item in items:
        if not isinstance(fhir_item, dict):
            continue
        yield fhir_item
        yield from _walk(fhir_item.get("item") or [])


def _combine(
    own: dict[str, Any] | None, inherited: dict[str, Any]
) -> dict[str, Any] | Literal[False]:
    """AND a group's enable_when into a child's; False when one list cannot express both."""
    if own is None:
        return inherited
    own_any = own.get("enable_behavior") == "any" and len(own["enable_when"]) > 1
    inherited_any = inherited.get("enable_behavior") == "any" and len(inherited["enable_when"]) > 1
    if own_any or inherited_any:
        return False
    return {"enable_when": inherited["enable_when"] + own["enable_when"]}


def _is_help(fhir_item: dict[str, Any]) -> bool:
    control = _extension(fhir_item, ITEM_CONTROL_URL)
    codings = ((control or {}).get("valueCodeableConcept") or {}).get("coding") or []
    return fhir_item.get("type") == "display" and any(c.get("code") == "help" for c in codings)


def _extensions(element: dict[str, Any], url: str) -> list[dict[str, Any]]:
    return [ext for ext in element.get("extension") or [] if ext.get("url") == url]


def _extension(element: dict[str, Any], url: str) -> dict[str, Any] | None:
    found = _extensions(element, url)
    return found[0] if found else None


def _code_value(code: str) -> int | str:
    # Our integer option values are exported as codes "0".."3"; a canonical integer code is
    # read back as a number so that scores and comparisons work.
    return int(code) if CANONICAL_INT.match(code) else code


def _slug(text: str) -> str:
    slug = re.sub(r"[^a-z0-9]+", "_", text.lower()).strip("_")[:64]
    return slug if slug[:1].isalpha() else f"q_{slug}"[:64]


def _safe_id(link_id: str) -> str:
    safe = re.sub(r"[^A-Za-z0-9_.\-]+", "_", link_id).strip("_.-")[:64]
    return safe or "item"


# ---------------------------------------------------------------------------------------------
# Export


def instrument_to_fhir(instrument: Instrument, lang: str = "en") -> dict[str, Any]:
    """A FHIR R4 Questionnaire for the instrument: text in `lang`, the other language in the
    translation extension, portal-only data in the portal extensions."""
    if lang not in LANGUAGES:
        raise ValueError(f"lang must be one of {tuple(sorted(LANGUAGES))}")
    exporter = _Exporter(instrument, lang)
    questionnaire: dict[str, Any] = {
        "resourceType": "Questionnaire",
        "id": instrument.id.replace("_", "-"),
        "url": CANONICAL_BASE + instrument.id,
        "version": instrument.version,
        "language": lang,
        "status": "active",
        "copyright": instrument.licence,
    }
    questionnaire.update(exporter.text("title", instrument.title))
    questionnaire.update(exporter.text("description", instrument.introduction))
    portal: dict[str, Any] = {}
    if instrument.estimated_minutes is not None:
        portal["estimated_minutes"] = instrument.estimated_minutes
    if instrument.scoring:
        portal["scoring"] = [score_rule_to_dict(rule) for rule in instrument.scoring]
    if instrument.alerts:
        portal["alerts"] = [alert_rule_to_dict(rule) for rule in instrument.alerts]
    if instrument.alerts_on_answer:
        portal["alerts_on_answer"] = True
    if portal:
        questionnaire["extension"] = [_portal_extension(PORTAL_SCORING_URL, portal)]
    questionnaire["item"] = exporter.pages()
    return questionnaire


class _Exporter:
    def __init__(self, instrument: Instrument, lang: str):
        self.instrument = instrument
        self.lang = lang
        self.other = "fr" if lang == "en" else "en"
        self.used = {item.id for item in instrument.items}

    def unique(self, wanted: str) -> str:
        """A linkId no item uses (pages and help texts need their own)."""
        link_id = wanted
        while link_id in self.used:
            link_id += "-x"
        self.used.add(link_id)
        return link_id

    def text(self, name: str, text: LocalizedText) -> dict[str, Any]:
        return {
            name: text.get(self.lang),
            f"_{name}": {"extension": [_translation(self.other, text.get(self.other))]},
        }

    def pages(self) -> list[dict[str, Any]]:
        groups = []
        for number, page in enumerate(self.instrument.pages, start=1):
            group: dict[str, Any] = {"linkId": self.unique(f"page-{number}"), "type": "group"}
            if page.title is not None:
                group.update(self.text("text", page.title))
            group["item"] = [self.item(item) for item in page.items]
            groups.append(group)
        return groups

    def item(self, item: Item) -> dict[str, Any]:
        fhir_type = {
            "single_choice": "choice",
            "multiple_choice": "choice",
            "rating_0_10": "integer",
            "vas_0_100": "integer",
            "integer": "integer",
            "yes_no": "boolean",
            "date": "date",
            "text": "text",
            "display": "display",
        }[item.type]
        data: dict[str, Any] = {"linkId": item.id}
        data.update(self.text("text", item.text))
        data["type"] = fhir_type
        if item.answerable:
            data["required"] = item.required
        if item.type == "multiple_choice":
            data["repeats"] = True
        if item.type == "text" and item.max_length is not None:
            data["maxLength"] = item.max_length
        if item.options:
            data["answerOption"] = [self.option(item, option) for option in item.options]
        extensions = self.item_extensions(item)
        if extensions:
            data["extension"] = extensions
        data.update(self.enable_when(item))
        if item.help is not None:
            help_item: dict[str, Any] = {
                "linkId": self.unique(f"{item.id}-help"),
                "type": "display",
            }
            help_item.update(self.text("text", item.help))
            help_item["extension"] = [_item_control("help")]
            data["item"] = [help_item]
        return data

    def item_extensions(self, item: Item) -> list[dict[str, Any]]:
        extensions: list[dict[str, Any]] = []
        bounds = item.value_range
        if bounds is not None:
            extensions.append({"url": MIN_VALUE_URL, "valueInteger": bounds[0]})
            extensions.append({"url": MAX_VALUE_URL, "valueInteger": bounds[1]})
        if item.type in ("rating_0_10", "vas_0_100"):
            extensions.append(_item_control("slider"))
            extensions.append({"url": SLIDER_STEP_URL, "valueInteger": item.step})
        if item.unit is not None:
            coding: dict[str, Any] = {"display": item.unit.get(self.lang)}
            coding["_display"] = {
                "extension": [_translation(self.other, item.unit.get(self.other))]
            }
            extensions.append({"url": UNIT_URL, "valueCoding": coding})
        portal = self.portal_item(item)
        if portal:
            extensions.append(_portal_extension(PORTAL_ITEM_URL, portal))
        return extensions

    def portal_item(self, item: Item) -> dict[str, Any]:
        fields = item_type_fields_to_dict(item)
        portal = {key: fields[key] for key in sorted(PORTAL_ITEM_KEYS) if key in fields}
        if item.type in ("rating_0_10", "vas_0_100"):
            portal["type"] = item.type
        if _needs_portal_conditions(item):
            portal["enable_when"] = [condition_to_dict(c) for c in item.enable_when]
            if item.enable_behavior != "all":
                portal["enable_behavior"] = item.enable_behavior
        return portal

    def option(self, item: Item, option: Option) -> dict[str, Any]:
        coding: dict[str, Any] = {"code": str(option.value), "display": option.label.get(self.lang)}
        other = option.label.get(self.other)
        coding["_display"] = {"extension": [_translation(self.other, other)]}
        data: dict[str, Any] = {"valueCoding": coding}
        extensions = []
        if option.value in item.exclusive:
            extensions.append({"url": OPTION_EXCLUSIVE_URL, "valueBoolean": True})
        if option.aid_for:
            extensions.append(_portal_extension(PORTAL_ITEM_URL, {"aid_for": list(option.aid_for)}))
        if extensions:
            data["extension"] = extensions
        return data

    def enable_when(self, item: Item) -> dict[str, Any]:
        """FHIR enableWhen; an "in" condition becomes one "=" per value where that is exact."""
        if not item.enable_when:
            return {}
        expanded: list[dict[str, Any]] = []
        for condition in item.enable_when:
            values = condition.value if condition.operator == "in" else (condition.value,)
            operator = "=" if condition.operator == "in" else condition.operator
            target = self.instrument.item(condition.item)
            for value in values:
                entry = {"question": condition.item, "operator": operator}
                expanded.append(entry | _fhir_answer(target, condition, value))
        uses_in = any(c.operator == "in" for c in item.enable_when)
        if uses_in and len(item.enable_when) > 1 and item.enable_behavior == "all":
            # Not expressible in R4 enableWhen: only the portal extension carries the rule.
            return {}
        behavior = "any" if uses_in else item.enable_behavior
        data: dict[str, Any] = {"enableWhen": expanded}
        if len(expanded) > 1:
            data["enableBehavior"] = behavior
        return data


def _needs_portal_conditions(item: Item) -> bool:
    # Only "in" needs it: every other operator maps one to one onto FHIR enableWhen.
    return any(condition.operator == "in" for condition in item.enable_when)


def _fhir_answer(target: Item, condition: Condition, value: Any) -> dict[str, Any]:
    if condition.operator == "exists" or isinstance(value, bool):
        return {"answerBoolean": value}
    if target.type in ("single_choice", "multiple_choice"):
        return {"answerCoding": {"code": str(value)}}
    if target.type == "date":
        return {"answerDate": value.isoformat()}
    if isinstance(value, int):
        return {"answerInteger": value}
    if isinstance(value, float):
        return {"answerDecimal": value}
    return {"answerString": value}


def _translation(lang: str, content: str) -> dict[str, Any]:
    return {
        "url": TRANSLATION_URL,
        "extension": [
            {"url": "lang", "valueCode": lang},
            {"url": "content", "valueString": content},
        ],
    }


def _item_control(code: str) -> dict[str, Any]:
    return {
        "url": ITEM_CONTROL_URL,
        "valueCodeableConcept": {"coding": [{"system": ITEM_CONTROL_SYSTEM, "code": code}]},
    }


def _portal_extension(url: str, data: dict[str, Any]) -> dict[str, Any]:
    return {"url": url, "valueString": json.dumps(data, ensure_ascii=False, sort_keys=True)}
