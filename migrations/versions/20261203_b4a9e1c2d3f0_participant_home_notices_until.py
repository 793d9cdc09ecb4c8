"""participant: home_notices_until, the latest moment home may have a notice to show

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


# Plain ALTER TABLE on both engines (SQLite has ADD and DROP COLUMN since 3.35): a batch copy of
# `participant` would have to drop a table every other table points at.
def upgrade():
    op.add_column("participant", sa.Column("home_notices_until", patient_portal.db.UTCDateTime()))
    # In-app reminders already delivered keep showing until they expire.
    op.execute(
        "UPDATE participant SET home_notices_until = (SELECT MAX(reminder.expires_at) FROM reminder"
        " WHERE reminder.participant_id = participant.id AND reminder.channel = 'inapp'"
        " AND reminder.status = 'sent')"
    )


def downgrade():
    op.drop_column("participant", "home_notices_until")
