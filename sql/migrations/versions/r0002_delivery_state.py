"""Delivery state: the latest status of each filter match per channel, keyed, so delivery reads only its keys.

Revision ID: 0002
Revises: 0001
Created: 2026-12-02

The rows are filled from the lake's filter ledger by the first pipeline that starts (``nightjar.sql.delivery_state``
adopts the ledger when this table is empty), not here: the migration does not know where the lake is.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    """Create ``delivery_state``."""
    op.create_table(
        "delivery_state",
        sa.Column("filter_id", sa.Integer(), nullable=False),
        sa.Column("key", sa.String(length=200), nullable=False),
        sa.Column("channel", sa.String(length=16), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("recorded_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("filter_id", "key", "channel"),
    )


def downgrade() -> None:
    """Drop ``delivery_state``."""
    op.drop_table("delivery_state")
