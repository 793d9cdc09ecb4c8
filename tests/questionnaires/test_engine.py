"""Answer validation, branching and navigation of the questionnaire engine."""

from __future__ import annotations

import datetime as dt

import pytest
from hypothesis import given
from hypothesis import strategies as st

from patient_portal.questionnaires.engine import (
    ERROR_CODES,
    AnswerError,
    effective_answers,
    first_unanswered,
    is_enabled,
    missing_required,
    next_item,
    previous_item,
    progress,
    validate_answer,
    visible_items,
)
from patient_portal.questionnaires.instrument import Instrument, parse_instrument

TODAY = dt.date(2025, 3, 30)


def t(en: str) -> dict[str, str]:
    return {"en": en, "fr": f"{en} (fr)"}


def options(*values: int | str) -> list[dict]:
    return [{"value": value, "label": t(f"option {value}")} for value in values]


def make_instrument(items: list[dict]) -> Instrument:
    data = {
        "id": "test",
        "version": "1",
        "title": t("Test"),
        "introduction": t("Intro"),
        "licence": "test",
        "pages": [{"items": items}],
    }
    return parse_instrument(data, "test.json")


ALL_TYPES = make_instrument(
    [
        {"id": "intro", "type": "display", "text": t("Welcome")},
        {"id": "sc", "type": "single_choice", "text": t("One"), "options": options(0, 1, 2)},
        {"id": "codes", "type": "single_choice", "text": t("Code"), "options": options("a", "b")},
        {
            "id": "mc",
            "type": "multiple_choice",
            "text": t("Many"),
            "options": options("x", "y", "none"),
            "exclusive": ["none"],
        },
        {"id": "rating", "type": "rating_0_10", "text": t("Rate")},
        {"id": "vas", "type": "vas_0_100", "text": t("Slide"), "step": 5},
        {"id": "yn", "type": "yes_no", "text": t("Yes?")},
        {"id": "count", "type": "integer", "text": t("How many"), "min": -5, "max": 120},
        {"id": "when", "type": "date", "text": t("When"), "not_in_future": True},
        {"id": "note", "type": "text", "text": t("Note"), "max_length": 10},
    ]
)


def check(item_id: str, raw: object) -> object:
    return validate_answer(ALL_TYPES, item_id, raw, today=TODAY)


def error_code(item_id: str, raw: object, **kwargs: object) -> str:
    with pytest.raises(AnswerError) as caught:
        validate_answer(ALL_TYPES, item_id, raw, today=TODAY, **kwargs)  # type: ignore[arg-type]
    return caught.value.code


# --- accepted values, per type


@pytest.mark.parametrize(
    ("item_id", "raw", "expected"),
    [
        ("sc", "2", 2),
        ("sc", ["0"], 0),
        ("sc", 1, 1),
        ("codes", " b ", "b"),
        ("mc", ["y", "x"], ["x", "y"]),
        ("mc", ["x", "x"], ["x"]),
        ("mc", "none", ["none"]),
        ("rating", "0", 0),
        ("rating", "10", 10),
        ("vas", "73", 73),
        ("yn", "yes", True),
        ("yn", "No", False),
        ("yn", "true", True),
        ("yn", False, False),
        ("count", "-5", -5),
        ("count", "+120", 120),
        ("when", "2025-03-30", TODAY),
        ("when", dt.date(2024, 2, 29), dt.date(2024, 2, 29)),
        ("note", "  short  ", "short"),
        ("note", "two\r\nlines", "two\nlines"),
    ],
)
def test_validate_answer_accepts_and_types_valid_values(item_id, raw, expected):
    assert check(item_id, raw) == expected


@pytest.mark.parametrize("raw", ["", "   ", [], [""], None])
@pytest.mark.parametrize("item_id", ["sc", "mc", "rating", "yn", "count", "when", "note"])
def test_blank_answer_means_no_answer(item_id, raw):
    assert check(item_id, raw) is None


# --- refused values, per type, with their stable codes


