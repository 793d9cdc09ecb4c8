"""CARE-SSc participant portal."""

from __future__ import annotations

import sys
from pathlib import Path

import sqlalchemy as sa
from flask import Flask

from patient_portal.config import ConfigError, load_settings
from patient_portal.db import ping_connections_idle_for, set_sqlite_pragmas
from patient_portal.protocol.services import ProtocolError


def create_app(test_config: dict | None = None) -> Flask:
    """Build the app: defaults, then the environment, then the test dictionary."""
    app = Flask(__name__, instance_relative_config=True, static_folder=None)
    try:
        app.config.from_mapping(load_settings(Path(app.instance_path)))
        if test_config:
            app.config.from_mapping(test_config)
        _init_extensions(app)
    except (ConfigError, ProtocolError) as error:
        # One clear line instead of a traceback: the operator has a setting or file to fix.
        print(f"CARE-SSc portal cannot start: {error}", file=sys.stderr)
        raise SystemExit(2) from None
    return app


def _init_extensions(app: Flask) -> None:
    from patient_portal import (
        assets,
        audit,
        demo,
        errors,
        form_keys,
        grants,
        i18n,
        inputs,
        origin,
        security,
        views,
    )
    from patient_portal.accounts import auth
    from patient_portal.accounts import cli as accounts_cli
    from patient_portal.accounts import views as accounts_views
    from patient_portal.contacts import models as contacts_models  # noqa: F401
    from patient_portal.extensions import csrf, db, htmx, limiter, migrate
    from patient_portal.protocol import services as protocol
    from patient_portal.pwa import views as pwa_views
    from patient_portal.questionnaires import loader as questionnaires_loader
    from patient_portal.questionnaires import models as questionnaires_models  # noqa: F401
    from patient_portal.questionnaires import views as questionnaires_views
    from patient_portal.reminders import cli as reminders_cli
    from patient_portal.reminders import views as reminders_views
    from patient_portal.schedule import models as schedule_models  # noqa: F401
    from patient_portal.schedule import views as schedule_views
    from patient_portal.staff import cli as staff_cli
    from patient_portal.staff import views as staff_views

    protocol.init_app(app)
    questionnaires_loader.init_app(app)
    db.init_app(app)
    with app.app_context():
        if db.engine.dialect.name == "sqlite":
            sa.event.listen(db.engine, "connect", set_sqlite_pragmas)
        else:
            ping_connections_idle_for(db.engine, app.config["PORTAL_DB_PING_AFTER"])
    migrate.init_app(app, db, directory=str(Path(app.root_path).parent / "migrations"))
    csrf.init_app(app)
    origin.init_app(app)
    limiter.init_app(app)
    htmx.init_app(app)
    i18n.init_app(app)
    security.init_app(app)
    auth.init_app(app)
    audit.init_app(app)
    grants.init_app(app)
    assets.init_app(app)
    errors.init_app(app)
    inputs.init_app(app)
    form_keys.init_app(app)
    app.register_blueprint(views.bp)
    app.register_blueprint(accounts_views.bp)
    staff_views.init_app(app)
    accounts_cli.init_app(app)
    demo.init_app(app)
    app.register_blueprint(schedule_views.bp)
    app.register_blueprint(questionnaires_views.bp)
    app.register_blueprint(pwa_views.bp)
    app.register_blueprint(reminders_views.bp)
    reminders_cli.init_app(app)
    staff_cli.init_app(app)
    _connect_features(app)


def _connect_features(app: Flask) -> None:
    """How features react to each other: every signal's receivers, and the home page's sections.

    Receivers are connected strongly (they are module functions) and once, however many apps
    are made; docs/architecture.md has the same table.
    """
    from patient_portal import planning, signals
    from patient_portal.accounts import views as accounts_views
    from patient_portal.questionnaires import services as questionnaires_services
    from patient_portal.questionnaires import views as questionnaires_views
    from patient_portal.reminders import planning as reminders_planning
    from patient_portal.reminders import views as reminders_views
    from patient_portal.schedule.views import HomeSection
    from patient_portal.staff import standing

    signals.participant_changed.connect(planning.plan_year, weak=False)
    signals.participant_withdrawn.connect(questionnaires_services.close_for_withdrawal, weak=False)
    signals.participant_withdrawn.connect(reminders_planning.cancel_reminders_for, weak=False)
    signals.reminder_preferences_changed.connect(reminders_planning.plan_reminders, weak=False)
    signals.replacement_passkey_added.connect(reminders_planning.notify_new_device, weak=False)
    signals.worker_pass.connect(standing.bring_up_to_date, weak=False)
    app.extensions["home_sections"] = [
        HomeSection("accounts/_new_device_banner.html", accounts_views.new_device_banner),
        HomeSection("questionnaires/_home_section.html", questionnaires_views.home_section),
        HomeSection("questionnaires/_report_section.html", questionnaires_views.report_section),
        HomeSection("reminders/_home_banner.html", reminders_views.home_banner),
    ]
