"""Scores and alerts computed from an instrument's answers.

Scoring works on the effective answers only (answers to hidden items do not count). Rounding is
half-up on the exact decimal value (not Python's round-half-even on binary floats), so 2.125
becomes 2.13 and a hand calculation gives the same result. The rules are documented in
docs/instruments.md; bump a scorer's version in SCORER_VERSIONS whenever its results can change.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from fractions import Fraction
from typing import Any

from patient_portal.questionnaires.engine import condition_met, effective_answers
from patient_portal.questionnaires.instrument import (
    HAQ_CATEGORIES,
    Instrument,
    Item,
    ScoreRule,
)

# Stored with each submission so that a score can be traced to the rules that produced it.
SCORER_VERSIONS: dict[str, str] = {
    "sum": "1.0",
    "mean": "1.0",
    "haq_di": "1.0",
    "shaq_vas": "1.0",
}

HAQ_MIN_CATEGORIES = 6
HAQ_DECIMALS = 3
SHAQ_DECIMALS = 2
MEAN_DECIMALS = 2

Score = int | float | None


def score(instrument: Instrument, answers: Mapping[str, Any]) -> dict[str, Score]:
    """Every score of the instrument, by name; None where too few answers were given."""
    counted = effective_answers(instrument, answers)
    results: dict[str, Score] = {}
    for rule in instrument.scoring:
        results.update(_SCORERS[rule.kind](instrument, rule, counted))
    return results


def scorer_versions(instrument: Instrument) -> dict[str, str]:
    """{rule name: "kind version"} for the instrument's rules, to store with a submission."""
    return {rule.name: f"{rule.kind} {SCORER_VERSIONS[rule.kind]}" for rule in instrument.scoring}


def evaluate_alerts(
    instrument: Instrument, answers: Mapping[str, Any], scores: Mapping[str, Score]
) -> list[str]:
    """Ids of the alert rules met by the effective answers and the scores, in file order."""
    counted = effective_answers(instrument, answers)
    raised = []
    for rule in instrument.alerts:
        actual = counted.get(rule.item) if rule.item is not None else scores.get(rule.score or "")
        if condition_met(rule.operator, rule.value, actual):
            raised.append(rule.id)
    return raised


# ---------------------------------------------------------------------------------------------
# Rounding


def round_half_up(value: Fraction, decimals: int) -> int | float:
    """Round an exact value half away from zero; an int when decimals is 0."""
    scale = 10**decimals
    scaled = abs(value) * scale
    rounded = math.floor(scaled + Fraction(1, 2))
    signed = rounded if value >= 0 else -rounded
    return signed if decimals == 0 else signed / scale


def _exact(value: int | float) -> Fraction:
    # str() first: Fraction(0.1) is the binary approximation, Fraction("0.1") is one tenth.
    return Fraction(value) if isinstance(value, int) else Fraction(str(value))


# ---------------------------------------------------------------------------------------------
# Generic kinds


def _numeric(rule: ScoreRule, value: Any) -> Fraction:
    """The number an answer counts for, after the rule's value_map."""
    if rule.value_map is not None and str(value).lower() in _lower_keys(rule.value_map):
        return _exact(_lower_keys(rule.value_map)[str(value).lower()])
    # yes_no answers count 1 / 0 unless mapped; the loader refused any other non-number.
    return _exact(int(value))


def _lower_keys(value_map: Mapping[str, float]) -> dict[str, float]:
    # JSON keys are strings; "true"/"True" both name a yes_no answer.
    return {key.lower(): value for key, value in value_map.items()}


def _required_count(rule: ScoreRule, default: int) -> int:
    if rule.min_answered is None:
        return default
    if isinstance(rule.min_answered, float):
        return max(1, math.ceil(_exact(rule.min_answered) * len(rule.items)))
    return rule.min_answered


def _score_sum(_: Instrument, rule: ScoreRule, answers: Mapping[str, Any]) -> dict[str, Score]:
    values = [_numeric(rule, answers[i]) for i in rule.items if i in answers]
    total_items = len(rule.items)
    if rule.missing != "prorate":
        if len(values) < total_items:
            return {rule.name: None}
        return {rule.name: round_half_up(sum(values, Fraction(0)), rule.decimals or 0)}
    if len(values) < _required_count(rule, default=math.ceil(total_items / 2)):
        return {rule.name: None}
    # Prorating = imputing each missing item with the person's mean of the answered items.
    prorated = sum(values, Fraction(0)) * total_items / len(values)
    return {rule.name: round_half_up(prorated, rule.decimals or 0)}


def _score_mean(_: Instrument, rule: ScoreRule, answers: Mapping[str, Any]) -> dict[str, Score]:
    values = [_numeric(rule, answers[i]) for i in rule.items if i in answers]
    if not values or len(values) < _required_count(rule, default=1):
        return {rule.name: None}
    decimals = MEAN_DECIMALS if rule.decimals is None else rule.decimals
    return {rule.name: round_half_up(sum(values, Fraction(0)) / len(values), decimals)}


# ---------------------------------------------------------------------------------------------
# Named scorers (published algorithms, implemented from their public scoring rules)


def _score_haq_di(
    instrument: Instrument, rule: ScoreRule, answers: Mapping[str, Any]
) -> dict[str, Score]:
    """HAQ-DI: category = worst item; aids/help raise 0–1 to 2; index = mean of ≥ 6 categories."""
    aided = _haq_aided_categories(instrument.items, answers)
    categories: dict[str, Score] = {}
    for category in HAQ_CATEGORIES:
        values = [
            answers[item.id]
            for item in instrument.items
            if item.category == category and item.id in answers
        ]
        if not values:
            # An aid without any answered item does not make a category score.
            categories[category] = None
            continue
        worst = max(values)
        categories[category] = max(worst, 2) if category in aided else worst
    given = [value for value in categories.values() if value is not None]
    index: Score = None
    if len(given) >= HAQ_MIN_CATEGORIES:
        index = round_half_up(Fraction(sum(given), len(given)), HAQ_DECIMALS)  # type: ignore[arg-type]
    results: dict[str, Score] = {rule.name: index}
    results.update({f"{rule.name}.{category}": categories[category] for category in HAQ_CATEGORIES})
    return results


def _haq_aided_categories(items: tuple[Item, ...], answers: Mapping[str, Any]) -> set[str]:
    """Categories for which an aid, a device or help from another person is reported."""
    aided: set[str] = set()
    for item in items:
        answer = answers.get(item.id)
        if item.type == "yes_no" and answer is True:
            aided.update(item.aid_for)
        if item.type == "multiple_choice" and isinstance(answer, list):
            chosen = [o for o in item.options if o.value in answer]
            for option in chosen:
                aided.update(option.aid_for)
            # The item-level list applies to any real choice, not to "none of these".
            if any(option.value not in item.exclusive for option in chosen):
                aided.update(item.aid_for)
    return aided


def _score_shaq_vas(_: Instrument, rule: ScoreRule, answers: Mapping[str, Any]) -> dict[str, Score]:
    """SHAQ visual analogue scales: 0–100 becomes 0–3 (value × 3 / 100, 2 decimals)."""
    results: dict[str, Score] = {}
    for item_id in rule.items:
        value = answers.get(item_id)
        converted = None if value is None else round_half_up(_exact(value) * 3 / 100, SHAQ_DECIMALS)
        results[f"{rule.name}.{item_id}"] = converted
    return results


_SCORERS = {
    "sum": _score_sum,
    "mean": _score_mean,
    "haq_di": _score_haq_di,
    "shaq_vas": _score_shaq_vas,
}
