"""FHIR R4 Questionnaire import and export."""

from __future__ import annotations

import copy
import datetime as dt
import json
import re
from pathlib import Path

import pytest

from patient_portal.questionnaires.fhir import (
    PORTAL_ITEM_URL,
    TRANSLATION_URL,
    instrument_from_fhir,
    instrument_to_fhir,
)
from patient_portal.questionnaires.instrument import InstrumentError, parse_instrument
from patient_portal.questionnaires.loader import load_instrument

ROOT = Path(__file__).resolve().parents[2]
SHIPPED = ROOT / "patient_portal" / "questionnaires" / "instruments"
DATA = Path(__file__).parent / "data"
FHIR_FILE = DATA / "fhir_questionnaire.json"
FHIR_ID = re.compile(r"^[A-Za-z0-9\-.]{1,64}$")


def t(en: str) -> dict[str, str]:
    return {"en": en, "fr": f"{en} (fr)"}


def fhir_data() -> dict:
    return json.loads(FHIR_FILE.read_text(encoding="utf-8"))


# --- import


def test_fhir_file_loads_through_the_normal_loader():
    instrument = load_instrument(FHIR_FILE)
    assert instrument.id == "synthetic_fhir"
    assert instrument.version == "2024.1"
    assert instrument.licence == "Synthetic test data"
    assert instrument.title.fr == "Questionnaire FHIR fictif"
    assert instrument.introduction.en == "Placeholder wording for import tests."


def test_fhir_groups_become_pages_and_loose_items_their_own_page():
    instrument = load_instrument(FHIR_FILE)
    assert [page.title.fr if page.title else None for page in instrument.pages] == [
        None,
        "Section un",
        "Section deux",
    ]
    assert [item.id for item in instrument.items] == [
        "q-intro",
        "q1",
        "q2",
        "q3",
        "q4",
        "q4.1",
        "q5",
        "q6",
    ]


def test_fhir_item_types_options_and_french_are_imported():
    instrument = load_instrument(FHIR_FILE)
    q1, q2, q3 = instrument.item("q1"), instrument.item("q2"), instrument.item("q3")
    assert (q1.type, q1.required, q1.text.fr) == ("single_choice", True, "Question un")
    assert [(o.value, o.label.en, o.label.fr) for o in q1.options] == [
        (0, "Never", "Jamais"),
        (1, "Sometimes", "Parfois"),
        (2, "Often", "Souvent"),
    ]
    assert q1.help is not None and q1.help.fr == "Aide pour un"
    assert (q2.type, q2.required, q2.exclusive) == ("multiple_choice", False, ("none",))
    assert (q3.type, q3.min, q3.max) == ("integer", 0, 30)
    assert q3.unit is not None and q3.unit.fr == "jours"
    assert instrument.item("q4").type == "yes_no"
    assert instrument.item("q4.1").type == "date"
    assert [o.value for o in instrument.item("q5").options] == [1, 2, 3]
    assert (instrument.item("q6").type, instrument.item("q6").max_length) == ("text", 200)
    assert instrument.item("q-intro").type == "display"


def test_fhir_enable_when_is_imported():
    instrument = load_instrument(FHIR_FILE)
    q2, q5 = instrument.item("q2"), instrument.item("q5")
    assert [(c.item, c.operator, c.value) for c in q2.enable_when] == [("q1", "!=", 0)]
    assert [(c.item, c.operator, c.value) for c in q5.enable_when] == [
        ("q3", ">", 7),
        ("q4", "=", True),
    ]
    assert q5.enable_behavior == "any"


def test_fhir_nested_follow_up_is_hidden_with_its_parent():
    data = fhir_data()
    q4 = data["item"][2]["item"][0]
    q4["enableWhen"] = [{"question": "q3", "operator": ">", "answerInteger": 1}]
    instrument = instrument_from_fhir(data, "nested.json")
    follow_up = instrument.item("q4.1")
    assert [(c.item, c.operator) for c in follow_up.enable_when] == [("q3", ">"), ("q4", "=")]


def test_fhir_base_language_can_be_french():
    data = {
        "resourceType": "Questionnaire",
        "id": "fr-first",
        "language": "fr-FR",
        "title": "Titre",
        "_title": {"extension": [translation("en", "Title")]},
        "item": [
            {
                "linkId": "ok",
                "type": "boolean",
                "text": "D'accord ?",
                "_text": {"extension": [translation("en", "Agreed?")]},
            }
        ],
    }
    instrument = instrument_from_fhir(data, "fr_first.json")
    assert (instrument.item("ok").text.en, instrument.item("ok").text.fr) == (
        "Agreed?",
        "D'accord ?",
    )
    # No description: the title introduces the questionnaire.
    assert instrument.introduction.en == "Title"


