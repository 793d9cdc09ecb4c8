"""The instrument file format: loading, validation messages, shipped instruments."""

from __future__ import annotations

import copy
import json
import re
import shutil
from pathlib import Path
from typing import Any

import pytest

from patient_portal.questionnaires.instrument import InstrumentError, parse_instrument
from patient_portal.questionnaires.loader import load_instrument, load_instruments

ROOT = Path(__file__).resolve().parents[2]
SHIPPED = ROOT / "patient_portal" / "questionnaires" / "instruments"
DATA = Path(__file__).parent / "data"
SHIPPED_LICENCE = "Wording written for the CARE-SSc portal; free to reuse (CC BY 4.0)"


def t(en: str) -> dict[str, str]:
    return {"en": en, "fr": f"{en} (fr)"}


def base(items: list[dict], **extra: object) -> dict:
    data: dict[str, Any] = {
        "id": "bad",
        "version": "1",
        "title": t("Test"),
        "introduction": t("Intro"),
        "licence": "test",
        "pages": [{"items": items}],
    }
    data.update(extra)
    return data


RATING: dict[str, Any] = {"id": "pain", "type": "rating_0_10", "text": t("Pain")}
CHOICE: dict[str, Any] = {
    "id": "mood",
    "type": "single_choice",
    "text": t("Mood"),
    "options": [{"value": 1, "label": t("low")}, {"value": 2, "label": t("high")}],
}


def error_of(data: dict) -> str:
    with pytest.raises(InstrumentError) as caught:
        parse_instrument(data, "bad.json")
    return str(caught.value)


# --- shipped instruments


def test_shipped_instruments_all_load():
    instruments = load_instruments(SHIPPED)
    assert set(instruments) == {
        "weekly_checkin",
        "patient_global",
        "daily_life_hands",
        "quality_of_life",
        "post_infusion_diary",
        "symptom_report",
    }


@pytest.mark.parametrize("path", sorted(SHIPPED.glob("*.json")), ids=lambda p: p.name)
def test_shipped_instrument_is_ours_versioned_and_named_after_its_file(path):
    instrument = load_instrument(path)
    assert instrument.id == path.stem
    assert instrument.version == "1.0"
    assert instrument.licence == SHIPPED_LICENCE
    assert instrument.estimated_minutes is not None


@pytest.mark.parametrize("path", sorted(SHIPPED.glob("*.json")), ids=lambda p: p.name)
def test_shipped_instrument_has_distinct_french_text(path):
    # A French text identical to the English one is almost always a forgotten translation.
    instrument = load_instrument(path)
    for item in instrument.items:
        assert item.text.en != item.text.fr, item.id
        assert "«" not in item.text.en


def test_weekly_checkin_asks_areas_only_when_something_is_new():
    instrument = load_instrument(SHIPPED / "weekly_checkin.json")
    areas = instrument.item("new_areas")
    assert [(c.item, c.operator, c.value) for c in areas.enable_when] == [
        ("anything_new", "=", True)
    ]
    assert [rule.id for rule in instrument.alerts] == [
        "breathing_severe",
        "finger_ulcers_severe",
        "new_breathing_or_heart",
    ]


def test_defaults_required_true_except_text_and_display():
    instrument = parse_instrument(
        base(
            [
                RATING,
                {"id": "note", "type": "text", "text": t("Note")},
                {"id": "info", "type": "display", "text": t("Info")},
            ]
        ),
        "ok.json",
    )
    assert [item.required for item in instrument.items] == [True, False, False]
    assert instrument.item("note").max_length == 500


# --- error messages name the file, the item and the problem


def test_error_names_file_item_and_missing_language():
    with pytest.raises(InstrumentError) as caught:
        load_instrument(DATA / "broken_missing_french.json")
    assert str(caught.value) == "broken_missing_french.json: item 'pain': text has no 'fr' text"
    assert caught.value.item_id == "pain"
    assert caught.value.source == "broken_missing_french.json"


def test_error_for_condition_on_a_later_item():
    with pytest.raises(InstrumentError) as caught:
        load_instrument(DATA / "broken_forward_condition.json")
    assert str(caught.value) == (
        "broken_forward_condition.json: item 'details': "
        "enable_when refers to 'anything_new', which is not an earlier item"
    )


