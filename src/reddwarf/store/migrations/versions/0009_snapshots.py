"""Snapshots of instance volumes (the copy-on-write pool).

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-04
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "snapshots",
        sa.Column("id", sa.String(36), nullable=False),
        sa.Column("project_id", sa.String(64), nullable=False),
        sa.Column("name", sa.String(255), nullable=False),
        sa.Column("description", sa.Text(), nullable=True),
        sa.Column("instance_id", sa.String(36), nullable=False),
        sa.Column("datastore", sa.String(64), nullable=False),
        sa.Column("datastore_version", sa.String(64), nullable=False),
        sa.Column("volume_size_gb", sa.Integer(), nullable=False),
        sa.Column("status", sa.String(32), nullable=False),
        sa.Column("fault_message", sa.Text(), nullable=True),
        sa.Column("fault_details", sa.Text(), nullable=True),
        sa.Column("fault_created", sa.Double(), nullable=True),
        sa.Column("deleting", sa.Boolean(), nullable=False),
        sa.Column("deleted_at", sa.Double(), nullable=True),
        sa.Column("created", sa.Double(), nullable=False),
        sa.Column("updated", sa.Double(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_snapshots")),
    )
    op.create_index(op.f("ix_snapshots_project_id_created_id"), "snapshots", ["project_id", "created", "id"])
    op.create_index(op.f("ix_snapshots_instance_id_created"), "snapshots", ["instance_id", "created"])


def downgrade() -> None:
    op.drop_index(op.f("ix_snapshots_instance_id_created"), table_name="snapshots")
    op.drop_index(op.f("ix_snapshots_project_id_created_id"), table_name="snapshots")
    op.drop_table("snapshots")
