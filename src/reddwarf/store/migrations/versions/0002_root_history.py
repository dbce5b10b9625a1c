"""Root history: each time root was enabled on an instance, and by whom (the management API shows it).

Revision ID: 0002
Revises: 0001
Create Date: 2026-05-16
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "root_history",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("instance_id", sa.String(36), nullable=False),
        sa.Column("user_id", sa.String(64), nullable=False),
        sa.Column("enabled_at", sa.Double(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_root_history"),
    )
    op.create_index("ix_root_history_instance_id_id", "root_history", ["instance_id", "id"])


def downgrade() -> None:
    op.drop_index("ix_root_history_instance_id_id", table_name="root_history")
    op.drop_table("root_history")