def test_error_for_condition_value_outside_the_scale():
    with pytest.raises(InstrumentError) as caught:
        load_instrument(DATA / "broken_condition_range.json")
    assert str(caught.value) == (
        "broken_condition_range.json: item 'why': condition value 11 is outside 0..10"
    )


def test_error_for_invalid_json_gives_the_line():
    with pytest.raises(InstrumentError, match=r"^broken_not_json\.json: not valid JSON: line 3"):
        load_instrument(DATA / "broken_not_json.json")


def test_error_for_duplicate_instrument_id_names_both_files(tmp_path):
    shutil.copy(SHIPPED / "patient_global.json", tmp_path / "a.json")
    shutil.copy(SHIPPED / "patient_global.json", tmp_path / "b.json")
    with pytest.raises(InstrumentError) as caught:
        load_instruments(tmp_path)
    assert str(caught.value) == "b.json: instrument id 'patient_global' is already used by a.json"


def with_option_label(label: dict) -> dict:
    item: dict[str, Any] = copy.deepcopy(CHOICE)
    item["options"][1]["label"] = label
    return item


@pytest.mark.parametrize(
    ("items", "expected"),
    [
        ([{**RATING, "type": "slider"}], "item 'pain': unknown type 'slider'"),
        ([RATING, RATING], "item 'pain': the id is used by another item"),
        ([{**RATING, "id": "a b"}], "item id 'a b' must use only letters"),
        ([{**RATING, "enable_whne": []}], "item 'pain': field enable_whne is not allowed"),
        ([{**RATING, "options": []}], "item 'pain': field options is not allowed in rating_0_10"),
        ([{**RATING, "text": {"en": "Pain"}}], "item 'pain': text has no 'fr' text"),
        ([{**RATING, "text": {**t("Pain"), "de": "Schmerz"}}], "text has unknown language de"),
        ([with_option_label({"en": "high"})], "item 'mood': label of option 2 has no 'fr' text"),
        (
            [{**CHOICE, "options": [CHOICE["options"][0], CHOICE["options"][0]]}],
            "item 'mood': option value 1 is used twice",
        ),
        (
            [{**CHOICE, "options": [{"value": "1", "label": t("a")}, CHOICE["options"][1]]}],
            "item 'mood': option value '1' looks like a number: write it as 1",
        ),
        ([{**CHOICE, "options": CHOICE["options"][:1]}], "needs a list of at least 2 options"),
        (
            [{**CHOICE, "type": "multiple_choice", "exclusive": [3]}],
            "item 'mood': exclusive value 3 is not an option",
        ),
        (
            [{"id": "n", "type": "integer", "text": t("N"), "min": 0}],
            "item 'n': an integer item needs whole-number min and max",
        ),
        (
            [{"id": "n", "type": "integer", "text": t("N"), "min": 5, "max": 1}],
            "item 'n': min 5 is greater than max 1",
        ),
        (
            [{"id": "note", "type": "text", "text": t("N"), "max_length": 501}],
            "item 'note': max_length 501 must be 1..500",
        ),
        ([{"id": "i", "type": "display", "text": t("I"), "required": True}], "not allowed"),
        ([{"id": "i", "type": "display", "text": t("I")}], "has no question to answer"),
        (
            [RATING, {**CHOICE, "enable_when": [{"item": "pain", "operator": "~", "value": 1}]}],
            "item 'mood': unknown operator '~'",
        ),
        (
            [{**CHOICE, "enable_when": [{"item": "mood", "operator": "=", "value": 1}]}],
            "item 'mood': enable_when refers to the item itself",
        ),
        (
            [CHOICE, {**RATING, "enable_when": [{"item": "mood", "operator": "=", "value": 3}]}],
            "item 'pain': condition value 3 is not an option of 'mood'",
        ),
        (
            [RATING, {**CHOICE, "enable_when": [{"item": "pain", "operator": "exists"}]}],
            "item 'mood': condition on 'pain' has no value",
        ),
        (
            [
                RATING,
                {
                    **CHOICE,
                    "enable_when": [{"item": "pain", "operator": ">", "value": 1}],
                    "enable_behavior": "some",
                },
            ],
            "item 'mood': enable_behavior 'some' must be 'all' or 'any'",
        ),
    ],
)
def test_item_errors_name_file_item_and_problem(items, expected):
    message = error_of(base(items))
    assert message.startswith("bad.json: ")
    assert expected in message


