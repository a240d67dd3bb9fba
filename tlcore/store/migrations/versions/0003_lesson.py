"""Runs remember the lesson they were started from (a teacher's `lesson=` link), for its leaderboard.

Revision ID: 0003
Revises: 0002
"""
import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    have = {c["name"] for c in sa.inspect(op.get_bind()).get_columns("runs")}
    if "lesson" not in have:
        with op.batch_alter_table("runs") as batch:
            batch.add_column(sa.Column("lesson", sa.String(100), nullable=False, server_default=""))


def downgrade() -> None:
    with op.batch_alter_table("runs") as batch:
        batch.drop_column("lesson")
