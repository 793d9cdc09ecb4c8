"""assignment.visit_key: the visit's code or the series code, written with the questionnaire, and
an index on (visit_key, closes_at) for the dashboard's visit filter (issue 19)

Revision ID: 4a8d2e6c0f13
Revises: 2c7f9a4e1b86
Create Date: 2026-12-03 16:30:00

Added without a batch rebuild of `assignment` (a rebuild on SQLite would drop its triggers);
the questionnaires already there get theirs from their visit or series.
"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = "4a8d2e6c0f13"
down_revision = "2c7f9a4e1b86"
branch_labels = None
depends_on = None


def upgrade():
    op.add_column("assignment", sa.Column("visit_key", sa.String(length=20), nullable=True))
    op.execute(
        "UPDATE assignment SET visit_key = coalesce("
        "(SELECT visit.code FROM visit WHERE visit.id = assignment.visit_id), series_code)"
    )
    op.create_index("ix_assignment_visit_closes", "assignment", ["visit_key", "closes_at"])


def downgrade():
    op.drop_index("ix_assignment_visit_closes", table_name="assignment")
    if op.get_bind().dialect.name == "postgresql":
        op.drop_column("assignment", "visit_key")
    else:
        # SQLite (3.35+) drops a column in place; a batch rebuild would drop the triggers.
        op.execute("ALTER TABLE assignment DROP COLUMN visit_key")
