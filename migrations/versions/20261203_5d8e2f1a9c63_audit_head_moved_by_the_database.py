"""the audit stream's head follows its last event in the database: a trigger on audit_event
moves it, so an append is two statements (take the position, write the event), not three

Revision ID: 5d8e2f1a9c63
Revises: 3c5a9e1f7d42
Create Date: 2026-12-03 12:30:00

The app still takes the position first (`UPDATE audit_stream ... RETURNING`, which queues two
writers of one stream); the trigger then writes the new event's MAC into the head row whose
position it took. An event whose position is not the head's (an insert out of turn) leaves
the head as it is, so `flask audit verify` still reports it. See docs/audit.md.
"""
from alembic import op


# revision identifiers, used by Alembic.
revision = "5d8e2f1a9c63"
down_revision = "3c5a9e1f7d42"
branch_labels = None
depends_on = None

POSTGRESQL_FUNCTION = """
CREATE OR REPLACE FUNCTION audit_stream_follow_head() RETURNS trigger AS $$
BEGIN
    UPDATE audit_stream SET head_hash = NEW.hash
     WHERE stream = NEW.stream AND seq = NEW.seq;
    RETURN NULL;
END;
$$ LANGUAGE plpgsql;
"""

SQLITE_TRIGGER = """
CREATE TRIGGER audit_stream_follow_head AFTER INSERT ON audit_event
BEGIN
    UPDATE audit_stream SET head_hash = NEW.hash
     WHERE stream = NEW.stream AND seq = NEW.seq;
END
"""


def upgrade():
    if op.get_bind().dialect.name == "postgresql":
        op.execute(POSTGRESQL_FUNCTION)
        op.execute(
            "CREATE TRIGGER audit_stream_follow_head AFTER INSERT ON audit_event"
            " FOR EACH ROW EXECUTE FUNCTION audit_stream_follow_head()"
        )
    else:
        op.execute(SQLITE_TRIGGER)


def downgrade():
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP TRIGGER audit_stream_follow_head ON audit_event")
        op.execute("DROP FUNCTION audit_stream_follow_head()")
    else:
        op.execute("DROP TRIGGER audit_stream_follow_head")
