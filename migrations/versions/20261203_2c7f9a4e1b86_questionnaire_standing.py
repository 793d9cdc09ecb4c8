"""questionnaire standing: per participant, the states of their questionnaires and until when
they hold, marked for a recount by triggers on assignment (the dashboard's state and visit
filters, issue 19)

Revision ID: 2c7f9a4e1b86
Revises: 7e2c4b9a1d05
Create Date: 2026-12-03 16:00:00

The triggers only mark a participant's row due (fresh_until = 0) when one of their
questionnaires is inserted, deleted, or changes participant, visit, series, status or window;
patient_portal/staff/standing.py recounts due rows when the dashboard reads them. Rows for the
questionnaires already there start due.
"""

from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = "2c7f9a4e1b86"
down_revision = "7e2c4b9a1d05"
branch_labels = None
depends_on = None

COLUMNS = "participant_id, site_code, upcoming, open, completed, missed, withdrawn, visits, fresh_until"
WATCHED = ("participant_id", "visit_id", "series_code", "status", "opens_at", "closes_at")


def _sqlite_mark(participant):
    return (
        f"INSERT INTO questionnaire_standing ({COLUMNS})"
        # SQLite reads "ON CONFLICT" after a SELECT as an upsert when the SELECT has a WHERE.
        f" SELECT id, site_code, 0, 0, 0, 0, 0, '', 0 FROM participant WHERE id = {participant}"
        " ON CONFLICT (participant_id) DO UPDATE SET fresh_until = 0;"
    )


SQLITE_TRIGGERS = [
    "CREATE TRIGGER questionnaire_standing_insert AFTER INSERT ON assignment"
    f" BEGIN {_sqlite_mark('NEW.participant_id')} END",
    "CREATE TRIGGER questionnaire_standing_delete AFTER DELETE ON assignment BEGIN"
    " UPDATE questionnaire_standing SET fresh_until = 0"
    " WHERE participant_id = OLD.participant_id; END",
    f"CREATE TRIGGER questionnaire_standing_update AFTER UPDATE OF {', '.join(WATCHED)}"
    f" ON assignment WHEN {' OR '.join(f'OLD.{c} IS NOT NEW.{c}' for c in WATCHED)}"
    f" BEGIN {_sqlite_mark('NEW.participant_id')}"
    " UPDATE questionnaire_standing SET fresh_until = 0"
    " WHERE participant_id = OLD.participant_id; END",
]

# PostgreSQL: statement-level triggers over the transition tables, so a bulk write (a
# withdrawal, a re-planning, an import) marks each participant once, in participant order.
POSTGRESQL_MARKED = {
    "insert": "SELECT participant_id FROM new_rows",
    "delete": "SELECT participant_id FROM old_rows",
    "update": "SELECT new_rows.participant_id FROM new_rows JOIN old_rows USING (id)"
    f" WHERE ({', '.join(f'old_rows.{c}' for c in WATCHED)})"
    f" IS DISTINCT FROM ({', '.join(f'new_rows.{c}' for c in WATCHED)})"
    " UNION SELECT old_rows.participant_id FROM new_rows JOIN old_rows USING (id)"
    " WHERE old_rows.participant_id <> new_rows.participant_id",
}
POSTGRESQL_TABLES = {
    "insert": "NEW TABLE AS new_rows",
    "delete": "OLD TABLE AS old_rows",
    "update": "OLD TABLE AS old_rows NEW TABLE AS new_rows",
}
POSTGRESQL_FUNCTION = """
CREATE FUNCTION questionnaire_standing_{event}() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO questionnaire_standing ({columns})
    SELECT DISTINCT marked.participant_id, participant.site_code,
           false, false, false, false, false, '', 0
    FROM ({marked}) AS marked
    JOIN participant ON participant.id = marked.participant_id
    ORDER BY 1
    ON CONFLICT (participant_id) DO UPDATE SET fresh_until = 0;
    RETURN NULL;
END $$;
CREATE TRIGGER questionnaire_standing_{event} AFTER {event_upper} ON assignment
    REFERENCING {tables} FOR EACH STATEMENT EXECUTE FUNCTION questionnaire_standing_{event}();
"""


def upgrade():
    op.create_table(
        "questionnaire_standing",
        sa.Column("participant_id", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("site_code", sa.String(length=10), nullable=False),
        sa.Column("upcoming", sa.Boolean(), nullable=False),
        sa.Column("open", sa.Boolean(), nullable=False),
        sa.Column("completed", sa.Boolean(), nullable=False),
        sa.Column("missed", sa.Boolean(), nullable=False),
        sa.Column("withdrawn", sa.Boolean(), nullable=False),
        sa.Column("visits", sa.Text(), nullable=False),
        sa.Column("fresh_until", sa.BigInteger(), nullable=True),
        sa.ForeignKeyConstraint(
            ["participant_id"],
            ["participant.id"],
            name=op.f("fk_questionnaire_standing_participant_id_participant"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("participant_id", name=op.f("pk_questionnaire_standing")),
    )
    with op.batch_alter_table("questionnaire_standing", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_questionnaire_standing_fresh_until"), ["fresh_until"], unique=False
        )
    if op.get_bind().dialect.name == "postgresql":
        for event, marked in POSTGRESQL_MARKED.items():
            op.execute(
                POSTGRESQL_FUNCTION.format(
                    event=event,
                    event_upper=event.upper(),
                    columns=COLUMNS,
                    marked=marked,
                    tables=POSTGRESQL_TABLES[event],
                )
            )
        false = "false"
    else:
        for trigger in SQLITE_TRIGGERS:
            op.execute(trigger)
        false = "0"
    op.execute(
        f"INSERT INTO questionnaire_standing ({COLUMNS})"
        f" SELECT participant.id, participant.site_code, {', '.join([false] * 5)}, '', 0"
        " FROM participant WHERE EXISTS"
        " (SELECT 1 FROM assignment WHERE assignment.participant_id = participant.id)"
    )


def downgrade():
    if op.get_bind().dialect.name == "postgresql":
        for event in POSTGRESQL_MARKED:
            op.execute(f"DROP TRIGGER questionnaire_standing_{event} ON assignment")
            op.execute(f"DROP FUNCTION questionnaire_standing_{event}()")
    else:
        for event in ("insert", "delete", "update"):
            op.execute(f"DROP TRIGGER questionnaire_standing_{event}")
    with op.batch_alter_table("questionnaire_standing", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_questionnaire_standing_fresh_until"))
    op.drop_table("questionnaire_standing")
