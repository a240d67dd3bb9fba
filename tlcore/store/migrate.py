"""Bring a store's schema up to date with Alembic, safely when several processes open it at once.

Stores made before migrations existed (runs.sqlite with its runs and events tables but no
alembic_version) are adopted by the first migration, which only creates what is missing.
"""
from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy import text

_HERE = Path(__file__).parent
_PG_LOCK = 74_210_001   # pg_advisory_lock key: one migrator at a time across servers


def _config(conn) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(_HERE / "migrations"))
    cfg.attributes["connection"] = conn
    return cfg


def upgrade(db) -> None:
    if db.sqlite:
        with db.write() as conn:   # BEGIN IMMEDIATE: a second process waits here, then finds nothing to do
            command.upgrade(_config(conn), "head")
        return
    with db.engine.connect() as conn:
        conn.execute(text("SELECT pg_advisory_lock(:k)"), {"k": _PG_LOCK})   # held by the session, not the transaction
        conn.commit()
        try:
            with conn.begin():
                command.upgrade(_config(conn), "head")
        finally:
            conn.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": _PG_LOCK})
            conn.commit()
