"""The first schema: runs and their events. Adopts stores made before migrations existed.

Revision ID: 0001
Revises:
"""
import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    have = set(sa.inspect(op.get_bind()).get_table_names())
    if "runs" not in have:
        op.create_table(
            "runs",
            sa.Column("id", sa.String(64), primary_key=True),
            sa.Column("created", sa.Float, nullable=False),
            sa.Column("owner", sa.String(200), nullable=False, server_default=""),
            sa.Column("label", sa.String(200), nullable=False, server_default=""),
            sa.Column("plan_json", sa.Text, nullable=False),
            sa.Column("status", sa.String(16), nullable=False),
            sa.Column("message", sa.Text, nullable=False, server_default=""),
            sa.Column("ended", sa.Float),
            sa.Column("val_acc", sa.Float),
            sa.Column("macro_f1", sa.Float),
            sa.Column("seconds", sa.Float),
            sa.Column("trainable_params", sa.BigInteger),
            sa.Column("epochs_done", sa.Integer, nullable=False, server_default="0"),
        )
    if "events" not in have:
        op.create_table(
            "events",
            sa.Column("run_id", sa.String(64), nullable=False),
            sa.Column("seq", sa.Integer, nullable=False),
            sa.Column("type", sa.String(32), nullable=False),
            sa.Column("json", sa.Text, nullable=False),
            sa.PrimaryKeyConstraint("run_id", "seq"),
        )


def downgrade() -> None:
    op.drop_table("events")
    op.drop_table("runs")
