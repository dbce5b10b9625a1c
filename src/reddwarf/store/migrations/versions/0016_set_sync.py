"""Synchronous mode of a replication set (docs/failover.md): what it does when no replica can acknowledge
(`durability`), where it stands now (`sync_state`: sync, resyncing or async) and since when.

Revision ID: 0016
Revises: 0015
Create Date: 2026-12-06
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0016"
down_revision: str | None = "0015"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("replication_sets") as batch:
        batch.add_column(sa.Column("durability", sa.String(16), nullable=False, server_default="strict"))
        batch.add_column(sa.Column("sync_state", sa.String(16), nullable=False, server_default="async"))
        batch.add_column(sa.Column("sync_changed", sa.Double(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("replication_sets") as batch:
        for column in ("sync_changed", "sync_state", "durability"):
            batch.drop_column(column)
