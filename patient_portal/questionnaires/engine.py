"""Questionnaire engine: answer validation, branching and navigation, as pure functions.

Answers are a plain dict {item_id: value} of typed values, as returned by validate_answer():
int or str for single_choice (the option value), a list of option values for multiple_choice,
int for rating_0_10 / vas_0_100 / integer, bool for yes_no, datetime.date for date, str for text.
None (or an absent key) means "not answered".
"""

from __future__ import annotations

import datetime as dt
import re
import unicodedata
from collections.abc import Mapping
from typing import Any

from patient_portal.questionnaires.instrument import Condition, Instrument, Item

# The contract with the web layer, which translates each code into the participant's language.
ERROR_CODES = (
    "unknown_item",  # no item with this id in the instrument
    "not_answerable",  # a display item: there is nothing to answer
    "not_enabled",  # the item is hidden by the answers given so far
    "wrong_type",  # not a number / yes-no / date, or a list where one value is expected
    "out_of_range",  # a number outside the item's bounds
    "not_an_option",  # a value that is not one of the item's options
    "exclusive_conflict",  # "none of these" (an exclusive option) chosen together with others
    "too_long",  # text longer than the item's max_length
    "invalid_characters",  # text with control characters the database cannot or should not hold
    "date_in_future",  # a date after today on a not_in_future item
)

_INTEGER = re.compile(r"^[+-]?[0-9]{1,15}$")
_ISO_DATE = re.compile(r"^[0-9]{4}-[0-9]{2}-[0-9]{2}$")
_YES = {"yes", "true"}
_NO = {"no", "false"}


class AnswerError(ValueError):
    """A raw answer that cannot be accepted; `code` is one of ERROR_CODES."""

    def __init__(self, code: str, message_en: str):
        if code not in ERROR_CODES:
            raise ValueError(f"unknown answer error code {code!r}")
        self.code = code
        self.message_en = message_en
        super().__init__(f"{code}: {message_en}")


# ---------------------------------------------------------------------------------------------
# Validation of one answer


def validate_answer(
    instrument: Instrument,
    item_id: str,
    raw_value: object,
    *,
    answers: Mapping[str, Any] | None = None,
    today: dt.date | None = None,
) -> Any:
    """Convert a raw form value to the item's typed value; None means "no answer" (cleared).

    `raw_value` is a string or a list of strings from an HTML form, or a value already typed
    (as stored in JSON), which is checked again. When `answers` is given, an item hidden by them
    is refused (not_enabled). `today` should be the participant's local date; the server's
    date is used if it is not given.
    """
    if not instrument.has_item(item_id):
        raise AnswerError("unknown_item", f"There is no question {item_id!r}.")
    item = instrument.item(item_id)
    if not item.answerable:
        raise AnswerError("not_answerable", "This text has no answer.")
    if answers is not None and not is_enabled(instrument, item, answers):
        raise AnswerError("not_enabled", "This question does not apply given earlier answers.")
    if item.type == "multiple_choice":
        return _multiple_choice(item, raw_value)
    value = _single_value(raw_value)
    if value is None:
        return None
    if item.type == "single_choice":
        return _single_choice(item, value)
    if item.type in ("rating_0_10", "vas_0_100", "integer"):
        return _number(item, value)
    if item.type == "yes_no":
        return _yes_no(value)
    if item.type == "date":
        return _date(item, value, today or dt.date.today())
    return _text(item, value)


def _single_value(raw: object) -> Any:
    """One value from a raw form value; a one-element list (from getlist()) is unwrapped."""
    if isinstance(raw, (list, tuple)):
        if len(raw) > 1:
            raise AnswerError("wrong_type", "Only one answer is expected.")
        raw = raw[0] if raw else None
    if isinstance(raw, str):
        raw = raw.strip()
        return raw or None
    if raw is None or isinstance(raw, (bool, int, dt.date)):
        return raw
    raise AnswerError("wrong_type", "This kind of value cannot be an answer.")


def _find_option(item: Item, value: object) -> int | str:
    for option in item.options:
        if isinstance(value, str):
            if str(option.value) == value:
                return option.value
        elif type(value) is type(option.value) and value == option.value:
            return option.value
    raise AnswerError("not_an_option", "This answer is not one of the choices.")


