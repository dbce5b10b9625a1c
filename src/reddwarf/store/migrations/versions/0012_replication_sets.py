"""Replication sets: members with roles (docs/replication.md).

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-05
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0012"
down_revision: str | None = "0011"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "replication_sets",
        sa.Column("id", sa.String(36), nullable=False),
        sa.Column("project_id", sa.String(64), nullable=False),
        sa.Column("primary_id", sa.String(36), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("created", sa.Double(), nullable=False),
        sa.Column("updated", sa.Double(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_replication_sets"),
    )
    op.create_table(
        "set_members",
        sa.Column("instance_id", sa.String(36), nullable=False),
        sa.Column("set_id", sa.String(36), nullable=False),
        sa.Column("role", sa.String(16), nullable=False),
        sa.Column("created", sa.Double(), nullable=False),
        sa.Column("streaming", sa.Boolean(), nullable=True),
        sa.Column("lag_bytes", sa.BigInteger(), nullable=True),
        sa.Column("lag_seconds", sa.Double(), nullable=True),
        sa.Column("health_detail", sa.Text(), nullable=True),
        sa.Column("observed", sa.Double(), nullable=True),
        sa.ForeignKeyConstraint(["set_id"], ["replication_sets.id"], name="fk_set_members_set_id_replication_sets",
                                ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("instance_id", name="pk_set_members"),
    )
    op.create_index("ix_set_members_set_id", "set_members", ["set_id"])


def downgrade() -> None:
    op.drop_index("ix_set_members_set_id", table_name="set_members")
    op.drop_table("set_members")
    op.drop_table("replication_sets")
