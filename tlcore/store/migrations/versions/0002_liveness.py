"""Who holds a run and whether it lives: owner process columns, heartbeats, the stop flag, the kind.

Revision ID: 0002
Revises: 0001
"""
import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

_ADDED = (("host", sa.String(255)), ("pid", sa.Integer), ("process", sa.String(64)), ("heartbeat", sa.Float),
          ("worker", sa.String(255)))


def upgrade() -> None:
    inspector = sa.inspect(op.get_bind())
    have = {c["name"] for c in inspector.get_columns("runs")}
    with op.batch_alter_table("runs") as batch:
        for name, kind in _ADDED:
            if name not in have:
                batch.add_column(sa.Column(name, kind))
        if "stop_requested" not in have:
            batch.add_column(sa.Column("stop_requested", sa.Boolean, nullable=False, server_default=sa.false()))
        if "kind" not in have:
            batch.add_column(sa.Column("kind", sa.String(64), nullable=False, server_default="train"))
    indexes = {i["name"] for i in inspector.get_indexes("runs")}
    if "runs_status" not in indexes:
        op.create_index("runs_status", "runs", ["status"])
    if "runs_owner_created" not in indexes:
        op.create_index("runs_owner_created", "runs", ["owner", "created"])


def downgrade() -> None:
    op.drop_index("runs_owner_created", "runs")
    op.drop_index("runs_status", "runs")
    with op.batch_alter_table("runs") as batch:
        for name in ("kind", "stop_requested", "worker", "heartbeat"):
            batch.drop_column(name)
