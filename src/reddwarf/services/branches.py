"""Branches: a new instance created with the data of another, running one at this moment (`restorePoint:
{"instanceRef": ...}`), by a copy-on-write snapshot of its volume (docs/branches.md).

The request is checked before anything is written: the source must be the caller's (404 otherwise, as
every instance), ACTIVE (422: a server that is building, restarting or being backed up is not copied), of
the datastore version asked for (400: a branch is the same server, not an upgrade), and no larger than the
volume asked for (400).

A deployment whose runtime keeps no volumes on a copy-on-write pool (`ServiceContext.branch_refusal` says
why) branches through a backup and a restore instead, never by a full copy under a freeze: the create
records a full backup of the source (a real one, in the tenant's list while it exists, named after the
branch) and the new instance restores it as soon as it completes; the branch's create deletes it once
the branch answers (`workflows/reconcilers/instances.py`). The source is BACKUP only while it streams.
"""

from __future__ import annotations

from reddwarf.domain.backup import NAME_MAX
from reddwarf.domain.catalog import DatastoreVersion
from reddwarf.domain.errors import BadRequest, NotFound, UnprocessableEntity
from reddwarf.domain.instance import Instance
from reddwarf.domain.status import InstanceStatus
from reddwarf.identity.context import AuthContext
from reddwarf.services import backups
from reddwarf.services.context import ServiceContext
from reddwarf.store.uow import UnitOfWork

FIELD = "restorePoint.instanceRef"


def branch_source(ctx: ServiceContext, auth: AuthContext, instance_id: str) -> Instance:
    """The running instance a create branches (404 unknown or another project's; 422 not ACTIVE)."""
    with ctx.db.unit_of_work(write=False) as uow:
        source = uow.instances.get(instance_id) if instance_id else None
    if source is None or source.project_id != auth.project_id:
        raise NotFound("Instance", instance_id[:64])
    if source.deleting or source.status is not InstanceStatus.ACTIVE:
        state = "being deleted" if source.deleting else f"status {source.status.value}"
        raise UnprocessableEntity(f"Instance {source.id} cannot be branched ({state}); it must be ACTIVE.")
    return source


def check_branch(
    source: str, datastore: str, datastore_version: str, source_gb: int, version: DatastoreVersion, volume_gb: int
) -> None:
    """A branch is of its source's datastore version, on a volume at least as large (`source`: "instance
    <id>" or "snapshot <id>", as the messages name it)."""
    if (version.datastore, version.name) != (datastore, datastore_version):
        raise BadRequest(
            f"{source[:1].upper()}{source[1:]} is of {datastore} {datastore_version}; a branch of it runs the "
            f"same, not {version.datastore} {version.name}.", field="datastore.version",
        )
    if volume_gb < source_gb:
        raise BadRequest(
            f"volume.size {volume_gb} GB is smaller than the {source_gb} GB volume of {source}; a branch needs "
            "at least as much.", field="volume.size",
        )


def via_backup(ctx: ServiceContext) -> bool:
    """Does a branch of a running instance go through a backup and a restore here (no copy-on-write pool)?"""
    return ctx.branch_refusal is not None


def record_backup(ctx: ServiceContext, uow: UnitOfWork, source: Instance, backup_id: str, branch_name: str) -> None:
    """The full backup a branch made through a backup restores (`via_backup`), in the create's unit of work."""
    backups.record(ctx, uow, source, backup_id, f"branch {branch_name}"[:NAME_MAX],
                   f"Taken to branch instance {source.id} into {branch_name!r}; deleted once the branch is made.",
                   None)
