"""Child operations (docs/reconcile-loop.md "Parent and child operations"): the operation that enqueued one.

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-05
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0014"
down_revision: str | None = "0013"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("operations") as batch:
        batch.add_column(sa.Column("parent_id", sa.String(36), nullable=True))
        batch.create_index("ix_operations_parent_id", ["parent_id"])


def downgrade() -> None:
    with op.batch_alter_table("operations") as batch:
        batch.drop_index("ix_operations_parent_id")
        batch.drop_column("parent_id")
