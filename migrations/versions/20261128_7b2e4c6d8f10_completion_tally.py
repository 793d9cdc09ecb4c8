"""completion tally: the dashboard's counts per site, visit, questionnaire, status and hour,
kept by triggers on assignment; an index on assignment (closes_at, id)

Revision ID: 7b2e4c6d8f10
Revises: 5e1a7c3b9d20
Create Date: 2026-11-28 19:10:00

The triggers are the only writers of completion_tally (see patient_portal/staff/models.py).
Hours are whole hours since 1970 UTC, truncated from the stored naive-UTC timestamps; the same
expressions are in patient_portal/staff/tally.py, which recounts and checks the tally.
"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = '7b2e4c6d8f10'
down_revision = '5e1a7c3b9d20'
branch_labels = None
depends_on = None

KEY = "site_code, visit_key, instrument_id, status, opens_hour, closes_hour"


def _postgresql_hour(column):
    return f"(extract(epoch FROM date_trunc('hour', {column}))::bigint / 3600)::integer"


def _sqlite_hour(column):
    # Truncated as text: strftime('%s') rounds a time within a millisecond of the next hour up.
    return f"CAST(strftime('%s', substr({column}, 1, 13) || ':00:00') AS INTEGER) / 3600"


# PostgreSQL: statement-level triggers over the transition tables, so a bulk write (a withdrawal,
# a re-planning, an import) is one grouped upsert; keys are upserted in order, so two
# transactions lock tally rows in the same order.
POSTGRESQL_CHANGES = {
    "insert": "SELECT participant_id, visit_id, series_code, instrument_id, status, opens_at,"
    " closes_at, 1 AS change FROM new_rows",
    "delete": "SELECT participant_id, visit_id, series_code, instrument_id, status, opens_at,"
    " closes_at, -1 AS change FROM old_rows",
    "update": "SELECT participant_id, visit_id, series_code, instrument_id, status, opens_at,"
    " closes_at, -1 AS change FROM old_rows UNION ALL SELECT participant_id, visit_id,"
    " series_code, instrument_id, status, opens_at, closes_at, 1 FROM new_rows",
}
POSTGRESQL_FUNCTION = """
CREATE FUNCTION completion_tally_{event}() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO completion_tally AS tally ({key}, total)
    SELECT participant.site_code, coalesce(visit.code, changed.series_code),
           changed.instrument_id, changed.status, {opens}, {closes}, sum(changed.change)
    FROM ({changes}) AS changed
    JOIN participant ON participant.id = changed.participant_id
    LEFT JOIN visit ON visit.id = changed.visit_id
    GROUP BY 1, 2, 3, 4, 5, 6
    HAVING sum(changed.change) <> 0
    ORDER BY 1, 2, 3, 4, 5, 6
    ON CONFLICT ({key}) DO UPDATE SET total = tally.total + excluded.total;
    RETURN NULL;
END $$;
CREATE TRIGGER completion_tally_{event} AFTER {event_upper} ON assignment
    REFERENCING {tables} FOR EACH STATEMENT EXECUTE FUNCTION completion_tally_{event}();
