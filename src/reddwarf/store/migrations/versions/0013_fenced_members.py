"""A member fenced by a failover (docs/replication.md "Eject"): when it was, so that nothing starts it again in
its old role.

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-05
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0013"
down_revision: str | None = "0012"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("set_members") as batch:
        batch.add_column(sa.Column("fenced", sa.Double(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("set_members") as batch:
        batch.drop_column("fenced")
