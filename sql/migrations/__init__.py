"""Alembic migrations of the metadata database (run through ``nightjar.sql.metadata_db`` or ``nightjar db``).

A change of the tables in ``nightjar.sql.registry_models`` needs a new revision file in ``versions/`` (see
docs/operating.md, "Changing the metadata schema"); tests/sql/test_migrations.py checks that the migrated schema
matches the models.
"""
