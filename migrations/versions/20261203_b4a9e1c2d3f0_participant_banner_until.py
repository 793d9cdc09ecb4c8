"""participant: banner_until, the latest moment an in-app reminder may still show on home

Revision ID: b4a9e1c2d3f0
Revises: c4f1a9e2d7b3
Create Date: 2026-12-03 09:00:00

"""

import sqlalchemy as sa
from alembic import op

import patient_portal.db

revision = "b4a9e1c2d3f0"
down_revision = "c4f1a9e2d7b3"
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table("participant") as batch:
        batch.add_column(sa.Column("banner_until", patient_portal.db.UTCDateTime(), nullable=True))
    # In-app reminders already delivered keep showing until they expire.
    op.execute(
        "UPDATE participant SET banner_until = (SELECT MAX(reminder.expires_at) FROM reminder"
        " WHERE reminder.participant_id = participant.id AND reminder.channel = 'inapp'"
        " AND reminder.status = 'sent')"
    )


def downgrade():
    with op.batch_alter_table("participant") as batch:
        batch.drop_column("banner_until")