def translation(lang: str, content: str) -> dict:
    return {
        "url": TRANSLATION_URL,
        "extension": [
            {"url": "lang", "valueCode": lang},
            {"url": "content", "valueString": content},
        ],
    }


def broken(change) -> str:
    data = fhir_data()
    change(data)
    with pytest.raises(InstrumentError) as caught:
        instrument_from_fhir(data, "licensed.json")
    return str(caught.value)


def test_fhir_import_without_french_names_the_item():
    def drop_french(data: dict) -> None:
        del data["item"][1]["item"][2]["_text"]

    assert broken(drop_french) == "licensed.json: item 'q3': text has no 'fr' text"


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (
            lambda d: d["item"][2]["item"][2].update(type="decimal"),
            "licensed.json: item 'q6': FHIR item type 'decimal' is not supported",
        ),
        (
            lambda d: d["item"][1]["item"][0].update(answerValueSet="http://x"),
            "licensed.json: item 'q1': answerValueSet is not supported",
        ),
        (
            lambda d: d["item"][1]["item"][2].update(extension=[]),
            "licensed.json: item 'q3': an integer item needs minValue and maxValue",
        ),
        (
            lambda d: d["item"][1]["item"][1]["enableWhen"][0].update(question="zz"),
            "licensed.json: item 'q2': enableWhen refers to unknown question 'zz'",
        ),
        (
            lambda d: d["item"][2]["item"][0].update(linkId="q1"),
            "licensed.json: item 'q1': the linkId is used twice",
        ),
        (lambda d: d.update(resourceType="Patient"), "not a FHIR Questionnaire"),
    ],
)
def test_fhir_import_errors_name_the_file_and_item(change, expected):
    assert expected in broken(change)


def test_fhir_link_ids_unsafe_in_urls_are_made_safe():
    def slash_ids(data: dict) -> None:
        data["item"][1]["item"][0]["linkId"] = "/12345-6"
        data["item"][1]["item"][1]["enableWhen"][0]["question"] = "/12345-6"

    data = fhir_data()
    slash_ids(data)
    instrument = instrument_from_fhir(data, "loinc.json")
    assert instrument.item("12345-6").type == "single_choice"
    assert instrument.item("q2").enable_when[0].item == "12345-6"


# --- export


ROUND_TRIP_EXTRA = parse_instrument(
    {
        "id": "round_trip",
        "version": "3",
        "title": t("Round trip"),
        "introduction": t("Intro"),
        "licence": "test",
        "estimated_minutes": 4,
        "pages": [
            {
                "title": t("First"),
                "items": [
                    {"id": "since", "type": "date", "text": t("Since"), "not_in_future": True},
                    {
                        "id": "areas",
                        "type": "multiple_choice",
                        "text": t("Areas"),
                        "options": [
                            {"value": "a", "label": t("A")},
                            {"value": "b", "label": t("B")},
                            {"value": "none", "label": t("None")},
                        ],
                        "exclusive": ["none"],
                    },
                    {
                        "id": "only_in",
                        "type": "yes_no",
                        "text": t("Only in"),
                        "help": t("Some help"),
                        "enable_when": [{"item": "areas", "operator": "in", "value": ["a", "b"]}],
                    },
                    {
                        "id": "in_and_date",
                        "type": "vas_0_100",
                        "text": t("In and date"),
                        "step": 5,
                        "anchors": {"min_label": t("low"), "max_label": t("high")},
                        "enable_when": [
                            {"item": "areas", "operator": "in", "value": ["a"]},
                            {"item": "since", "operator": "<", "value": "2025-01-01"},
                        ],
                    },
                    {
                        "id": "count",
                        "type": "integer",
                        "text": t("Count"),
                        "min": 0,
                        "max": 99,
                        "unit": t("times"),
                        "required": False,
                    },
                    {"id": "note", "type": "text", "text": t("Note"), "max_length": 80},
                ],
            },
            {"items": [{"id": "bye", "type": "display", "text": t("Bye")}]},
        ],
        "scoring": [
            {"name": "vas", "kind": "shaq_vas", "items": ["in_and_date"]},
            {"name": "count_sum", "kind": "sum", "items": ["count"]},
        ],
        "alerts": [{"id": "lots", "when": {"item": "count", "operator": ">", "value": 50}}],
    },
    "round_trip.json",
)

