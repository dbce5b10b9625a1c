"""The warm pool: `pool_slots`, and `instances.workload_id` for instances made from a slot.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-22
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_SLOT_INDEX = "ix_pool_slots_profile"


def upgrade() -> None:
    op.create_table(
        "pool_slots",
        sa.Column("id", sa.String(36), nullable=False),
        sa.Column("datastore", sa.String(64), nullable=False),
        sa.Column("version", sa.String(64), nullable=False),
        sa.Column("flavor_id", sa.String(64), nullable=False),
        sa.Column("volume_gb", sa.Integer(), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("error", sa.Text(), nullable=False),
        sa.Column("created", sa.Double(), nullable=False),
        sa.Column("updated", sa.Double(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_pool_slots"),
    )
    op.create_index(
        _SLOT_INDEX, "pool_slots", ["datastore", "version", "flavor_id", "volume_gb", "state", "created"]
    )
    with op.batch_alter_table("instances") as batch:
        batch.add_column(sa.Column("workload_id", sa.String(36), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("instances") as batch:
        batch.drop_column("workload_id")
    op.drop_index(_SLOT_INDEX, table_name="pool_slots")
    op.drop_table("pool_slots")