"""
POSTGRESQL_TABLES = {
    "insert": "NEW TABLE AS new_rows",
    "delete": "OLD TABLE AS old_rows",
    "update": "OLD TABLE AS old_rows NEW TABLE AS new_rows",
}


def _sqlite_values(row):
    return (
        f"(SELECT site_code FROM participant WHERE id = {row}.participant_id),"
        f" coalesce((SELECT code FROM visit WHERE id = {row}.visit_id), {row}.series_code),"
        f" {row}.instrument_id, {row}.status,"
        f" {_sqlite_hour(row + '.opens_at')}, {_sqlite_hour(row + '.closes_at')}"
    )


def _sqlite_add(row):
    return (
        f"INSERT INTO completion_tally ({KEY}, total) VALUES ({_sqlite_values(row)}, 1)"
        f" ON CONFLICT ({KEY}) DO UPDATE SET total = total + 1;"
    )


def _sqlite_remove(row):
    return (
        f"UPDATE completion_tally SET total = total - 1 WHERE ({KEY}) = (SELECT {_sqlite_values(row)});"
    )


KEY_COLUMNS = ("participant_id", "visit_id", "series_code", "instrument_id", "status",
               "opens_at", "closes_at")
SQLITE_TRIGGERS = [
    f"CREATE TRIGGER completion_tally_insert AFTER INSERT ON assignment BEGIN {_sqlite_add('NEW')} END",
    f"CREATE TRIGGER completion_tally_delete AFTER DELETE ON assignment BEGIN {_sqlite_remove('OLD')} END",
    f"CREATE TRIGGER completion_tally_update AFTER UPDATE OF {', '.join(KEY_COLUMNS)} ON assignment"
    f" WHEN {' OR '.join(f'OLD.{c} IS NOT NEW.{c}' for c in KEY_COLUMNS)}"
    f" BEGIN {_sqlite_remove('OLD')} {_sqlite_add('NEW')} END",
]


def _recount(hour):
    """Fill the tally from the assignments already there."""
    return (
        f"INSERT INTO completion_tally ({KEY}, total)"
        " SELECT participant.site_code, coalesce(visit.code, assignment.series_code),"
        " assignment.instrument_id, assignment.status,"
        f" {hour('assignment.opens_at')}, {hour('assignment.closes_at')}, count(*)"
        " FROM assignment JOIN participant ON participant.id = assignment.participant_id"
        " LEFT JOIN visit ON visit.id = assignment.visit_id"
        " GROUP BY 1, 2, 3, 4, 5, 6"
    )


def upgrade():
    op.create_table('completion_tally',
    sa.Column('site_code', sa.String(length=10), nullable=False),
    sa.Column('visit_key', sa.String(length=20), nullable=False),
    sa.Column('instrument_id', sa.String(length=64), nullable=False),
    sa.Column('status', sa.String(length=12), nullable=False),
    sa.Column('opens_hour', sa.Integer(), autoincrement=False, nullable=False),
    sa.Column('closes_hour', sa.Integer(), autoincrement=False, nullable=False),
    sa.Column('total', sa.Integer(), nullable=False),
    sa.PrimaryKeyConstraint('site_code', 'visit_key', 'instrument_id', 'status', 'opens_hour', 'closes_hour', name=op.f('pk_completion_tally')),
    # SQLite: the rows live in the primary key's own b-tree, so a scan reads them in key order
    # without a second lookup per row.
    sqlite_with_rowid=False,
    )
    with op.batch_alter_table('assignment', schema=None) as batch_op:
        batch_op.create_index('ix_assignment_closes_at', ['closes_at', 'id'], unique=False)

    if op.get_bind().dialect.name == "postgresql":
        hour = _postgresql_hour
        for event, changes in POSTGRESQL_CHANGES.items():
            op.execute(POSTGRESQL_FUNCTION.format(
                event=event, event_upper=event.upper(), key=KEY, changes=changes,
                tables=POSTGRESQL_TABLES[event],
                opens=_postgresql_hour("changed.opens_at"),
                closes=_postgresql_hour("changed.closes_at"),
            ))
    else:
        hour = _sqlite_hour
        for trigger in SQLITE_TRIGGERS:
            op.execute(trigger)
    op.execute(_recount(hour))


def downgrade():
    if op.get_bind().dialect.name == "postgresql":
        for event in POSTGRESQL_CHANGES:
            op.execute(f"DROP TRIGGER completion_tally_{event} ON assignment")
            op.execute(f"DROP FUNCTION completion_tally_{event}()")
    else:
        for event in ("insert", "delete", "update"):
            op.execute(f"DROP TRIGGER completion_tally_{event}")
    with op.batch_alter_table('assignment', schema=None) as batch_op:
        batch_op.drop_index('ix_assignment_closes_at')

    op.drop_table('completion_tally')
