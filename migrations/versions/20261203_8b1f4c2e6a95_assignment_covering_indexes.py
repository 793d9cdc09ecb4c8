"""assignment: covering indexes for the dashboard's state filters — (participant_id, status,
closes_at) replaces (participant_id), (opens_at, closes_at, status, participant_id) replaces
(opens_at)

Revision ID: 8b1f4c2e6a95
Revises: 5d8e2f1a9c63
Create Date: 2026-12-03 12:50:00

Each new index starts with the column of the one it replaces, so every query the old ones served
is served still; the extra columns let "who has a missed questionnaire" and "who has one open"
be answered from the indexes without reading the rows (issue 19, docs/performance.md).
"""
from alembic import op


# revision identifiers, used by Alembic.
revision = "8b1f4c2e6a95"
down_revision = "5d8e2f1a9c63"
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table("assignment", schema=None) as batch_op:
        batch_op.create_index(
            "ix_assignment_participant_state", ["participant_id", "status", "closes_at"]
        )
        batch_op.create_index(
            "ix_assignment_opens_window", ["opens_at", "closes_at", "status", "participant_id"]
        )
        batch_op.drop_index("ix_assignment_participant_id")
        batch_op.drop_index("ix_assignment_opens_at")


def downgrade():
    with op.batch_alter_table("assignment", schema=None) as batch_op:
        batch_op.create_index("ix_assignment_opens_at", ["opens_at"])
        batch_op.create_index("ix_assignment_participant_id", ["participant_id"])
        batch_op.drop_index("ix_assignment_opens_window")
        batch_op.drop_index("ix_assignment_participant_state")
