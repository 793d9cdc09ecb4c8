"""contact_attempt: the study team's attempts to reach a participant (issue 18)

Revision ID: 7e2c4b9a1d05
Revises: e7d2b5a1c9f4
Create Date: 2026-12-03 12:30:00

"""

import sqlalchemy as sa
from alembic import op

import patient_portal.db

revision = "7e2c4b9a1d05"
down_revision = "e7d2b5a1c9f4"
branch_labels = None
depends_on = None


def upgrade():
    op.create_table(
        "contact_attempt",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("participant_id", sa.Integer(), nullable=False),
        sa.Column("staff_id", sa.Integer(), nullable=False),
        sa.Column("at", patient_portal.db.UTCDateTime(), nullable=False),
        sa.Column("channel", sa.String(length=10), nullable=False),
        sa.Column("outcome", sa.String(length=14), nullable=False),
        sa.Column("note", sa.String(length=280), nullable=True),
        sa.CheckConstraint(
            "channel IN ('phone', 'email', 'in_person')", name=op.f("ck_contact_attempt_channel")
        ),
        sa.CheckConstraint(
            "outcome IN ('reached', 'no_answer', 'message_left')",
            name=op.f("ck_contact_attempt_outcome"),
        ),
        sa.ForeignKeyConstraint(
            ["participant_id"],
            ["participant.id"],
            name=op.f("fk_contact_attempt_participant_id_participant"),
        ),
        sa.ForeignKeyConstraint(
            ["staff_id"], ["staff_user.id"], name=op.f("fk_contact_attempt_staff_id_staff_user")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_contact_attempt")),
    )
    op.create_index(
        "ix_contact_attempt_participant_at", "contact_attempt", ["participant_id", "at"]
    )


def downgrade():
    op.drop_index("ix_contact_attempt_participant_at", table_name="contact_attempt")
    op.drop_table("contact_attempt")