@pytest.mark.parametrize(
    ("item_id", "raw", "code"),
    [
        ("nope", "1", "unknown_item"),
        ("intro", "1", "not_answerable"),
        ("sc", "3", "not_an_option"),
        ("sc", "1.0", "not_an_option"),
        ("sc", ["0", "1"], "wrong_type"),
        ("sc", True, "wrong_type"),
        ("codes", "c", "not_an_option"),
        ("mc", ["x", "z"], "not_an_option"),
        ("mc", ["x", "none"], "exclusive_conflict"),
        ("mc", [1.5], "wrong_type"),
        ("rating", "11", "out_of_range"),
        ("rating", "-1", "out_of_range"),
        ("rating", "5.5", "wrong_type"),
        ("rating", "five", "wrong_type"),
        ("rating", True, "wrong_type"),
        ("rating", "٣", "wrong_type"),
        ("vas", "101", "out_of_range"),
        ("yn", "maybe", "wrong_type"),
        ("yn", "1", "wrong_type"),
        ("count", "121", "out_of_range"),
        ("count", "1e3", "wrong_type"),
        ("count", "9" * 5000, "wrong_type"),
        ("when", "2025-03-31", "date_in_future"),
        ("when", "2025-02-30", "wrong_type"),
        ("when", "30/03/2025", "wrong_type"),
        ("when", dt.datetime(2025, 1, 1, 12, 0), "wrong_type"),
        ("note", "eleven char", "too_long"),
        ("note", "nul\x00", "invalid_characters"),
        ("note", "lone \ud800", "invalid_characters"),
        ("note", 12, "wrong_type"),
        ("count", {"a": 1}, "wrong_type"),
    ],
)
def test_validate_answer_refuses_invalid_values_with_a_stable_code(item_id, raw, code):
    assert error_code(item_id, raw) == code
    assert code in ERROR_CODES


def test_text_at_max_length_is_accepted():
    assert check("note", "x" * 10) == "x" * 10


def test_date_in_future_uses_the_given_today():
    assert validate_answer(ALL_TYPES, "when", "2025-03-31", today=dt.date(2025, 4, 1))


def test_answer_error_refuses_codes_outside_the_contract():
    with pytest.raises(ValueError):
        AnswerError("made_up", "message")


@given(
    item_id=st.sampled_from([item.id for item in ALL_TYPES.items] + ["unknown"]),
    raw=st.one_of(
        st.text(),
        st.lists(st.text(), max_size=4),
        st.none(),
        st.integers(),
        st.booleans(),
        st.dates(),
    ),
)
def test_validate_answer_raises_only_answer_error(item_id, raw):
    try:
        validate_answer(ALL_TYPES, item_id, raw, today=TODAY, answers={})
    except AnswerError as error:
        assert error.code in ERROR_CODES


# --- branching

BRANCHING = make_instrument(
    [
        {"id": "pain", "type": "rating_0_10", "text": t("Pain")},
        {"id": "new", "type": "yes_no", "text": t("New?")},
        {
            "id": "areas",
            "type": "multiple_choice",
            "text": t("Where"),
            "options": options("hands", "chest", "other"),
            "enable_when": [{"item": "new", "operator": "=", "value": True}],
        },
        {
            "id": "other_text",
            "type": "text",
            "text": t("Tell us"),
            "enable_when": [{"item": "areas", "operator": "=", "value": "other"}],
        },
        {
            "id": "chest_detail",
            "type": "rating_0_10",
            "text": t("Chest"),
            "enable_when": [
                {"item": "areas", "operator": "in", "value": ["chest"]},
                {"item": "pain", "operator": ">=", "value": 8},
            ],
            "enable_behavior": "any",
        },
        {
            "id": "not_asked_if_new",
            "type": "rating_0_10",
            "text": t("Old"),
            "enable_when": [{"item": "new", "operator": "!=", "value": True}],
        },
        {
            "id": "after_pain",
            "type": "yes_no",
            "text": t("Pain given"),
            "enable_when": [{"item": "pain", "operator": "exists", "value": True}],
        },
        {"id": "end", "type": "display", "text": t("Thanks")},
    ]
)


def ids(items) -> list[str]:
    return [item.id for item in items]


def test_item_without_condition_is_enabled():
    assert is_enabled(BRANCHING, "pain", {})


def test_condition_on_yes_enables_follow_up():
    assert not is_enabled(BRANCHING, "areas", {"new": False})
    assert not is_enabled(BRANCHING, "areas", {})
    assert is_enabled(BRANCHING, BRANCHING.item("areas"), {"new": True})