@pytest.mark.parametrize(
    ("extra", "expected"),
    [
        ({"id": "Bad Id"}, "bad.json: id 'Bad Id' must be a slug"),
        ({"pages": []}, "bad.json: pages must be a non-empty list"),
        ({"licence": ""}, "bad.json: licence must be a non-empty string"),
        ({"estimated_minutes": 0}, "bad.json: estimated_minutes 0 must be a whole number"),
        ({"colour": "red"}, "bad.json: field colour is not allowed in the instrument"),
        (
            {"scoring": [{"name": "total", "kind": "sum", "items": ["pain", "nope"]}]},
            "bad.json: score 'total': unknown item 'nope'",
        ),
        (
            {"scoring": [{"name": "total", "kind": "median", "items": ["pain"]}]},
            "bad.json: score 'total': unknown kind 'median'",
        ),
        (
            {"scoring": [{"name": "total", "kind": "sum", "items": ["pain"], "min_answered": 1}]},
            'min_answered needs "missing": "prorate"',
        ),
        (
            {"scoring": [{"name": "m", "kind": "mean", "items": ["pain"], "min_answered": 2}]},
            "bad.json: score 'm': min_answered 2 must be a count 1..1 or a fraction 0..1",
        ),
        (
            {"scoring": [{"name": "m", "kind": "mean", "items": ["codes"]}]},
            "bad.json: score 'm': option 'a' of item 'codes' is not a number",
        ),
        (
            {"scoring": [{"name": "m", "kind": "mean", "items": ["many"]}]},
            "bad.json: score 'm': item 'many' (multiple_choice) cannot be scored",
        ),
        (
            {"scoring": [{"name": "s", "kind": "shaq_vas", "items": ["pain"]}]},
            "bad.json: score 's': item 'pain' is not a vas_0_100 item",
        ),
        (
            {"scoring": [{"name": "h", "kind": "haq_di"}]},
            "bad.json: score 'h': no item for HAQ-DI categories: dressing_grooming",
        ),
        (
            {"alerts": [{"id": "a", "when": {"score": "nope", "operator": ">", "value": 1}}]},
            "bad.json: alert 'a': unknown score 'nope'",
        ),
        (
            {"alerts": [{"id": "a", "when": {"item": "pain", "operator": ">", "value": 12}}]},
            "bad.json: alert 'a': condition value 12 is outside 0..10",
        ),
        (
            {"alerts": [{"id": "a", "when": {"item": "codes", "operator": ">", "value": 1}}]},
            "bad.json: alert 'a': operator > needs numeric options on 'codes'",
        ),
        (
            {
                "alerts": [
                    {
                        "id": "a",
                        "when": {"item": "pain", "operator": ">", "value": 5},
                        "severity": "high",
                    }
                ]
            },
            "bad.json: alert 'a': severity 'high' must be one of urgent, routine",
        ),
        (
            {
                "alerts": [
                    {
                        "id": "a",
                        "when": {"item": "pain", "operator": ">", "value": 5},
                        "label": {"en": "Pain"},
                    }
                ]
            },
            "bad.json: alert 'a': label has no 'fr' text",
        ),
        ({"alerts_on_answer": "yes"}, "bad.json: alerts_on_answer must be true or false"),
    ],
)
def test_instrument_level_errors_name_file_and_part(extra, expected):
    codes = {
        "id": "codes",
        "type": "single_choice",
        "text": t("Code"),
        "options": [{"value": "a", "label": t("a")}, {"value": "b", "label": t("b")}],
    }
    many = {**codes, "id": "many", "type": "multiple_choice"}
    assert expected in error_of(base([RATING, codes, many], **extra))


def test_haq_item_error_names_the_item():
    data = json.loads((DATA / "haq_shaped.json").read_text(encoding="utf-8"))
    data["pages"][3]["items"][1]["options"].append({"value": 4, "label": t("Level 4")})
    with pytest.raises(InstrumentError) as caught:
        parse_instrument(data, "haq.json")
    assert str(caught.value) == "haq.json: item 'c4_b': option value 4 is outside 0..3"


def test_error_messages_do_not_leak_python_reprs_of_dataclasses():
    message = error_of(base([{**RATING, "text": "Pain"}]))
    assert not re.search(r"LocalizedText|Item\(", message)
    assert message == 'bad.json: item \'pain\': text must be an object with "en" and "fr" texts'
