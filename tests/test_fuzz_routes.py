"""Every route of `app.url_map`, fuzzed: hostile path parameters (huge integers, NUL, CR/LF,
lone surrogates, overlong text) and hostile values in every form field or query argument the
endpoint's code reads, or a hostile JSON body, sent as an anonymous visitor, a participant, a
coordinator and an admin. No answer may be a 5xx (docs/input-bounds.md).

The rules come from the app and the fields from the source of the view's module (and of the
portal modules it imports), so a new route or field is fuzzed without editing this file.
`PORTAL_FUZZ_EXAMPLES` sets the examples Hypothesis draws per route, beside the explicit ones
(each sent as the four identities); the number of requests sent is printed at the end of the run.
"""

from __future__ import annotations

import functools
import importlib
import inspect
import json
import os
import re
from collections import Counter
from collections.abc import Iterator
from urllib.parse import quote, urlencode

import pytest
from flask import Flask
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from werkzeug.routing import Rule

from patient_portal import create_app
from patient_portal.extensions import db, limiter
from tests.conftest import csrf_token_for
from tests.route_world import PARAMETER, World, build_path, build_world, realistic_value, routes

EXAMPLES = int(os.environ.get("PORTAL_FUZZ_EXAMPLES", "6"))
SENT: Counter[str] = Counter()

# The text any field or segment may receive: the inputs that once answered 500, and their kin.
HOSTILE_TEXT = [
    "",
    "\x00",
    "JGH-001\x00",
    "a\r\nSet-Cookie: x=1",
    "\r\n",
    "\ud800",
    "x" * 5000,
    "²",
    "٣",
    "9" * 30,
    str(2**63),
    str(2**31),
    "-1",
    "0",
    "../../etc/passwd",
    "%00",
    "<script>alert(1)</script>",
    "' OR 1=1 --",
    "\u202e\u200b",
    "𝔘𝔫𝔦𝔠𝔬𝔡𝔢",
]
# Plausible values for fields the portal reads, so that the hostile ones reach further in.
PLAUSIBLE = {
    "date": ["2026-12-01", "0001-01-01", "9999-12-31", "1900-01-01", "2039-01-20"],
    "day0": ["2026-12-01", "0001-01-01", "9999-12-31", "2030-01-01"],
    "time": ["10:00", "23:00", "02:30", "24:00"],
    "from": ["2026-01-01", "0001-01-01", "1900-12-31", "2038-01-20", "9999-12-31"],
    "to": ["2026-12-31", "0001-01-01", "2039-01-01", "9999-12-31"],
    "page": ["1", "²", "100000", "100001", "99999999999999999999"],
    "next": ["/home", "//evil.example", "https://evil.example/", "/\r\nX: y", "/\\evil"],
    "language": ["en", "fr"],
    "status": ["completed", "missed", "cancelled"],
    "role": ["coordinator", "admin"],
    "sites": ["JGH", "CHUM", "SLS"],
    "site": ["JGH", "CHUM", "SLS"],
    "active": ["yes", "no"],
    "confirm": ["yes"],
    "remove": ["yes"],
    "quiet": ["on"],
    "quiet_start": ["22", "25", "-1"],
    "quiet_end": ["7", "x"],
    "email": ["someone@example.org", "a" * 70 + "@example.org"],
    "visit": ["M1", "weekly"],
    "state": ["open", "completed"],
    "value": ["1", "yes", "2026-11-01"],
}
FIELD = re.compile(
    r"""(?:form|args|values)\.(?:get|getlist)\(\s*"([^"]+)"|args\[\s*"([^"]+)"\s*\]"""
)
PORTAL_IMPORT = re.compile(r"^from (patient_portal[\w.]*) import", re.MULTILINE)

DEEP_JSON = "[" * 5000 + "]" * 5000
JSON_BODIES = [
    DEEP_JSON,
    '{"a":' * 3000 + "1" + "}" * 3000,
    '{"endpoint": "\\ud800"}',
    '{"endpoint": "https://push.example.org/\\u0000", "keys": {"p256dh": "\\ud800"}}',
    b'{"endpoint": "\xff\xfe"}',
    '{"id": "\\ud800", "rawId": "\\udfff", "response": {}}',
    "null",
    "not json",
]
JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=10), children, max_size=3)
    ),
    max_leaves=10,
)


def _rules() -> list[tuple[str, str]]:
    """(method, rule) of every route, from an app made only to read its URL map."""
    app = create_app({"TESTING": True, "SQLALCHEMY_DATABASE_URI": "sqlite://"})
    return [(method, rule.rule) for method, rule in routes(app)]


ROUTES = _rules()


@functools.cache
def _source(module_name: str) -> str:
    return inspect.getsource(importlib.import_module(module_name))


def fields_read_by(app: Flask, rule: Rule) -> list[str]:
    """Every form field or query argument named in the view's module or in the portal modules
    it imports (the dashboard's filters are read in staff/filters.py)."""
    view = inspect.unwrap(app.view_functions[rule.endpoint])
    module = view.__module__
    sources = [_source(module)]
    for imported in PORTAL_IMPORT.findall(sources[0]):
        try:
            sources.append(_source(imported))
        except (ImportError, OSError, TypeError):
            continue  # a name imported from a package, not a module of its own
    names = {a or b for source in sources for a, b in FIELD.findall(source)}
    return sorted(names - {"csrf_token"})


def _segment(value: str) -> str:
    return quote(value.encode("utf-8", "surrogatepass"), safe="")


