"""Loading instruments: files read and recognised (our JSON format or a FHIR R4 Questionnaire),
then validated; at start-up the shipped instruments plus the trial's own (PORTAL_INSTRUMENTS_DIR).

A mistake in any file, a duplicate id or an instrument the protocol names but nobody loaded
stops start-up with one line naming the file and the problem.
"""

from __future__ import annotations

import json
from pathlib import Path

from flask import Flask, current_app

from patient_portal.config import ConfigError
from patient_portal.questionnaires.fhir import instrument_from_fhir
from patient_portal.questionnaires.instrument import Instrument, InstrumentError, parse_instrument

SHIPPED_DIR = Path(__file__).with_name("instruments")


def load_instrument(path: str | Path) -> Instrument:
    """Load and validate one instrument file: our JSON format or a FHIR R4 Questionnaire."""
    path = Path(path)
    source = path.name
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        raise InstrumentError(source, f"cannot be read: {error}") from error
    try:
        data = json.loads(text)
    except json.JSONDecodeError as error:
        problem = f"not valid JSON: line {error.lineno} column {error.colno}: {error.msg}"
        raise InstrumentError(source, problem) from error
    if isinstance(data, dict) and data.get("resourceType") == "Questionnaire":
        return instrument_from_fhir(data, source)
    return parse_instrument(data, source)


def load_instruments(directory: str | Path) -> dict[str, Instrument]:
    """Load every *.json file of a directory, keyed by instrument id; ids must be unique."""
    instruments: dict[str, Instrument] = {}
    for path in sorted(Path(directory).glob("*.json")):
        instrument = load_instrument(path)
        if instrument.id in instruments:
            other = instruments[instrument.id].source
            problem = f"instrument id '{instrument.id}' is already used by {other}"
            raise InstrumentError(path.name, problem)
        instruments[instrument.id] = instrument
    return instruments


def load_all(extra_dir: str | Path | None) -> dict[str, Instrument]:
    """The shipped instruments, then those of `extra_dir`; an id may not appear twice."""
    instruments = load_instruments(SHIPPED_DIR)
    if extra_dir:
        directory = Path(extra_dir)
        if not directory.is_dir():
            raise InstrumentError(str(directory), "PORTAL_INSTRUMENTS_DIR is not a directory")
        for instrument_id, instrument in load_instruments(directory).items():
            if instrument_id in instruments:
                problem = f"instrument id '{instrument_id}' is already used by a shipped instrument"
                raise InstrumentError(instrument.source, problem)
            instruments[instrument_id] = instrument
    return instruments


def get_instruments() -> dict[str, Instrument]:
    """The instruments loaded for the running app, by id."""
    return current_app.extensions["instruments"]


def get_instrument(instrument_id: str) -> Instrument:
    """One loaded instrument; KeyError if it is not loaded."""
    return get_instruments()[instrument_id]


def init_app(app: Flask) -> None:
    protocol = app.extensions["protocol"]
    try:
        instruments = load_all(app.config.get("PORTAL_INSTRUMENTS_DIR"))
    except InstrumentError as error:
        raise ConfigError(f"instruments: {error}") from None
    named = [(v.code, i) for v in protocol.visits for i in v.questionnaires]
    named += [(s.code, s.instrument) for s in protocol.series]
    for where, instrument_id in named:
        if instrument_id not in instruments:
            raise ConfigError(
                f"protocol: {where} names instrument '{instrument_id}', which is not loaded "
                "(shipped, or in PORTAL_INSTRUMENTS_DIR)"
            )
    app.extensions["instruments"] = instruments
