"""The protocol file: the CARE-SSc defaults load, and a bad file names file, field and problem."""

from __future__ import annotations

import copy
import json

import pytest

from patient_portal import create_app
from patient_portal.protocol.services import (
    DEFAULT_PROTOCOL_FILE,
    ProtocolError,
    load_protocol,
    parse_protocol,
    placeholder_lines,
)

RAW = json.loads(DEFAULT_PROTOCOL_FILE.read_text())


def test_care_ssc_defaults():
    protocol = load_protocol(DEFAULT_PROTOCOL_FILE)
    assert {code: site.timezone for code, site in protocol.sites.items()} == {
        "JGH": "America/Toronto",
        "CHUM": "America/Toronto",
        "SLS": "Europe/Paris",
    }
    assert protocol.sites["SLS"].formatting_locale("fr") == "fr_FR"
    windows = {
        v.code: (v.day - v.window_before, v.day, v.day + v.window_after) for v in protocol.visits
    }
    assert windows["SCREENING"] == (-21, -21, -1)
    assert windows["M1"] == (21, 28, 35)
    assert windows["M3"] == (84, 91, 98)
    assert windows["M6"] == (168, 182, 196)
    assert windows["M12"] == (351, 365, 379)
    assert [v.code for v in protocol.visits if v.is_infusion] == ["M0", "M3"]
    # Safety between visits: the diary after both infusions, reports, targets, working hours.
    [diary] = protocol.visit_series
    assert (diary.after_visits, diary.days, diary.open_hour) == (("M0", "M3"), 7, 6)
    assert protocol.series_codes() == ["WEEKLY", "DIARY_M0", "DIARY_M3", "REPORT"]
    assert protocol.alert_targets["urgent"].minutes(protocol.sites["JGH"].working_hours) == 240
    assert protocol.alert_targets["routine"].minutes(protocol.sites["SLS"].working_hours) == 960
    assert all(site.emergency_number for site in protocol.sites.values())


def _broken(change) -> dict:
    raw = copy.deepcopy(RAW)
    change(raw)
    return raw


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (
            lambda r: r["sites"][2].update(timezone="Europe/Pariss"),
            "sites[2].timezone: 'Europe/Pariss' is not a known time zone",
        ),
        (lambda r: r["visits"][1].pop("day"), "visits[1].day: is missing"),
        (lambda r: r["visits"][2].update(day="28"), "visits[2].day: must be a whole number"),
        (lambda r: r["visits"][3]["name"].update(fr=""), "visits[3].name.fr: must not be empty"),
        (lambda r: r["visits"][2].update(kind="party"), "visits[2].kind: 'party' is not one of"),
        (lambda r: r["sites"].append(copy.deepcopy(r["sites"][0])), "sites: duplicate code 'JGH'"),
        (lambda r: r["visits"].reverse(), "visits: must be listed in order of their day"),
        (
            lambda r: r["visit_series"][0].update(after_visits=["M5"]),
            "visit_series[0].after_visits: must list visit codes of this protocol",
        ),
        (
            lambda r: r["visit_series"][0].update(open_hour=24),
            "visit_series[0].open_hour: must be an hour from 0 to 23",
        ),
        (
            lambda r: r["unscheduled"].update(code="WEEKLY"),
            "series: duplicate series code 'WEEKLY'",
        ),
        (
            lambda r: r["alert_targets"].update(soon={"working_hours": 1}),
            "alert_targets.soon: is not one of urgent, routine",
        ),
        (
            lambda r: r["alert_targets"].update(urgent={"hours": 4}),
            "alert_targets.urgent: must give one of working_hours or working_days",
        ),
        (
            lambda r: r["sites"][0]["working_hours"].update(start="17:00"),
            "sites[0].working_hours: end must come after start",
        ),
        (
            lambda r: r["sites"][1]["working_hours"].update(days=[0, 1]),
            "sites[1].working_hours.days: must list ISO weekdays",
        ),
        (
            lambda r: r["sites"][0]["study_team"].update(placeholder="yes"),
            "sites[0].study_team.placeholder: must be true or false",
        ),
        (
            lambda r: r["sites"][2]["study_team"]["after_hours"].pop("fr"),
            "sites[2].study_team.after_hours.fr: is missing",
        ),
        (
            lambda r: r["visit_kinds"].update(party=r["visit_kinds"]["safety"]),
            "visit_kinds.party: is not one of",
        ),
        (
            lambda r: r["visit_kinds"]["infusion"].pop("bring"),
            "visit_kinds.infusion.bring: is missing",
        ),
    ],
)
def test_a_bad_protocol_names_file_field_and_problem(change, message):
    with pytest.raises(ProtocolError) as error:
        parse_protocol(_broken(change), "care_ssc.json")
    assert str(error.value).startswith("care_ssc.json: ")
    assert message in str(error.value)


def test_a_bad_protocol_file_stops_start_up(tmp_path, capsys):
    bad = tmp_path / "protocol.json"
    bad.write_text(json.dumps(_broken(lambda r: r["sites"][0].update(country="US"))))
    with pytest.raises(SystemExit):
        create_app({"PORTAL_PROTOCOL_FILE": str(bad)})
    assert "protocol.json: sites[0].country: 'US' is not one of CA, FR" in capsys.readouterr().err


def test_shipped_study_team_lines_are_marked_as_placeholders():
    """The shipped lines are fictional numbers (555-01xx, 01 99 00): a deployment must replace
    them, and pages and start-up say so meanwhile."""
    protocol = parse_protocol(copy.deepcopy(RAW), "care_ssc.json")
    assert placeholder_lines(protocol) == ["JGH", "CHUM", "SLS"]
    assert protocol.sites["JGH"].team_phone == "+1 514-555-0100"
    assert protocol.sites["SLS"].team_phone == "+33 1 99 00 12 34"
    assert set(protocol.visit_kinds) == {
        "screening",
        "infusion",
        "safety",
        "follow_up",
        "end_of_study",
    }
    real = _broken(lambda r: [site["study_team"].pop("placeholder") for site in r["sites"]])
    assert placeholder_lines(parse_protocol(real, "care_ssc.json")) == []
    # A site without a study-team entry falls back on its switchboard.
    bare = _broken(lambda r: r["sites"][0].pop("study_team"))
    assert parse_protocol(bare, "care_ssc.json").sites["JGH"].team_phone == "+1 514-340-8222"


def test_start_up_warns_of_placeholder_lines(make_app, settings, caplog):
    make_app(settings)
    assert "the study-team line of JGH, CHUM, SLS is a placeholder" in caplog.text
