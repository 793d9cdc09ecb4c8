"""Scores and alerts, checked against results computed by hand (arithmetic in the comments)."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import pytest

from patient_portal.questionnaires.instrument import parse_instrument
from patient_portal.questionnaires.loader import load_instrument
from patient_portal.questionnaires.scoring import (
    SCORER_VERSIONS,
    evaluate_alerts,
    round_half_up,
    score,
    scorer_versions,
)

ROOT = Path(__file__).resolve().parents[2]
SHIPPED = ROOT / "patient_portal" / "questionnaires" / "instruments"
HAQ = load_instrument(Path(__file__).parent / "data" / "haq_shaped.json")


def t(en: str) -> dict[str, str]:
    return {"en": en, "fr": f"{en} (fr)"}


def rating(item_id: str, **extra: object) -> dict:
    return {"id": item_id, "type": "rating_0_10", "text": t(item_id), **extra}


GENERIC = parse_instrument(
    {
        "id": "generic",
        "version": "1",
        "title": t("Generic"),
        "introduction": t("Intro"),
        "licence": "test",
        "pages": [
            {
                "items": [
                    rating("i1"),
                    rating("i2"),
                    rating("i3"),
                    rating("i4"),
                    {
                        "id": "choice",
                        "type": "single_choice",
                        "text": t("choice"),
                        "options": [{"value": v, "label": t(str(v))} for v in range(1, 6)],
                    },
                    {"id": "yn", "type": "yes_no", "text": t("yn")},
                    rating("extra", enable_when=[{"item": "yn", "operator": "=", "value": True}]),
                ]
            }
        ],
        "scoring": [
            {"name": "plain_sum", "kind": "sum", "items": ["i1", "i2", "i3", "i4"]},
            {
                "name": "prorated_sum",
                "kind": "sum",
                "items": ["i1", "i2", "i3", "i4"],
                "missing": "prorate",
                "min_answered": 3,
            },
            {
                "name": "prorated_sum_1dp",
                "kind": "sum",
                "items": ["i1", "i2", "i3", "i4"],
                "missing": "prorate",
                "min_answered": 0.75,
                "decimals": 1,
            },
            {
                "name": "mean4",
                "kind": "mean",
                "items": ["i1", "i2", "i3", "i4"],
                "min_answered": 0.75,
            },
            {"name": "mean2_whole", "kind": "mean", "items": ["i1", "i2"], "decimals": 0},
            {
                "name": "recoded",
                "kind": "mean",
                "items": ["choice", "yn"],
                "value_map": {"1": 5, "2": 4, "3": 3, "4": 2, "5": 1},
            },
            {"name": "with_extra", "kind": "mean", "items": ["i1", "extra"]},
        ],
        "alerts": [
            {"id": "high_mean", "when": {"score": "mean4", "operator": ">=", "value": 5}},
            {"id": "no_mean", "when": {"score": "mean4", "operator": "exists", "value": False}},
            {"id": "i1_max", "when": {"item": "i1", "operator": "=", "value": 10}},
        ],
    },
    "generic.json",
)


# --- generic kinds


def test_plain_sum_adds_all_items():
    # 3 + 4 + 5 + 6 = 18
    assert score(GENERIC, {"i1": 3, "i2": 4, "i3": 5, "i4": 6})["plain_sum"] == 18


def test_plain_sum_is_none_when_any_item_is_missing():
    assert score(GENERIC, {"i1": 3, "i2": 4, "i3": 5})["plain_sum"] is None


def test_prorated_sum_scales_to_all_items_and_rounds_half_up():
    # (3 + 4 + 6) × 4 / 3 = 52 / 3 = 17.333… → 17 (0 decimals); 17.3 with 1 decimal
    scores = score(GENERIC, {"i1": 3, "i2": 4, "i3": 6})
    assert scores["prorated_sum"] == 17
    assert scores["prorated_sum_1dp"] == 17.3
    # (1 + 2 + 2) × 4 / 3 = 20 / 3 = 6.667 → 7
    assert score(GENERIC, {"i1": 1, "i2": 2, "i3": 2})["prorated_sum"] == 7


def test_prorated_sum_with_everything_answered_is_the_plain_sum():
    assert score(GENERIC, {"i1": 3, "i2": 4, "i3": 5, "i4": 6})["prorated_sum"] == 18


def test_prorated_sum_below_min_answered_is_none():
    # 2 answered < 3 (count); 2 answered < ceil(0.75 × 4) = 3 (fraction)
    scores = score(GENERIC, {"i1": 3, "i2": 4})
    assert scores["prorated_sum"] is None
    assert scores["prorated_sum_1dp"] is None


def test_mean_over_answered_items_to_two_decimals():
    # (3 + 4 + 6) / 3 = 4.333… → 4.33
    assert score(GENERIC, {"i1": 3, "i2": 4, "i3": 6})["mean4"] == 4.33


def test_mean_rounds_half_up_not_to_even():
    # (2 + 3) / 2 = 2.5 → 3 (round() would give 2)
    assert score(GENERIC, {"i1": 2, "i2": 3})["mean2_whole"] == 3


def test_mean_with_value_map_recodes_and_counts_yes_as_one():
    # choice 2 → 4 by the map; yes → 1; (4 + 1) / 2 = 2.5
    assert score(GENERIC, {"choice": 2, "yn": True})["recoded"] == 2.5
    # choice 5 → 1; no → 0; (1 + 0) / 2 = 0.5
    assert score(GENERIC, {"choice": 5, "yn": False})["recoded"] == 0.5


def test_score_ignores_answers_to_hidden_items():
    # extra is hidden when yn is no: mean over i1 alone = 2; shown: (2 + 10) / 2 = 6
    assert score(GENERIC, {"i1": 2, "yn": False, "extra": 10})["with_extra"] == 2
    assert score(GENERIC, {"i1": 2, "yn": True, "extra": 10})["with_extra"] == 6


def test_mean_without_answers_is_none():
    assert score(GENERIC, {})["mean4"] is None


@pytest.mark.parametrize(
    ("value", "decimals", "expected"),
    [
        (Fraction(5, 2), 0, 3),
        (Fraction(-5, 2), 0, -3),
        (Fraction(2125, 1000), 2, 2.13),
        (Fraction(10, 7), 3, 1.429),
        (Fraction(1, 3), 2, 0.33),
    ],
)
def test_round_half_up(value, decimals, expected):
    assert round_half_up(value, decimals) == expected


# --- alerts


def test_alerts_on_scores_and_items():
    answers = {"i1": 10, "i2": 4, "i3": 6}
    scores = score(GENERIC, answers)  # mean4 = 20 / 3 = 6.67
    assert evaluate_alerts(GENERIC, answers, scores) == ["high_mean", "i1_max"]
    assert evaluate_alerts(GENERIC, {}, score(GENERIC, {})) == ["no_mean"]


def test_weekly_checkin_alerts():
    weekly = load_instrument(SHIPPED / "weekly_checkin.json")
    answers = {
        "breathing": 7,
        "finger_ulcers": 6,
        "anything_new": True,
        "new_areas": ["heart_chest"],
    }
    assert evaluate_alerts(weekly, answers, {}) == ["breathing_severe", "new_breathing_or_heart"]
    # new_areas is hidden once anything_new is no: its stored answer raises nothing.
    answers = {
        "breathing": 6,
        "finger_ulcers": 7,
        "anything_new": False,
        "new_areas": ["breathing"],
    }
    assert evaluate_alerts(weekly, answers, {}) == ["finger_ulcers_severe"]


# --- HAQ-DI

# Category (items) → answers → category score = highest item
BASE_HAQ = {
    "c1_a": 1, "c1_b": 2,  # dressing_grooming → 2
    "c2_a": 0, "c2_b": 0,  # arising → 0
    "c3_a": 1,             # eating → 1
    "c4_a": 3, "c4_b": 1,  # walking → 3
    "c5_a": 0, "c5_b": 1,  # hygiene → 1
    "c6_a": 2,             # reach → 2
    "c7_a": 1, "c7_b": 1,  # grip → 1
    "c8_a": 0,             # activities → 0
}  # fmt: skip


def test_haq_di_index_is_the_mean_of_the_eight_category_maxima():
    # (2 + 0 + 1 + 3 + 1 + 2 + 1 + 0) / 8 = 10 / 8 = 1.25
    scores = score(HAQ, BASE_HAQ)
    assert scores["haq"] == 1.25
    assert scores["haq.dressing_grooming"] == 2
    assert scores["haq.walking"] == 3


def test_haq_di_aids_raise_zero_or_one_to_two_and_leave_higher_scores():
    # device_2_4 → arising 0 → 2, walking 3 stays 3; help_grip → grip 1 → 2
    # (2 + 2 + 1 + 3 + 1 + 2 + 2 + 0) / 8 = 13 / 8 = 1.625
    answers = {**BASE_HAQ, "aids": ["device_2_4"], "help_grip": True}
    scores = score(HAQ, answers)
    assert scores["haq"] == 1.625
    assert (scores["haq.arising"], scores["haq.walking"], scores["haq.grip"]) == (2, 3, 2)


def test_haq_di_aid_for_a_category_scored_two_keeps_two():
    # device_1 → dressing_grooming already 2: unchanged, index stays 10 / 8 = 1.25
    assert score(HAQ, {**BASE_HAQ, "aids": ["device_1"]})["haq"] == 1.25


def test_haq_di_none_of_these_aids_changes_nothing():
    assert score(HAQ, {**BASE_HAQ, "aids": ["none"], "help_grip": False})["haq"] == 1.25


def test_haq_di_with_six_categories():
    # Without walking (c4) and activities (c8):
    # (2 + 0 + 1 + 1 + 2 + 1) / 6 = 7 / 6 = 1.1666… → 1.167
    answers = {k: v for k, v in BASE_HAQ.items() if not k.startswith(("c4", "c8"))}
    scores = score(HAQ, answers)
    assert scores["haq"] == 1.167
    assert scores["haq.walking"] is None


def test_haq_di_with_seven_categories():
    # Without activities (c8): (2 + 0 + 1 + 3 + 1 + 2 + 1) / 7 = 10 / 7 = 1.42857… → 1.429
    answers = {k: v for k, v in BASE_HAQ.items() if not k.startswith("c8")}
    assert score(HAQ, answers)["haq"] == 1.429


def test_haq_di_with_five_categories_is_none():
    answers = {k: v for k, v in BASE_HAQ.items() if not k.startswith(("c2", "c4", "c8"))}
    # An aid for arising does not give arising a score: still 5 categories.
    scores = score(HAQ, {**answers, "aids": ["device_2_4"]})
    assert scores["haq"] is None
    assert scores["haq.arising"] is None
    assert scores["haq.dressing_grooming"] == 2


def test_haq_alert_on_the_index():
    answers = {k: 3 for k in BASE_HAQ}  # every category 3: index 3
    scores = score(HAQ, answers)
    assert scores["haq"] == 3
    assert evaluate_alerts(HAQ, answers, scores) == ["haq_high"]


@pytest.mark.parametrize(
    ("vas", "expected"),
    # value × 3 / 100: 50 → 1.5; 33 → 0.99; 67 → 2.01; 1 → 0.03; 100 → 3; 0 → 0
    [(50, 1.5), (33, 0.99), (67, 2.01), (1, 0.03), (100, 3), (0, 0)],
)
def test_shaq_vas_converts_0_100_to_0_3(vas, expected):
    assert score(HAQ, {"pain_vas": vas})["shaq.pain_vas"] == expected


def test_shaq_vas_unanswered_is_none():
    assert score(HAQ, {})["shaq.pain_vas"] is None


# --- shipped instruments


def test_daily_life_hands_sum_and_mean():
    instrument = load_instrument(SHIPPED / "daily_life_hands.json")
    ids = [item.id for item in instrument.items]
    answers = dict(zip(ids, [0, 1, 2, 3, 4, 0, 1, 2], strict=True))
    # sum 13; mean 13 / 8 = 1.625 → 1.63
    assert score(instrument, answers) == {"hands_sum": 13, "hands_mean": 1.63}
    # without the last item (2): sum 11 × 8 / 7 = 12.571… → 13; mean 11 / 7 = 1.571… → 1.57
    del answers[ids[-1]]
    assert score(instrument, answers) == {"hands_sum": 13, "hands_mean": 1.57}
    # 5 answered < 6 required
    del answers[ids[-2]], answers[ids[-3]]
    assert score(instrument, answers) == {"hands_sum": None, "hands_mean": None}


def test_quality_of_life_mean_needs_four_answers():
    instrument = load_instrument(SHIPPED / "quality_of_life.json")
    ids = [item.id for item in instrument.items]
    # (4 + 3 + 5 + 2) / 4 = 3.5
    assert score(instrument, dict(zip(ids[:4], [4, 3, 5, 2], strict=True))) == {"qol_mean": 3.5}
    assert score(instrument, dict(zip(ids[:3], [4, 3, 5], strict=True))) == {"qol_mean": None}


def test_patient_global_score_is_the_rating():
    instrument = load_instrument(SHIPPED / "patient_global.json")
    assert score(instrument, {"global": 4}) == {"patient_global": 4}


def test_scorer_versions_cover_every_kind_and_name_each_rule():
    assert set(SCORER_VERSIONS) == {"sum", "mean", "haq_di", "shaq_vas"}
    assert scorer_versions(HAQ) == {"haq": "haq_di 1.0", "shaq": "shaq_vas 1.0"}
