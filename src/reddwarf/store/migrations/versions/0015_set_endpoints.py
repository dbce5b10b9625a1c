"""A replication set's policy (mode, automatic failover), its stable endpoints, whether its writer endpoint is
held (refusing connections while its roles change) and its last automatic failover (docs/failover.md). A set
formed before this release gets its primary's address as its writer endpoint.

Revision ID: 0015
Revises: 0014
Create Date: 2026-12-05
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0015"
down_revision: str | None = "0014"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("replication_sets") as batch:
        batch.add_column(sa.Column("mode", sa.String(16), nullable=False, server_default="async"))
        batch.add_column(sa.Column("auto_failover", sa.Boolean(), nullable=False, server_default=sa.true()))
        batch.add_column(sa.Column("writer_address", sa.String(64), nullable=True))
        batch.add_column(sa.Column("writer_port", sa.Integer(), nullable=True))
        batch.add_column(sa.Column("reader_address", sa.String(64), nullable=True))
        batch.add_column(sa.Column("reader_port", sa.Integer(), nullable=True))
        batch.add_column(sa.Column("failed_over", sa.Double(), nullable=True))
        batch.add_column(sa.Column("writer_held", sa.Boolean(), nullable=False, server_default=sa.false()))
    op.execute(
        "UPDATE replication_sets SET writer_address = (SELECT endpoint_address FROM instances "
        "WHERE instances.id = replication_sets.primary_id), writer_port = (SELECT endpoint_port FROM instances "
        "WHERE instances.id = replication_sets.primary_id)"
    )


def downgrade() -> None:
    with op.batch_alter_table("replication_sets") as batch:
        for column in ("writer_held", "failed_over", "reader_port", "reader_address", "writer_port", "writer_address",
                       "auto_failover", "mode"):
            batch.drop_column(column)
