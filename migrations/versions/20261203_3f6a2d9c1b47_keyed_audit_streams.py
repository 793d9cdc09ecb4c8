"""keyed audit streams: a stream and position per event, a head row per stream, wider actor and
entity_id columns (any staff e-mail), and TRUNCATE refused on the audit tables

Revision ID: 3f6a2d9c1b47
Revises: b4a9e1c2d3f0
Create Date: 2026-12-03 08:40:00

The events already written become the `legacy` stream, in their order: their unkeyed SHA-256
chain is left as it is (the key is not needed here, and the migration owner need not hold it),
and `flask audit verify` checks it with the old hash. New events start keyed chains; the first
`flask audit checkpoint` after this upgrade pins the legacy chain's length and head. See
docs/audit.md. The downgrade links every event back into one unkeyed chain, as the earlier code
expects.
"""
import hashlib
import json

from alembic import op
import sqlalchemy as sa

from patient_portal.db import UTCDateTime


# revision identifiers, used by Alembic.
revision = "3f6a2d9c1b47"
down_revision = "b4a9e1c2d3f0"
branch_labels = None
depends_on = None

POSTGRESQL_FUNCTION = """
CREATE OR REPLACE FUNCTION audit_event_append_only() RETURNS trigger AS $$
BEGIN
    RAISE EXCEPTION '% is append-only: % refused', TG_TABLE_NAME, TG_OP;
END;
$$ LANGUAGE plpgsql;
"""

# The app role has no UPDATE, DELETE or TRUNCATE privilege on audit_event anyway (`flask database
# grant-app-role`); the triggers also stop the owner, unless they disable them first.
POSTGRESQL_TRIGGERS = {
    "audit_event_append_only": ("audit_event", "BEFORE UPDATE OR DELETE", "ROW"),
    "audit_event_no_truncate": ("audit_event", "BEFORE TRUNCATE", "STATEMENT"),
    "audit_stream_kept": ("audit_stream", "BEFORE DELETE", "ROW"),
    "audit_stream_no_truncate": ("audit_stream", "BEFORE TRUNCATE", "STATEMENT"),
}


def upgrade():
    postgresql = op.get_bind().dialect.name == "postgresql"
    if postgresql:
        # Numbering the existing rows is an UPDATE, which the old trigger refuses.
        op.execute("DROP TRIGGER audit_event_append_only ON audit_event")
    op.create_table(
        "audit_stream",
        sa.Column("stream", sa.String(length=80), nullable=False),
        sa.Column("seq", sa.Integer(), nullable=False),
        sa.Column("head_hash", sa.String(length=64), nullable=False),
        sa.PrimaryKeyConstraint("stream", name=op.f("pk_audit_stream")),
    )
    with op.batch_alter_table("audit_event", schema=None) as batch_op:
        batch_op.add_column(sa.Column("stream", sa.String(length=80), nullable=True))
        batch_op.add_column(sa.Column("seq", sa.Integer(), nullable=True))
        batch_op.alter_column(
            "actor", existing_type=sa.String(length=120), type_=sa.String(length=320),
            existing_nullable=False,
        )
        batch_op.alter_column(
            "entity_id", existing_type=sa.String(length=60), type_=sa.String(length=320),
            existing_nullable=False,
        )
        # Every stream starts from the same genesis link, and the (stream, seq) key replaces
        # the global chain's guards against forks.
        batch_op.drop_constraint("uq_audit_event_prev_hash", type_="unique")
        batch_op.drop_constraint("uq_audit_event_hash", type_="unique")
    op.execute(
        "UPDATE audit_event SET stream = 'legacy', seq = numbered.n"
        " FROM (SELECT id, row_number() OVER (ORDER BY id) AS n FROM audit_event) AS numbered"
        " WHERE numbered.id = audit_event.id"
    )
    op.execute(
        "INSERT INTO audit_stream (stream, seq, head_hash)"
        " SELECT stream, seq, hash FROM audit_event WHERE stream = 'legacy'"
        " ORDER BY seq DESC LIMIT 1"
    )
    with op.batch_alter_table("audit_event", schema=None) as batch_op:
        batch_op.alter_column("stream", existing_type=sa.String(length=80), nullable=False)
        batch_op.alter_column("seq", existing_type=sa.Integer(), nullable=False)
        batch_op.create_unique_constraint(
            batch_op.f("uq_audit_event_stream_seq"), ["stream", "seq"]
        )
    if postgresql:
        op.execute(POSTGRESQL_FUNCTION)
        for name, (table, when, level) in POSTGRESQL_TRIGGERS.items():
            op.execute(
                f"CREATE TRIGGER {name} {when} ON {table} FOR EACH {level}"
                " EXECUTE FUNCTION audit_event_append_only()"
            )


def _rechain_unkeyed(bind):
    """Link every event, in id order, into the one unkeyed SHA-256 chain of the earlier code:
    what its `flask audit verify` expects. The content stays as it is; only the links change,
    and the trail is then only as strong as that design was."""
    events = sa.table(
        "audit_event",
        sa.column("id", sa.Integer), sa.column("at", UTCDateTime()),
        sa.column("actor", sa.String), sa.column("action", sa.String),
        sa.column("entity", sa.String), sa.column("entity_id", sa.String),
        sa.column("before", sa.JSON), sa.column("after", sa.JSON),
        sa.column("reason", sa.Text), sa.column("prev_hash", sa.String),
        sa.column("hash", sa.String),
    )
    prev = "0" * 64
    rows = bind.execute(sa.select(events).order_by(events.c.id)).mappings().all()
    for row in rows:
        content = {
            "at": row["at"].isoformat(timespec="microseconds"),
            **{name: row[name] for name in ("actor", "action", "entity", "entity_id", "before",
                                             "after", "reason")},
            "prev_hash": prev,
        }
        canonical = json.dumps(content, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
        digest = hashlib.sha256(canonical.encode()).hexdigest()
        bind.execute(
            events.update().where(events.c.id == row["id"]).values(prev_hash=prev, hash=digest)
        )
        prev = digest


def downgrade():
    bind = op.get_bind()
    postgresql = bind.dialect.name == "postgresql"
    if postgresql:
        for name, (table, _when, _level) in POSTGRESQL_TRIGGERS.items():
            op.execute(f"DROP TRIGGER {name} ON {table}")
    _rechain_unkeyed(bind)
    with op.batch_alter_table("audit_event", schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f("uq_audit_event_stream_seq"), type_="unique")
        batch_op.drop_column("seq")
        batch_op.drop_column("stream")
        batch_op.alter_column(
            "entity_id", existing_type=sa.String(length=320), type_=sa.String(length=60),
            existing_nullable=False,
        )
        batch_op.alter_column(
            "actor", existing_type=sa.String(length=320), type_=sa.String(length=120),
            existing_nullable=False,
        )
        batch_op.create_unique_constraint(batch_op.f("uq_audit_event_hash"), ["hash"])
        batch_op.create_unique_constraint(batch_op.f("uq_audit_event_prev_hash"), ["prev_hash"])
    op.drop_table("audit_stream")
    if postgresql:
        op.execute(
            "CREATE TRIGGER audit_event_append_only BEFORE UPDATE OR DELETE ON audit_event"
            " FOR EACH ROW EXECUTE FUNCTION audit_event_append_only()"
        )
