"""Storage reservations (`storage_reservations`): every volume holds its size against the host's storage.

Existing live instances and warm-pool slots get the reservation of the volume they already have.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-04
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_GIB = 1024**3


def upgrade() -> None:
    table = op.create_table(
        "storage_reservations",
        sa.Column("holder_id", sa.String(64), nullable=False),
        sa.Column("kind", sa.String(32), nullable=False),
        sa.Column("size_bytes", sa.BigInteger(), nullable=False),
        sa.Column("created", sa.Double(), nullable=False),
        sa.PrimaryKeyConstraint("holder_id", name="pk_storage_reservations"),
    )
    bind = op.get_bind()
    moment = time.time()
    rows = []
    for instance_id, spec in bind.execute(sa.text("SELECT id, spec FROM instances WHERE deleted_at IS NULL")):
        parsed = json.loads(spec) if isinstance(spec, str) else spec
        size = int(parsed.get("volume_size_gb") or 0)
        rows.append({"holder_id": instance_id, "kind": "instance", "size_bytes": size * _GIB, "created": moment})
    for slot_id, volume_gb in bind.execute(sa.text("SELECT id, volume_gb FROM pool_slots")):
        rows.append({"holder_id": slot_id, "kind": "pool_slot", "size_bytes": int(volume_gb) * _GIB,
                     "created": moment})
    if rows:
        op.bulk_insert(table, rows)


def downgrade() -> None:
    op.drop_table("storage_reservations")
