"""Status as conditions: instances get `status_version` (what a compare-and-swap of the conditions expects)
and `observed_generation`; instances recorded before have their conditions filled in from their status.

The backfill spells its own mapping (the status each instance had when this revision ran -> the conditions
`domain.conditions` gives that status) instead of importing the domain: a migration must do the same thing
whenever it runs, whatever the code around it has become. A status no code path writes is left without
conditions (the next write starts from none).

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-06
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# (status, operating_status or None for any, deleting or None for any) -> (Ready, Progressing, Degraded),
# each (status, reason).
_Triple = tuple[tuple[bool, str], tuple[bool, str], tuple[bool, str]]
_BACKFILL: dict[tuple[str, str | None, bool | None], _Triple] = {
    ("BUILD", None, None): ((False, "Creating"), (True, "Creating"), (False, "Creating")),
    ("REBOOT", None, None): ((False, "Rebooting"), (True, "Rebooting"), (False, "Rebooting")),
    ("SHUTDOWN", None, True): ((False, "Deleting"), (True, "Deleting"), (False, "Deleting")),
    ("SHUTDOWN", "ERROR", False): ((False, "ServerNotRunning"), (False, "Settled"), (True, "EndpointNotAnswering")),
    ("SHUTDOWN", None, False): ((False, "ServerNotRunning"), (False, "Settled"), (True, "ServerNotRunning")),
    ("ACTIVE", "ERROR", None): ((True, "Available"), (False, "Settled"), (True, "EndpointNotAnswering")),
    ("ACTIVE", None, None): ((True, "Available"), (False, "Settled"), (False, "EndpointAnswers")),
    ("ERROR", None, None): ((False, "OperationFailed"), (False, "OperationFailed"), (True, "OperationFailed")),
}


def _conditions(status: str, operating: str, deleting: bool, since: float) -> list[dict[str, Any]] | None:
    for (wanted, wanted_operating, wanted_deleting), triple in _BACKFILL.items():
        if wanted != status or wanted_operating not in (None, operating):
            continue
        if wanted_deleting not in (None, deleting):
            continue
        return [
            {"type": kind, "status": flag, "reason": reason, "message": "", "since": since}
            for kind, (flag, reason) in zip(("Ready", "Progressing", "Degraded"), triple, strict=True)
        ]
    return None


def upgrade() -> None:
    with op.batch_alter_table("instances") as batch:
        batch.add_column(sa.Column("observed_generation", sa.Integer(), nullable=False, server_default="0"))
        batch.add_column(sa.Column("status_version", sa.Integer(), nullable=False, server_default="0"))
    instances = sa.table(
        "instances",
        sa.column("id", sa.String),
        sa.column("status", sa.String),
        sa.column("operating_status", sa.String),
        sa.column("deleting", sa.Boolean),
        sa.column("deleted_at", sa.Double),
        sa.column("updated", sa.Double),
        sa.column("conditions", sa.JSON),
    )
    connection = op.get_bind()
    rows = connection.execute(
        sa.select(
            instances.c.id, instances.c.status, instances.c.operating_status, instances.c.deleting,
            instances.c.updated, instances.c.conditions,
        ).where(instances.c.deleted_at.is_(None))
    ).all()
    for row in rows:
        existing = row.conditions if not isinstance(row.conditions, str) else json.loads(row.conditions)
        if existing:
            continue
        filled = _conditions(row.status, row.operating_status, bool(row.deleting), float(row.updated))
        if filled is not None:
            connection.execute(instances.update().where(instances.c.id == row.id).values(conditions=filled))


def downgrade() -> None:
    with op.batch_alter_table("instances") as batch:
        batch.drop_column("status_version")
        batch.drop_column("observed_generation")
