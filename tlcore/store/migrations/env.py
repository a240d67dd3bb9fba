"""Alembic's entry point: migrations always run on the connection tlcore hands over (store/migrate.py)."""
from alembic import context

from tlcore.store.schema import metadata

connection = context.config.attributes["connection"]
context.configure(connection=connection, target_metadata=metadata, render_as_batch=connection.dialect.name == "sqlite",
                  transactional_ddl=True)
with context.begin_transaction():
    context.run_migrations()
