"""reminder e-mail verified at: an address receives reminders only once its owner opened the
link sent to it

Revision ID: e7d2b5a1c9f4
Revises: 8b1f4c2e6a95
Create Date: 2026-12-03 12:30:00

Addresses stored before this revision were never verified: they stay unverified (NULL) and
receive nothing until their owner confirms them from the reminders page.
"""
from alembic import op
import sqlalchemy as sa

import patient_portal.db


# revision identifiers, used by Alembic.
revision = 'e7d2b5a1c9f4'
down_revision = '8b1f4c2e6a95'
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table('reminder_preference', schema=None) as batch_op:
        batch_op.add_column(sa.Column('email_verified_at', patient_portal.db.UTCDateTime(), nullable=True))


def downgrade():
    with op.batch_alter_table('reminder_preference', schema=None) as batch_op:
        batch_op.drop_column('email_verified_at')
