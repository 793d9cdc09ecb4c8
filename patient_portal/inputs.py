"""What the portal accepts from a request before any view or database sees it: the bounds of
docs/input-bounds.md, each enforced in one place.

- Database ids in a path (`<id:assignment_id>`) are 1..2^31−1, PostgreSQL's `integer`: beyond
  it no row can exist, so the route does not match (404), on either engine.
- Any other path segment is at most 1,000 characters with no control character (NUL, CR, LF...):
  PostgreSQL refuses NUL in a string, and no study ID, visit code or token has one (404).
- No form field or query argument may hold NUL (PostgreSQL cannot store it): a translated 422
  (400 for a query argument), before the view runs.
- JSON bodies are read by `json_body` / `json_text`: strict UTF-8, nested at most
  `JSON_MAX_DEPTH` deep, no NUL or lone surrogate in any string.
"""

from __future__ import annotations

import json
from typing import Any

from flask import Flask, request
from flask_babel import gettext as _
from werkzeug.routing import BaseConverter, UnicodeConverter, ValidationError

from patient_portal.errors import PortalError, handle_portal_error

# PostgreSQL's `integer`, the narrower of the two engines (SQLite's is 2^63−1).
ID_MAX = 2**31 - 1
SEGMENT_MAX = 1000
JSON_MAX_DEPTH = 16
NUL = "\x00"


def has_control_character(text: str) -> bool:
    """C0 controls (NUL, CR, LF, TAB...), DEL and the C1 controls: never in a path or a URL."""
    return any(ord(char) < 0x20 or 0x7F <= ord(char) < 0xA0 for char in text)


class IdConverter(BaseConverter):
    """`<id:name>`: a database id, 1..ID_MAX; anything else is no such record (404)."""

    regex = r"[0-9]{1,10}"
    weight = 50
    part_isolating = True

    def to_python(self, value: str) -> int:
        number = int(value)
        if not 1 <= number <= ID_MAX:
            raise ValidationError()
        return number

    def to_url(self, value: Any) -> str:
        return str(int(value))


class SegmentConverter(UnicodeConverter):
    """The default `<name>` converter: a bounded path segment without control characters."""

    def __init__(self, map, minlength: int = 1, maxlength: int = SEGMENT_MAX, length=None):
        super().__init__(map, minlength=minlength, maxlength=maxlength, length=length)

    def to_python(self, value: str) -> str:
        if has_control_character(value):
            raise ValidationError()
        return value


def _refuse_nul():
    """A NUL in a form field or query argument: refused with the message, before any view."""
    for source, status in ((request.args, 400), (request.form, 422)):
        for key, values in source.lists():
            if NUL in key or any(NUL in value for value in values):
                return handle_portal_error(
                    PortalError(
                        _(
                            "What you sent contains an invisible character that cannot be "
                            "saved. Please retype it and try again."
                        ),
                        status,
                    )
                )
    return None


def _depth_within(text: str, limit: int) -> bool:
    """Whether JSON text nests arrays and objects at most `limit` deep (read without recursion,
    so that a hostile body cannot exhaust the parser's stack)."""
    depth = 0
    in_string = escaped = False
    for char in text:
        if in_string:
            if escaped:
                escaped = False
            elif char == "\\":
                escaped = True
            elif char == '"':
                in_string = False
        elif char == '"':
            in_string = True
        elif char in "[{":
            depth += 1
            if depth > limit:
                return False
        elif char in "]}":
            depth -= 1
    return True


def _clean_strings(value: Any) -> bool:
    """No NUL and no lone surrogate (a `\\ud800` escape) in any key or string of the value."""
    pending = [value]
    while pending:
        item = pending.pop()
        if isinstance(item, dict):
            pending.extend(item.keys())
            pending.extend(item.values())
        elif isinstance(item, list):
            pending.extend(item)
        elif isinstance(item, str):
            if NUL in item:
                return False
            try:
                item.encode("utf-8")
            except UnicodeEncodeError:
                return False
    return True


def _read_json(max_depth: int) -> tuple[str, Any] | None:
    try:
        text = request.get_data(cache=True).decode("utf-8")
    except UnicodeDecodeError:
        return None
    if not text or not _depth_within(text, max_depth):
        return None
    try:
        value = json.loads(text)
    except ValueError:
        return None
    if not _clean_strings(value):
        return None
    return text, value


def json_body(max_depth: int = JSON_MAX_DEPTH) -> Any:
    """The request's JSON value, or None when it is not JSON the portal can use (malformed,
    not UTF-8, too deeply nested, NUL or a lone surrogate in a string): the caller refuses None
    with its own message, as for any unusable body."""
    read = _read_json(max_depth)
    return read[1] if read else None


def json_text(max_depth: int = JSON_MAX_DEPTH) -> str:
    """The request's JSON body as text, checked as `json_body` does; "" when unusable (for
    callers that parse it themselves, such as py_webauthn's credential parsers)."""
    read = _read_json(max_depth)
    return read[0] if read else ""


def init_app(app: Flask) -> None:
    """Before any blueprint is registered: the rules are compiled with these converters."""
    app.url_map.converters["id"] = IdConverter
    app.url_map.converters["default"] = SegmentConverter
    app.url_map.converters["string"] = SegmentConverter
    app.before_request(_refuse_nul)