ROUND_TRIP_CASES = [
    *(load_instrument(path) for path in sorted(SHIPPED.glob("*.json"))),
    load_instrument(DATA / "haq_shaped.json"),
    load_instrument(FHIR_FILE),
    ROUND_TRIP_EXTRA,
]


@pytest.mark.parametrize("lang", ["en", "fr"])
@pytest.mark.parametrize("instrument", ROUND_TRIP_CASES, ids=lambda i: i.id)
def test_fhir_round_trip_keeps_everything(instrument, lang):
    exported = json.loads(json.dumps(instrument_to_fhir(instrument, lang)))
    again = instrument_from_fhir(exported, "exported.json")
    assert again == instrument


def walk(items: list[dict]):
    for item in items:
        yield item
        yield from walk(item.get("item", []))


@pytest.mark.parametrize("instrument", ROUND_TRIP_CASES, ids=lambda i: i.id)
def test_fhir_export_follows_r4_constraints(instrument):
    exported = instrument_to_fhir(instrument, "fr")
    assert exported["resourceType"] == "Questionnaire"
    assert exported["status"] == "active"
    assert FHIR_ID.match(exported["id"])
    items = list(walk(exported["item"]))
    link_ids = [item["linkId"] for item in items]
    assert len(link_ids) == len(set(link_ids))  # que-2
    for item in items:
        assert item["type"] in {"group", "display", "choice", "integer", "boolean", "date", "text"}
        if item["type"] == "group":
            assert item["item"]  # que-1
        if item["type"] == "display":
            assert "required" not in item and "repeats" not in item  # que-6
        if "answerOption" in item:
            assert item["type"] == "choice"  # que-4
        if "maxLength" in item:
            assert item["type"] in {"boolean", "decimal", "integer", "string", "text", "url"}
        for condition in item.get("enableWhen", []):
            answers = [key for key in condition if key.startswith("answer")]
            assert len(answers) == 1 and condition["question"] in link_ids
    assert "null" not in json.dumps(exported)


def test_fhir_export_carries_the_other_language_in_the_translation_extension():
    exported = instrument_to_fhir(load_instrument(SHIPPED / "weekly_checkin.json"), "fr")
    assert exported["language"] == "fr"
    first = exported["item"][0]["item"][0]
    assert first["text"].startswith("Au cours des 7 derniers jours")
    translation_ext = first["_text"]["extension"][0]
    assert translation_ext["url"] == TRANSLATION_URL
    assert translation_ext["extension"][0] == {"url": "lang", "valueCode": "en"}
    assert translation_ext["extension"][1]["valueString"].startswith("Over the past 7 days")


def test_fhir_export_of_in_condition_is_an_any_of_equals():
    exported = instrument_to_fhir(ROUND_TRIP_EXTRA, "en")
    only_in = next(i for i in walk(exported["item"]) if i["linkId"] == "only_in")
    assert only_in["enableWhen"] == [
        {"question": "areas", "operator": "=", "answerCoding": {"code": "a"}},
        {"question": "areas", "operator": "=", "answerCoding": {"code": "b"}},
    ]
    assert only_in["enableBehavior"] == "any"


def test_fhir_export_keeps_inexpressible_conditions_in_the_portal_extension():
    exported = instrument_to_fhir(ROUND_TRIP_EXTRA, "en")
    item = next(i for i in walk(exported["item"]) if i["linkId"] == "in_and_date")
    assert "enableWhen" not in item
    portal = next(e for e in item["extension"] if e["url"] == PORTAL_ITEM_URL)
    assert json.loads(portal["valueString"])["enable_when"][1] == {
        "item": "since",
        "operator": "<",
        "value": "2025-01-01",
    }


def test_fhir_export_does_not_change_the_instrument():
    instrument = copy.deepcopy(ROUND_TRIP_EXTRA)
    instrument_to_fhir(instrument, "en")
    assert instrument == ROUND_TRIP_EXTRA
    assert instrument.item("in_and_date").enable_when[1].value == dt.date(2025, 1, 1)


def test_fhir_export_refuses_an_unknown_language():
    with pytest.raises(ValueError):
        instrument_to_fhir(ROUND_TRIP_EXTRA, "de")
