"""enrolment races and replacement links: a study ID counter per site, the reason of a
replacement enrolment link, the link a passkey came from, and the new-device reminder kind

Revision ID: c4f1a9e2d7b3
Revises: 7b2e4c6d8f10
Create Date: 2026-12-03 08:45:00

The counter rows are created on first use (accounts.services.next_study_id starts them at the
highest study ID already given), so no data is copied here.
"""
from alembic import op
import sqlalchemy as sa

import patient_portal.db


# revision identifiers, used by Alembic.
revision = 'c4f1a9e2d7b3'
down_revision = '7b2e4c6d8f10'
branch_labels = None
depends_on = None

KINDS_BEFORE = "kind IN ('infusion', 'visit', 'questionnaire', 'test')"
KINDS_AFTER = "kind IN ('infusion', 'visit', 'questionnaire', 'test', 'new_device')"


def upgrade():
    op.create_table('study_id_counter',
    sa.Column('site_code', sa.String(length=10), nullable=False),
    sa.Column('last_number', sa.Integer(), nullable=False),
    sa.PrimaryKeyConstraint('site_code', name=op.f('pk_study_id_counter'))
    )
    with op.batch_alter_table('enrolment_token', schema=None) as batch_op:
        batch_op.add_column(sa.Column('replacement_reason', sa.String(length=20), nullable=True))
        batch_op.add_column(sa.Column('replacement_note', sa.String(length=500), nullable=True))

    with op.batch_alter_table('passkey_credential', schema=None) as batch_op:
        batch_op.add_column(sa.Column('enrolment_token_id', sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column('notice_dismissed_at', patient_portal.db.UTCDateTime(), nullable=True))
        batch_op.create_foreign_key(batch_op.f('fk_passkey_credential_enrolment_token_id_enrolment_token'), 'enrolment_token', ['enrolment_token_id'], ['id'])

    with op.batch_alter_table('reminder', schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f('ck_reminder_kind'), type_='check')
        batch_op.create_check_constraint(batch_op.f('ck_reminder_kind'), KINDS_AFTER)


def downgrade():
    op.execute("DELETE FROM reminder_attempt WHERE reminder_id IN (SELECT id FROM reminder WHERE kind = 'new_device')")
    op.execute("DELETE FROM reminder WHERE kind = 'new_device'")
    with op.batch_alter_table('reminder', schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f('ck_reminder_kind'), type_='check')
        batch_op.create_check_constraint(batch_op.f('ck_reminder_kind'), KINDS_BEFORE)

    with op.batch_alter_table('passkey_credential', schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f('fk_passkey_credential_enrolment_token_id_enrolment_token'), type_='foreignkey')
        batch_op.drop_column('notice_dismissed_at')
        batch_op.drop_column('enrolment_token_id')

    with op.batch_alter_table('enrolment_token', schema=None) as batch_op:
        batch_op.drop_column('replacement_note')
        batch_op.drop_column('replacement_reason')

    op.drop_table('study_id_counter')
