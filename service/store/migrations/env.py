"""Alembic's entry point for clustermatch's store migrations.

Migrations run only through `service.store.migrate` (the `clustermatch db upgrade` command and the
first start on an empty database), which hands over an open connection: there is no alembic.ini,
and no URL is read here.
"""

from __future__ import annotations

from alembic import context

connection = context.config.attributes["connection"]
context.configure(
    connection=connection,
    target_metadata=None,
    # SQLite cannot ALTER most things; batch mode rebuilds a table where a migration needs it.
    render_as_batch=connection.dialect.name == "sqlite",
    transactional_ddl=True,
)
with context.begin_transaction():
    context.run_migrations()
