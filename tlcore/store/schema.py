"""The tables, as SQLAlchemy Core sees them. Changing them means a new migration in migrations/versions."""
from __future__ import annotations

from sqlalchemy import (BigInteger, Boolean, Column, Float, Index, Integer, MetaData, PrimaryKeyConstraint, String,
                        Table, Text)

metadata = MetaData()

runs = Table(
    "runs", metadata,
    Column("id", String(64), primary_key=True),
    Column("created", Float, nullable=False),
    Column("owner", String(200), nullable=False, server_default=""),
    Column("label", String(200), nullable=False, server_default=""),
    Column("kind", String(64), nullable=False, server_default="train"),
    Column("plan_json", Text, nullable=False),
    Column("status", String(16), nullable=False),
    Column("message", Text, nullable=False, server_default=""),
    Column("ended", Float),
    Column("val_acc", Float),
    Column("macro_f1", Float),
    Column("seconds", Float),
    Column("trainable_params", BigInteger),
    Column("epochs_done", Integer, nullable=False, server_default="0"),
    Column("host", String(255)),
    Column("pid", Integer),
    Column("process", String(64)),
    # Liveness, on the database's own clock (seconds since the epoch): whoever holds the run (the server
    # while it is queued, the worker while it runs) renews it; a sweep fails runs whose heartbeat is stale.
    Column("heartbeat", Float),
    Column("stop_requested", Boolean, nullable=False, server_default="0"),
    Column("worker", String(255)),
    Column("lesson", String(100), nullable=False, server_default=""),
)
Index("runs_status", runs.c.status)
Index("runs_owner_created", runs.c.owner, runs.c.created)

events = Table(
    "events", metadata,
    Column("run_id", String(64), nullable=False),
    Column("seq", Integer, nullable=False),
    Column("type", String(32), nullable=False),
    Column("json", Text, nullable=False),
    PrimaryKeyConstraint("run_id", "seq"),
)
