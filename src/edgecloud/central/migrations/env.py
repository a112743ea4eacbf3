"""Alembic environment of central's store: runs on the connection store/database.py hands over."""

from alembic import context

from edgecloud.central.models import CentralBase

connection = context.config.attributes["connection"]
context.configure(
    connection=connection,
    target_metadata=CentralBase.metadata,
    render_as_batch=connection.dialect.name == "sqlite",
    version_table="central_alembic_version",
)
with context.begin_transaction():
    context.run_migrations()
