"""safety between visits: alert severity, the answer that raised it, response target,
notification, escalation and outcome; staff investigator flag

Revision ID: 3c5a9e1f7d42
Revises: 3f6a2d9c1b47
Create Date: 2026-12-03 09:00:00

Existing alerts come from the weekly check-in's rules and become routine; their response
target stays empty (they were raised before targets existed), so none is escalated.
"""

from alembic import op
import sqlalchemy as sa

import patient_portal.db


# revision identifiers, used by Alembic.
revision = "3c5a9e1f7d42"
down_revision = "3f6a2d9c1b47"
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table("alert", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("severity", sa.String(length=8), server_default="routine", nullable=False)
        )
        batch_op.add_column(sa.Column("item_id", sa.String(length=64), nullable=True))
        batch_op.add_column(sa.Column("value", sa.JSON(), nullable=True))
        batch_op.add_column(sa.Column("due_at", patient_portal.db.UTCDateTime(), nullable=True))
        batch_op.add_column(
            sa.Column("notified_at", patient_portal.db.UTCDateTime(), nullable=True)
        )
        batch_op.add_column(
            sa.Column("escalated_at", patient_portal.db.UTCDateTime(), nullable=True)
        )
        batch_op.add_column(sa.Column("outcome", sa.String(length=24), nullable=True))
        batch_op.create_check_constraint("severity", "severity IN ('urgent', 'routine')")
        batch_op.create_index("ix_alert_open_due", ["acknowledged_at", "due_at"], unique=False)
    with op.batch_alter_table("staff_user", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("investigator", sa.Boolean(), server_default=sa.false(), nullable=False)
        )


def downgrade():
    with op.batch_alter_table("staff_user", schema=None) as batch_op:
        batch_op.drop_column("investigator")
    with op.batch_alter_table("alert", schema=None) as batch_op:
        batch_op.drop_index("ix_alert_open_due")
        batch_op.drop_constraint("severity", type_="check")
        for column in (
            "outcome",
            "escalated_at",
            "notified_at",
            "due_at",
            "value",
            "item_id",
            "severity",
        ):
            batch_op.drop_column(column)
