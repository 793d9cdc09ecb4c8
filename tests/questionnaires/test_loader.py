"""Instruments loaded at start-up: the shipped ones, the trial's directory, one-line failures."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

DATA = Path(__file__).parent / "data"


def test_trial_directory_adds_licensed_instruments(make_app, settings, tmp_path):
    shutil.copy(DATA / "haq_shaped.json", tmp_path)
    shutil.copy(DATA / "fhir_questionnaire.json", tmp_path)
    app = make_app({**settings, "PORTAL_INSTRUMENTS_DIR": str(tmp_path)})
    loaded = app.extensions["instruments"]
    assert {"weekly_checkin", "patient_global"} <= set(loaded)
    assert len(loaded) == 8


@pytest.mark.parametrize(
    ("files", "expected"),
    [
        (["broken_condition_range.json"], "broken_condition_range.json: item"),
        (["broken_not_json.json"], "broken_not_json.json: not valid JSON"),
    ],
)
def test_a_broken_file_stops_start_up_with_one_line(
    make_app, settings, tmp_path, capsys, files, expected
):
    for name in files:
        shutil.copy(DATA / name, tmp_path)
    with pytest.raises(SystemExit) as stop:
        make_app({**settings, "PORTAL_INSTRUMENTS_DIR": str(tmp_path)})
    assert stop.value.code == 2
    message = capsys.readouterr().err.strip()
    assert message.startswith("CARE-SSc portal cannot start: instruments: ")
    assert expected in message and "\n" not in message


def test_a_shipped_id_cannot_be_replaced(make_app, settings, tmp_path):
    shipped = Path(__file__).parents[2] / "patient_portal/questionnaires/instruments"
    shutil.copy(shipped / "weekly_checkin.json", tmp_path / "mine.json")
    with pytest.raises(SystemExit):
        make_app({**settings, "PORTAL_INSTRUMENTS_DIR": str(tmp_path)})


def test_the_protocol_may_only_name_loaded_instruments(make_app, settings, tmp_path, capsys):
    protocol_file = Path(__file__).parents[2] / "patient_portal/protocol/care_ssc.json"
    protocol = json.loads(protocol_file.read_text())
    protocol["series"][0]["instrument"] = "haq_licensed"
    path = tmp_path / "protocol.json"
    path.write_text(json.dumps(protocol))
    with pytest.raises(SystemExit):
        make_app({**settings, "PORTAL_PROTOCOL_FILE": str(path)})
    assert "WEEKLY names instrument 'haq_licensed', which is not loaded" in capsys.readouterr().err
