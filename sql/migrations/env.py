"""The migration environment: runs the revisions on the connection ``nightjar.sql.metadata_db`` hands over."""

from __future__ import annotations

from alembic import context

from nightjar.sql.registry_models import Base


def run_migrations() -> None:
    """Run the migrations on the connection ``metadata_db`` hands over (SQLite tables altered in Alembic's batch
    mode)."""
    connection = context.config.attributes.get("connection")
    if connection is None:
        raise RuntimeError("run the metadata migrations with `nightjar db upgrade` (nightjar.sql.metadata_db)")
    context.configure(
        connection=connection,
        target_metadata=Base.metadata,
        # SQLite alters a table by copying it; Alembic's batch mode does that.
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


# Alembic runs this file with its context set up; imported as a plain module (doctests, tools) it does nothing.
if getattr(context, "config", None) is not None:
    run_migrations()