def path_strategy(rule: Rule, values: dict[str, str]) -> st.SearchStrategy[dict[str, str]]:
    """Each path parameter: the world's value, a hostile text, any text, or (ids) any integer."""
    strategies = {}
    for match in PARAMETER.finditer(rule.rule):
        name = match.group("name")
        options = [
            st.just(realistic_value(rule, name, values)),
            st.sampled_from(HOSTILE_TEXT),
            st.text(min_size=1, max_size=30),
        ]
        if match.group("converter") in ("id", "int"):
            options.append(st.integers(min_value=-(2**70), max_value=2**70).map(str))
        strategies[name] = st.one_of(*options).map(_segment)
    return st.fixed_dictionaries(strategies)


def form_strategy(fields: list[str]) -> st.SearchStrategy[dict[str, list[str]]]:
    def field(name: str) -> st.SearchStrategy[list[str]]:
        text = st.one_of(
            st.sampled_from(PLAUSIBLE.get(name, ["x"])),
            st.sampled_from(HOSTILE_TEXT),
            st.text(max_size=60),
        )
        return st.lists(text, min_size=1, max_size=2)

    return st.fixed_dictionaries({}, optional={name: field(name) for name in fields})


def body_strategy(fields: list[str]):
    """("form", fields) or ("json", raw body)."""
    return st.one_of(
        form_strategy(fields).map(lambda form: ("form", form)),
        st.sampled_from(JSON_BODIES).map(lambda body: ("json", body)),
        JSON_VALUES.map(lambda value: ("json", json.dumps(value))),
    )


@pytest.fixture(scope="module", autouse=True)
def report_count(request: pytest.FixtureRequest) -> Iterator[None]:
    yield
    capture = request.config.pluginmanager.get_plugin("capturemanager")
    if capture is not None and SENT:
        engine = os.environ.get("DATABASE_URL", "").split(":", 1)[0] or "sqlite"
        with capture.global_and_fixture_disabled():
            print(
                f"\nroute fuzzing on {engine}: {sum(SENT.values())} requests"
                f" over {len(SENT)} routes"
            )


@pytest.fixture
def world(app, make_participant, make_staff) -> World:
    return build_world(make_participant, make_staff)


@pytest.fixture
def clients(app, world: World, sign_in, monkeypatch) -> dict:
    """One client per identity, with its CSRF token; rate limits off (a 429 would hide what
    the fuzzed input does)."""
    monkeypatch.setattr(limiter, "enabled", False)
    made = {}
    for name, owner in (
        ("anonymous", None),
        ("participant", world.participant_a),
        ("coordinator", world.coordinator),
        ("admin", world.admin),
    ):
        client = app.test_client()
        if owner is not None:
            sign_in(client, owner)
        made[name] = (client, csrf_token_for(client, "/"))
    return made


def explicit_examples(rule: Rule, values: dict[str, str], fields: list[str]) -> list:
    """Tried on every route whatever Hypothesis draws: each path parameter in turn made
    hostile (a NUL or CR/LF after the real value; an id beyond 2^63), the others real, with
    every field the module reads holding a NUL; then every field holding CR/LF."""
    real = {
        match.group("name"): realistic_value(rule, match.group("name"), values)
        for match in PARAMETER.finditer(rule.rule)
    }
    quoted = {name: _segment(value) for name, value in real.items()}
    found = []
    for match in PARAMETER.finditer(rule.rule):
        name = match.group("name")
        hostile = [real[name] + "\x00", "\r\n" + real[name]]
        if match.group("converter") in ("id", "int"):
            hostile = [str(2**63), str(2**31)]
        for value in hostile:
            found.append(
                (
                    {**quoted, name: _segment(value)},
                    (
                        "form",
                        {field: ["\x00" + PLAUSIBLE.get(field, ["x"])[0]] for field in fields},
                    ),
                )
            )
    found.append((quoted, ("form", {field: ["a\r\nb"] for field in fields})))
    return found


def _encoded(form: dict[str, list[str]]) -> str:
    # As a browser sends it, byte for byte: a lone surrogate arrives as its (invalid) UTF-8.
    return urlencode(
        [(key, value) for key, values in form.items() for value in values],
        encoding="utf-8",
        errors="surrogatepass",
    )


def _send(client, token: str, method: str, path: str, body) -> int:
    kind, content = body
    if method == "GET":
        query = _encoded(content) if kind == "form" else None
        response = client.get(path, query_string=query)
    elif kind == "form":
        response = client.post(
            path,
            data=_encoded({**content, "csrf_token": [token]}),
            content_type="application/x-www-form-urlencoded",
        )
    else:
        response = client.post(
            path,
            data=content,
            headers={"X-CSRFToken": token, "Content-Type": "application/json"},
        )
    # Read to the end: a streamed export fails, if it fails, while it is read.
    response.get_data()
    response.close()
    return response.status_code


@pytest.mark.parametrize(("method", "rule_text"), ROUTES, ids=[f"{m} {r}" for m, r in ROUTES])
def test_no_route_answers_5xx_to_hostile_input(app, world, clients, method, rule_text):
    rule = next(r for r in app.url_map.iter_rules() if r.rule == rule_text)
    fields = fields_read_by(app, rule)

    @settings(
        max_examples=EXAMPLES,
        deadline=None,
        suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    )
    @given(path_values=path_strategy(rule, world.values), body=body_strategy(fields))
    def fuzz(path_values, body):
        path = build_path(rule, path_values)
        for identity, (client, token) in clients.items():
            if rule.rule.endswith("/verify"):
                # A live ceremony, so that the body is read (an unknown one is refused first).
                client.post(path.removesuffix("verify") + "options", headers={"X-CSRFToken": token})
            status = _send(client, token, method, path, body)
            SENT[f"{method} {rule.rule}"] += 1
            assert status < 500, (identity, method, path[:200], str(body)[:200], status)
            db.session.rollback()

    for path_values, body in explicit_examples(rule, world.values, fields):
        fuzz = example(path_values=path_values, body=body)(fuzz)
    fuzz()
