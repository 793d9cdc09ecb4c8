"""The two reference apps every portal figure is divided by, served like the portal.

    gunicorn bench.reference:text   a bare Flask view returning a short text
    gunicorn bench.reference:page   a bare Flask view running one `SELECT 1` through SQLAlchemy
                                    (a pooled engine on the same database) and rendering a small
                                    Jinja template

Same gunicorn settings, same database, same machine, same run: the ratio of a portal page to
`page` is what the portal's own work costs, whatever the machine.
"""

from __future__ import annotations

import os

import sqlalchemy as sa
from flask import Flask, render_template_string

TEMPLATE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{{ title }}</title></head>
<body><main><h1>{{ title }}</h1><p>The database answered {{ value }}.</p>
<ul>{% for item in items %}<li>{{ item }}</li>{% endfor %}</ul></main></body></html>"""


def _database_url() -> str:
    url = os.environ.get("DATABASE_URL", "sqlite://")
    for prefix in ("postgres://", "postgresql://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url.removeprefix(prefix)
    return url


text = Flask("reference_text")


@text.get("/")
def say_ok() -> str:
    return "ok"


page = Flask("reference_page")
engine = sa.create_engine(_database_url())


@page.get("/")
def one_query_page() -> str:
    with engine.connect() as connection:
        value = connection.execute(sa.text("SELECT 1")).scalar()
    return render_template_string(
        TEMPLATE, title="Reference", value=value, items=["one", "two", "three"]
    )