def _single_choice(item: Item, value: object) -> int | str:
    if not isinstance(value, (str, int)) or isinstance(value, bool):
        raise AnswerError("wrong_type", "Please choose one of the answers.")
    return _find_option(item, value)


def _multiple_choice(item: Item, raw: object) -> list[int | str] | None:
    if raw is None:
        return None
    values = list(raw) if isinstance(raw, (list, tuple)) else [raw]
    chosen: set[int | str] = set()
    for value in values:
        if isinstance(value, str):
            value = value.strip()
            if not value:
                continue
        elif not isinstance(value, int) or isinstance(value, bool):
            raise AnswerError("wrong_type", "Please choose among the answers.")
        chosen.add(_find_option(item, value))
    if not chosen:
        return None
    if len(chosen) > 1 and any(value in item.exclusive for value in chosen):
        raise AnswerError("exclusive_conflict", "This answer cannot be combined with others.")
    # Option order, not click order: the stored answer is the same whatever the tapping order.
    return [option.value for option in item.options if option.value in chosen]


def _number(item: Item, value: object) -> int:
    if isinstance(value, str) and _INTEGER.match(value):
        number = int(value)
    elif isinstance(value, int) and not isinstance(value, bool):
        number = value
    else:
        raise AnswerError("wrong_type", "Please give a whole number.")
    low, high = item.value_range or (0, 0)
    if not low <= number <= high:
        raise AnswerError("out_of_range", f"Please give a number from {low} to {high}.")
    return number


def _yes_no(value: object) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.lower() in _YES | _NO:
        return value.lower() in _YES
    raise AnswerError("wrong_type", "Please answer yes or no.")


def _date(item: Item, value: object, today: dt.date) -> dt.date:
    if isinstance(value, dt.datetime):
        raise AnswerError("wrong_type", "Please give a date.")
    if isinstance(value, dt.date):
        day = value
    elif isinstance(value, str) and _ISO_DATE.match(value):
        try:
            day = dt.date.fromisoformat(value)
        except ValueError:
            raise AnswerError("wrong_type", "This date does not exist.") from None
    else:
        raise AnswerError("wrong_type", "Please give a date (year-month-day).")
    if item.not_in_future and day > today:
        raise AnswerError("date_in_future", "The date cannot be later than today.")
    return day


def _text(item: Item, value: object) -> str:
    if not isinstance(value, str):
        raise AnswerError("wrong_type", "Please type a text.")
    text = value.replace("\r\n", "\n").replace("\r", "\n")
    for char in text:
        # Control characters and lone surrogates: PostgreSQL refuses NUL, UTF-8 refuses surrogates.
        if char not in "\n\t" and unicodedata.category(char) in ("Cc", "Cs"):
            raise AnswerError("invalid_characters", "The text contains characters not allowed.")
    if len(text) > (item.max_length or 0):
        raise AnswerError("too_long", f"Please keep the text under {item.max_length} characters.")
    return text


# ---------------------------------------------------------------------------------------------
# Branching


def is_answered(value: object) -> bool:
    """True unless the value means "no answer" (None, empty string, empty list)."""
    return value is not None and value != "" and value != []


def condition_met(operator: str, expected: Any, answer: Any) -> bool:
    """Evaluate `answer <operator> expected`; an absent answer meets only "exists": false.

    For a multiple_choice answer (a list): "=" means the option is among those chosen, "!="
    that it is not, "in" that any chosen option is in the expected list.
    """
    if operator == "exists":
        return is_answered(answer) == expected
    if not is_answered(answer):
        return False
    if isinstance(expected, dt.date) and isinstance(answer, str):
        try:
            answer = dt.date.fromisoformat(answer)
        except ValueError:
            return False
    if isinstance(answer, list):
        return _list_condition_met(operator, expected, answer)
    try:
        return _scalar_condition_met(operator, expected, answer)
    except TypeError:
        # A stored answer of an unexpected type never meets a condition.
        return False


def _list_condition_met(operator: str, expected: Any, answer: list[Any]) -> bool:
    if operator == "=":
        return expected in answer
    if operator == "!=":
        return expected not in answer
    if operator == "in":
        return any(value in expected for value in answer)
    return False


