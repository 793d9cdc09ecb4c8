"""`flask database grant-app-role ROLE`: what the app's PostgreSQL role may do, and no more.

Migrations run as an owner role; the app servers connect as a role that owns nothing, may read
and write the clinical and account tables, but may only INSERT and SELECT audit events (no
UPDATE, DELETE or TRUNCATE, and, not being the owner, no ALTER TABLE ... DISABLE TRIGGER).
The owner runs this after every `flask db upgrade`, so that new tables are granted too.
docs/audit.md explains the split.
"""

from __future__ import annotations

import click
import sqlalchemy as sa
from flask import Flask
from flask.cli import AppGroup

from patient_portal.extensions import db

# Every other table: SELECT, INSERT, UPDATE, DELETE. No table gets TRUNCATE, REFERENCES or
# TRIGGER: the app needs none of them.
DEFAULT_PRIVILEGES = "SELECT, INSERT, UPDATE, DELETE"
PRIVILEGES = {
    "audit_event": "SELECT, INSERT",
    # The head moves forward with each append; a head is never removed.
    "audit_stream": "SELECT, INSERT, UPDATE",
    "alembic_version": "SELECT",
}


class GrantRefused(click.ClickException):
    exit_code = 1


def _check_role(connection: sa.Connection, role: str, schema: str) -> None:
    found = connection.execute(
        sa.text("SELECT rolsuper FROM pg_roles WHERE rolname = :role"), {"role": role}
    ).one_or_none()
    if found is None:
        raise GrantRefused(f"role {role!r} does not exist: create it first (CREATE ROLE … LOGIN)")
    if found.rolsuper:
        raise GrantRefused(f"role {role!r} is a superuser: no privilege would bind it")
    owners = connection.execute(
        sa.text(
            "SELECT DISTINCT tableowner FROM pg_tables WHERE schemaname = :schema"
            " AND (pg_has_role(:role, tableowner, 'MEMBER')"
            " OR NOT pg_has_role(current_user, tableowner, 'MEMBER'))"
        ),
        {"schema": schema, "role": role},
    ).scalars()
    for owner in owners:
        raise GrantRefused(
            f"the tables' owner is {owner!r}: run this as that role, and give the app a role"
            " that is neither it nor a member of it"
        )


def grant_statements(connection: sa.Connection, role: str) -> list[str]:
    """The statements that leave `role` with exactly the app's privileges in the schema."""
    quote = connection.dialect.identifier_preparer.quote
    schema = connection.scalar(sa.text("SELECT current_schema()"))
    if schema is None:
        raise GrantRefused("no schema on the search path is usable by this role: run as the owner")
    _check_role(connection, role, schema)
    grantee, in_schema = quote(role), quote(schema)
    statements = [f"GRANT USAGE ON SCHEMA {in_schema} TO {grantee}"]
    for table in sorted(sa.inspect(connection).get_table_names(schema=schema)):
        name = f"{in_schema}.{quote(table)}"
        # Revoked first: a second run, or a role granted by hand, ends with the same privileges.
        statements.append(f"REVOKE ALL ON TABLE {name} FROM {grantee}")
        privileges = PRIVILEGES.get(table, DEFAULT_PRIVILEGES)
        statements.append(f"GRANT {privileges} ON TABLE {name} TO {grantee}")
    statements.append(f"REVOKE ALL ON ALL SEQUENCES IN SCHEMA {in_schema} FROM {grantee}")
    statements.append(f"GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA {in_schema} TO {grantee}")
    return statements


database_cli = AppGroup("database", help="Database roles (PostgreSQL).")


@database_cli.command("grant-app-role")
@click.argument("role")
def grant_app_role_command(role: str) -> None:
    """Grant ROLE the app's privileges: audit events INSERT and SELECT only. Run as the owner."""
    connection = db.session.connection()
    if connection.dialect.name != "postgresql":
        raise GrantRefused("roles and privileges are PostgreSQL's: SQLite has none to grant")
    try:
        statements = grant_statements(connection, role)
        for statement in statements:
            connection.exec_driver_sql(statement)
    except GrantRefused:
        db.session.rollback()
        raise
    except sa.exc.DBAPIError as error:
        db.session.rollback()
        raise GrantRefused(f"grant refused: {error.orig}") from None
    db.session.commit()
    click.echo(
        f"Role {role} may read and write the portal's tables; on audit_event only INSERT and"
        " SELECT."
    )


def init_app(app: Flask) -> None:
    app.cli.add_command(database_cli)
