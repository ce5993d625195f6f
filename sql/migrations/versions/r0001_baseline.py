"""Baseline: users, filters (versions, outputs, Avro schemas), watchlists and watchmaps.

Revision ID: 0001
Revises:
Created: 2026-12-01

Databases made before migrations existed (by ``create_all``, no version table) are adopted: a table that exists
is kept as it is, after a check that it has every column of the baseline, and only the missing ones are made.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from nightjar.sql.metadata_db import MetadataSchemaError

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def _columns(*extra: sa.Column) -> list[sa.Column]:
    """The columns every owned, shared object has (filters, watchlists, watchmaps)."""
    return [
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("owner", sa.String(length=200), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        *extra,
    ]


def _shared() -> list[sa.Column]:
    """The columns watchlists and watchmaps share."""
    return [
        sa.Column("description", sa.Text(), nullable=False),
        sa.Column("visibility", sa.String(length=16), nullable=False),
        sa.Column("group_name", sa.String(length=200), nullable=True),
        sa.Column("active", sa.Boolean(), nullable=False),
    ]


Index = tuple[str, list[str], bool]  # name, columns, unique


def _tables() -> list[tuple[sa.Table, list[Index]]]:
    """Each baseline table (on a metadata of its own, as it was at this revision) with its indexes."""
    meta = sa.MetaData()
    users = sa.Table(
        "users",
        meta,
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("name", sa.String(length=100), nullable=False),
        sa.Column("role", sa.String(length=16), nullable=False),
        sa.Column("email", sa.String(length=320), nullable=True),
        sa.Column("topics", sa.Text(), nullable=False),
        sa.Column("token_sha256", sa.String(length=64), nullable=False),
        sa.Column("active", sa.Boolean(), nullable=False),
        sa.Column("created", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("name"),
    )
    filters = sa.Table(
        "filters",
        meta,
        *_columns(
            sa.Column("sql", sa.Text(), nullable=False),
            sa.Column("version", sa.Integer(), nullable=False),
            sa.Column("active", sa.Boolean(), nullable=False),
            sa.Column("visibility", sa.String(length=16), nullable=False),
            sa.Column("group_name", sa.String(length=200), nullable=True),
            sa.Column("mode", sa.String(length=8), nullable=False),
            sa.Column("kafka", sa.Boolean(), nullable=False),
            sa.Column("format", sa.String(length=8), nullable=False),
            sa.Column("copied_from", sa.Integer(), nullable=True),
            sa.Column("created", sa.DateTime(timezone=True), nullable=False),
            sa.Column("updated", sa.DateTime(timezone=True), nullable=False),
            sa.Column("failures", sa.Integer(), nullable=False),
            sa.Column("last_error", sa.Text(), nullable=True),
            sa.Column("last_error_at", sa.DateTime(timezone=True), nullable=True),
        ),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("owner", "name", name="uq_filters_owner_name"),
        sqlite_autoincrement=True,
    )
    versions = sa.Table(
        "filter_versions",
        meta,
        sa.Column("filter_id", sa.Integer(), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("sql", sa.Text(), nullable=False),
        sa.Column("mode", sa.String(length=8), nullable=False),
        sa.Column("created", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["filter_id"], ["filters.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("filter_id", "version"),
    )
    outputs = sa.Table(
        "filter_outputs",
        meta,
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("filter_id", sa.Integer(), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("target", sa.String(length=2000), nullable=False),
        sa.ForeignKeyConstraint(["filter_id"], ["filters.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
    )
    schemas = sa.Table(
        "avro_schemas",
        meta,
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("fingerprint", sa.String(length=64), nullable=False),
        sa.Column("filter_id", sa.Integer(), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("schema", sa.Text(), nullable=False),
        sa.Column("created", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("fingerprint"),
        sqlite_autoincrement=True,
    )
    watchlists = sa.Table(
        "watchlists",
        meta,
        *_columns(
            *_shared(),
            sa.Column("radius_arcsec", sa.Float(), nullable=False),
            sa.Column("version", sa.Integer(), nullable=False),
            sa.Column("cones", sa.Integer(), nullable=False),
            sa.Column("history_job", sa.String(length=32), nullable=True),
            sa.Column("created", sa.DateTime(timezone=True), nullable=False),
            sa.Column("updated", sa.DateTime(timezone=True), nullable=False),
        ),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("owner", "name", name="uq_watchlists_owner_name"),
        sqlite_autoincrement=True,
    )
    watchmaps = sa.Table(
        "watchmaps",
        meta,
        *_columns(
            *_shared(),
            sa.Column("kind", sa.String(length=16), nullable=False),
            sa.Column("max_order", sa.Integer(), nullable=False),
            sa.Column("sky_fraction", sa.Float(), nullable=False),
            sa.Column("version", sa.Integer(), nullable=False),
            sa.Column("history_job", sa.String(length=32), nullable=True),
            sa.Column("created", sa.DateTime(timezone=True), nullable=False),
            sa.Column("updated", sa.DateTime(timezone=True), nullable=False),
        ),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("owner", "name", name="uq_watchmaps_owner_name"),
        sqlite_autoincrement=True,
    )
    return [
        (users, [("ix_users_token_sha256", ["token_sha256"], True)]),
        (filters, [("ix_filters_owner", ["owner"], False)]),
        (versions, []),
        (outputs, [("ix_filter_outputs_filter_id", ["filter_id"], False)]),
        (schemas, [("ix_avro_schemas_filter_id", ["filter_id"], False)]),
        (watchlists, [("ix_watchlists_owner", ["owner"], False)]),
        (watchmaps, [("ix_watchmaps_owner", ["owner"], False)]),
    ]


def upgrade() -> None:
    """Create the baseline tables and their indexes, keeping tables that exist with every column; a MetadataSchemaError
    for an existing table that lacks some."""
    inspector = sa.inspect(op.get_bind())
    existing = set(inspector.get_table_names())
    for table, indexes in _tables():
        if table.name in existing:
            have = {c["name"] for c in inspector.get_columns(table.name)}
            missing = [c.name for c in table.columns if c.name not in have]
            if missing:
                raise MetadataSchemaError(
                    f"the existing table {table.name!r} lacks the columns {', '.join(missing)}: it was not made by "
                    "Nightjar, or by a version older than any that can be upgraded; move it out of the way"
                )
            continue
        table.create(op.get_bind())
        for name, columns, unique in indexes:
            op.create_index(name, table.name, columns, unique=unique)


def downgrade() -> None:
    """Drop every baseline table."""
    for table, _ in reversed(_tables()):
        op.drop_table(table.name)
