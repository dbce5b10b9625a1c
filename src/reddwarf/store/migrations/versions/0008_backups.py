"""Backups, backup strategies and archived logs (WAL shipped to backup storage).

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-04
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "backups",
        sa.Column("id", sa.String(36), nullable=False),
        sa.Column("project_id", sa.String(64), nullable=False),
        sa.Column("name", sa.String(255), nullable=False),
        sa.Column("description", sa.Text(), nullable=True),
        sa.Column("instance_id", sa.String(36), nullable=False),
        sa.Column("parent_id", sa.String(36), nullable=True),
        sa.Column("incremental", sa.Boolean(), nullable=False),
        sa.Column("datastore", sa.String(64), nullable=False),
        sa.Column("datastore_version", sa.String(64), nullable=False),
        sa.Column("datastore_version_id", sa.String(128), nullable=False),
        sa.Column("status", sa.String(32), nullable=False),
        sa.Column("strategy", sa.String(64), nullable=False),
        sa.Column("container", sa.String(255), nullable=False),
        sa.Column("location", sa.Text(), nullable=False),
        sa.Column("size_bytes", sa.BigInteger(), nullable=True),
        sa.Column("raw_bytes", sa.BigInteger(), nullable=True),
        sa.Column("bytes_done", sa.BigInteger(), nullable=False),
        sa.Column("phase", sa.String(32), nullable=False),
        sa.Column("backup_metadata", sa.JSON(), nullable=False),
        sa.Column("manifest", sa.JSON(), nullable=False),
        sa.Column("fault_message", sa.Text(), nullable=True),
        sa.Column("fault_details", sa.Text(), nullable=True),
        sa.Column("fault_created", sa.Double(), nullable=True),
        sa.Column("deleting", sa.Boolean(), nullable=False),
        sa.Column("deleted_at", sa.Double(), nullable=True),
        sa.Column("created", sa.Double(), nullable=False),
        sa.Column("updated", sa.Double(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_backups")),
    )
    op.create_index(op.f("ix_backups_project_id_created_id"), "backups", ["project_id", "created", "id"])
    op.create_index(op.f("ix_backups_instance_id_created"), "backups", ["instance_id", "created"])
    op.create_index(op.f("ix_backups_parent_id"), "backups", ["parent_id"])
    op.create_table(
        "backup_strategies",
        sa.Column("project_id", sa.String(64), nullable=False),
        sa.Column("instance_id", sa.String(36), nullable=False),
        sa.Column("backend", sa.String(32), nullable=False),
        sa.Column("container", sa.String(255), nullable=False),
        sa.Column("created", sa.Double(), nullable=False),
        sa.PrimaryKeyConstraint("project_id", "instance_id", name=op.f("pk_backup_strategies")),
    )
    op.create_table(
        "archived_logs",
        sa.Column("instance_id", sa.String(36), nullable=False),
        sa.Column("name", sa.String(64), nullable=False),
        sa.Column("key", sa.Text(), nullable=False),
        sa.Column("size_bytes", sa.BigInteger(), nullable=False),
        sa.Column("manifest", sa.JSON(), nullable=False),
        sa.Column("shipped_at", sa.Double(), nullable=False),
        sa.PrimaryKeyConstraint("instance_id", "name", name=op.f("pk_archived_logs")),
    )


def downgrade() -> None:
    op.drop_table("archived_logs")
    op.drop_table("backup_strategies")
    op.drop_index(op.f("ix_backups_parent_id"), table_name="backups")
    op.drop_index(op.f("ix_backups_instance_id_created"), table_name="backups")
    op.drop_index(op.f("ix_backups_project_id_created_id"), table_name="backups")
    op.drop_table("backups")