def _scalar_condition_met(operator: str, expected: Any, answer: Any) -> bool:
    if operator == "=":
        return bool(answer == expected)
    if operator == "!=":
        return bool(answer != expected)
    if operator == "in":
        return answer in expected
    if operator == ">":
        return bool(answer > expected)
    if operator == ">=":
        return bool(answer >= expected)
    if operator == "<":
        return bool(answer < expected)
    if operator == "<=":
        return bool(answer <= expected)
    raise ValueError(f"unknown operator {operator!r}")


def enabled_states(instrument: Instrument, answers: Mapping[str, Any]) -> dict[str, bool]:
    """{item_id: enabled} for every item, in one pass (conditions only look back)."""
    states: dict[str, bool] = {}
    for item in instrument.items:
        states[item.id] = _conditions_met(item, answers, states)
    return states


def _conditions_met(item: Item, answers: Mapping[str, Any], states: dict[str, bool]) -> bool:
    if not item.enable_when:
        return True
    results = (_one_condition_met(c, answers, states) for c in item.enable_when)
    return all(results) if item.enable_behavior == "all" else any(results)


def _one_condition_met(
    condition: Condition, answers: Mapping[str, Any], states: dict[str, bool]
) -> bool:
    # A condition on a hidden item is never met, whatever its operator: hiding a question
    # hides everything that depends on it.
    if not states[condition.item]:
        return False
    return condition_met(condition.operator, condition.value, answers.get(condition.item))


def is_enabled(instrument: Instrument, item: Item | str, answers: Mapping[str, Any]) -> bool:
    """True if the item applies given the answers (its enable_when, and its conditions' items)."""
    item_id = item if isinstance(item, str) else item.id
    return enabled_states(instrument, answers)[item_id]


# ---------------------------------------------------------------------------------------------
# Navigation and completeness


def visible_items(instrument: Instrument, answers: Mapping[str, Any]) -> list[Item]:
    """The enabled items (display items included), in order."""
    states = enabled_states(instrument, answers)
    return [item for item in instrument.items if states[item.id]]


def next_item(
    instrument: Instrument, answers: Mapping[str, Any], current_id: str | None
) -> Item | None:
    """The visible item after `current_id` (the first one if None); None at the end."""
    states = enabled_states(instrument, answers)
    start = 0 if current_id is None else instrument.position(current_id) + 1
    for item in instrument.items[start:]:
        if states[item.id]:
            return item
    return None


def previous_item(
    instrument: Instrument, answers: Mapping[str, Any], current_id: str
) -> Item | None:
    """The visible item before `current_id`; None at the start."""
    states = enabled_states(instrument, answers)
    for item in reversed(instrument.items[: instrument.position(current_id)]):
        if states[item.id]:
            return item
    return None


def first_unanswered(instrument: Instrument, answers: Mapping[str, Any]) -> Item | None:
    """Where to resume: the first visible question without an answer; None if all answered."""
    for item in visible_items(instrument, answers):
        if item.answerable and not is_answered(answers.get(item.id)):
            return item
    return None


def missing_required(instrument: Instrument, answers: Mapping[str, Any]) -> list[str]:
    """Ids of the enabled, required questions that have no answer yet."""
    return [
        item.id
        for item in visible_items(instrument, answers)
        if item.answerable and item.required and not is_answered(answers.get(item.id))
    ]


def effective_answers(instrument: Instrument, answers: Mapping[str, Any]) -> dict[str, Any]:
    """The answers that count: those to enabled questions of this instrument.

    Answers to items hidden by a later change stay in storage (the participant may change their
    mind again) but are neither scored nor submitted.
    """
    states = enabled_states(instrument, answers)
    return {
        item.id: answers[item.id]
        for item in instrument.items
        if item.answerable and states[item.id] and is_answered(answers.get(item.id))
    }


def progress(instrument: Instrument, answers: Mapping[str, Any]) -> tuple[int, int]:
    """(answered, total) over the enabled questions."""
    questions = [item for item in visible_items(instrument, answers) if item.answerable]
    answered = sum(1 for item in questions if is_answered(answers.get(item.id)))
    return answered, len(questions)
