"""The run store's database: one schema over SQLAlchemy Core for SQLite (the embedded default) and
PostgreSQL (`TLCORE_STORE_URL=postgresql+psycopg://...`), migrated with Alembic."""
from .db import Database, db_now, open_database

__all__ = ["Database", "db_now", "open_database"]