def test_equals_on_a_multiple_choice_means_the_option_is_chosen():
    assert is_enabled(BRANCHING, "other_text", {"new": True, "areas": ["hands", "other"]})
    assert not is_enabled(BRANCHING, "other_text", {"new": True, "areas": ["hands"]})


def test_item_depending_on_a_hidden_item_is_hidden():
    # areas still holds "other", but areas itself is hidden once new is no.
    assert not is_enabled(BRANCHING, "other_text", {"new": False, "areas": ["other"]})


def test_enable_behavior_any_needs_one_condition():
    assert is_enabled(BRANCHING, "chest_detail", {"pain": 9})
    assert is_enabled(BRANCHING, "chest_detail", {"pain": 1, "new": True, "areas": ["chest"]})
    assert not is_enabled(BRANCHING, "chest_detail", {"pain": 7, "new": True, "areas": ["hands"]})


def test_not_equal_is_false_while_unanswered_and_exists_follows_the_answer():
    assert not is_enabled(BRANCHING, "not_asked_if_new", {})
    assert is_enabled(BRANCHING, "not_asked_if_new", {"new": False})
    assert not is_enabled(BRANCHING, "after_pain", {})
    assert is_enabled(BRANCHING, "after_pain", {"pain": 0})


def test_validate_answer_refuses_a_hidden_item_when_answers_are_given():
    with pytest.raises(AnswerError) as caught:
        validate_answer(BRANCHING, "areas", ["hands"], answers={"new": False})
    assert caught.value.code == "not_enabled"
    assert validate_answer(BRANCHING, "areas", ["hands"], answers={"new": True}) == ["hands"]


def test_visible_items_follow_the_answers_in_order():
    answers = {"pain": 2, "new": True, "areas": ["other"]}
    assert ids(visible_items(BRANCHING, answers)) == [
        "pain",
        "new",
        "areas",
        "other_text",
        "after_pain",
        "end",
    ]


def test_next_and_previous_skip_hidden_items():
    answers = {"pain": 2, "new": False}
    assert next_item(BRANCHING, answers, None).id == "pain"
    assert next_item(BRANCHING, answers, "new").id == "not_asked_if_new"
    assert previous_item(BRANCHING, answers, "not_asked_if_new").id == "new"
    assert previous_item(BRANCHING, answers, "pain") is None
    assert next_item(BRANCHING, answers, "end") is None


def test_first_unanswered_resumes_at_the_first_visible_question_without_answer():
    assert first_unanswered(BRANCHING, {}).id == "pain"
    assert first_unanswered(BRANCHING, {"pain": 3, "new": True}).id == "areas"
    done = {"pain": 3, "new": False, "not_asked_if_new": 1, "after_pain": True}
    assert first_unanswered(BRANCHING, done) is None


def test_missing_required_lists_only_enabled_required_questions():
    # other_text is a text item: optional by default.
    answers = {"pain": 3, "new": True, "areas": ["other"]}
    assert missing_required(BRANCHING, answers) == ["after_pain"]
    # after_pain only applies once pain is answered.
    assert missing_required(BRANCHING, {}) == ["pain", "new"]


def test_effective_answers_drop_answers_to_hidden_and_unknown_items():
    stored = {"pain": 3, "new": False, "areas": ["chest"], "chest_detail": 9, "ghost": 1, "end": 1}
    assert effective_answers(BRANCHING, stored) == {"pain": 3, "new": False}


def test_progress_counts_enabled_questions_only():
    assert progress(BRANCHING, {}) == (0, 2)
    # pain, new, areas, chest_detail (pain >= 8), after_pain; other_text stays hidden.
    assert progress(BRANCHING, {"pain": 9, "new": True, "areas": ["chest"]}) == (3, 5)


def test_condition_on_a_date_compares_dates():
    instrument = make_instrument(
        [
            {"id": "onset", "type": "date", "text": t("Since")},
            {
                "id": "recent",
                "type": "yes_no",
                "text": t("Recent"),
                "enable_when": [{"item": "onset", "operator": ">=", "value": "2025-01-01"}],
            },
        ]
    )
    assert is_enabled(instrument, "recent", {"onset": dt.date(2025, 2, 1)})
    assert is_enabled(instrument, "recent", {"onset": "2025-02-01"})
    assert not is_enabled(instrument, "recent", {"onset": dt.date(2024, 12, 31)})
