"""Restoring a backup chain into a new instance's volume (the `restore` step of a create from a backup), and
making the restored server the new instance's own (`adopt`).

Every artifact of the chain is read back through `storage.artifact`, which checks each stored chunk against
the manifest recorded in the store before its bytes go anywhere, and streamed into the engine's extract
tool, run as the new instance's OS user into its scratch directory. Only after every link extracted (and so
verified, whole) do the engine's init commands combine, prepare and move the data into place; the runtime
then writes the instance's init marker. The server starts after that, never on a chain that failed to
verify. A failure names the backup and the reason; a restore only reads a backup, never changes it.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
from collections.abc import Callable
from typing import BinaryIO

from reddwarf.domain.backup import SOURCE_ADMIN_SECRET, Backup, BackupStatus, ChainLink
from reddwarf.domain.errors import NotYet, PermanentError
from reddwarf.domain.instance import Instance, InstanceSpec
from reddwarf.domain.operations import Kind
from reddwarf.domain.secret import Secret
from reddwarf.domain.workload import CommandSpec, Placement, ToolSpec, WorkloadSpec
from reddwarf.storage.artifact import Manifest, read_artifact
from reddwarf.storage.base import ArtifactError
from reddwarf.store.uow import UnitOfWork
from reddwarf.workflows.reconcilers.backups import TOOL_EXIT_TIMEOUT, files_of, side_files
from reddwarf.workflows.reconcilers.deps import BackupFiles, ReconcilerDeps

log = logging.getLogger(__name__)


def chain_of(deps: ReconcilerDeps, backup_id: str) -> list[Backup]:
    """The chain to restore, the full backup first; PermanentError naming what is missing."""
    with deps.db.unit_of_work(write=False) as uow:
        chain = uow.backups.chain(backup_id)
    if not chain or chain[-1].id != backup_id:
        raise PermanentError(f"Backup {backup_id} cannot be restored: it no longer exists.")
    newest = chain[-1]
    if newest.status in (BackupStatus.NEW, BackupStatus.BUILDING) and not newest.deleting:
        # Only a branch made through a backup (`services.branches`) restores one not taken yet.
        raise NotYet(f"backup {backup_id} (taken for this branch) is not completed yet", delay=1.0)
    if newest.status is BackupStatus.FAILED:
        why = "" if newest.fault is None else f": {newest.fault.message}"
        raise PermanentError(f"Backup {backup_id} cannot be restored: it failed{why}")
    if chain[0].incremental:
        raise PermanentError(f"Backup {backup_id} cannot be restored: the parent of backup {chain[0].id} is gone.")
    for link in chain:
        if link.status is not BackupStatus.COMPLETED or link.deleting:
            raise PermanentError(f"Backup {backup_id} cannot be restored: backup {link.id} is not completed.")
    return chain


def source_admin(deps: ReconcilerDeps, backup_id: str) -> Secret:
    """The source's admin password recorded with the backup: the restored server knows only that one."""
    with deps.db.unit_of_work(write=False) as uow:
        password = uow.secrets.get(backup_id, SOURCE_ADMIN_SECRET)
    if password is None:
        raise PermanentError(f"Backup {backup_id} cannot be restored: its source credential is missing.")
    return password


def restore_volume(deps: ReconcilerDeps, instance: Instance, placement: Placement) -> None:
    """Extract and verify the chain, then run the engine's init commands; nothing if already done (the
    runtime's init marker). A re-run starts again from an empty staging area."""
    backup_id = instance.spec.restore_backup_id
    if backup_id is None:
        raise PermanentError(f"Instance {instance.id} is not a restore.")
    restore_into(deps, instance.spec, backup_id, placement, lambda: deps.workload(instance, placement))


def restore_into(
    deps: ReconcilerDeps, spec: InstanceSpec, backup_id: str, placement: Placement,
    workload: Callable[[], WorkloadSpec], after: tuple[CommandSpec, ...] = (),
) -> None:
    """`backup_id`'s chain into the prepared volume at `placement`, for a server of `spec` (`workload` its
    workload: the restore's init commands replace its own, with `after` run last); nothing if the runtime's
    init marker is there."""
    if deps.runtime.initialised(placement):
        return
    files = files_of(deps)
    chain = chain_of(deps, backup_id)
    links = [ChainLink(b.id, b.strategy, b.metadata, side_files(files, b)) for b in chain]
    version = deps.version_for(spec)
    plan = deps.engine_for(spec).backups(version).restore(placement, links)
    if len(plan.extract) != len(chain):
        raise PermanentError(f"The engine planned {len(plan.extract)} extracts for a chain of {len(chain)}.")
    for index, (backup, tool) in enumerate(zip(chain, plan.extract, strict=True)):
        _extract(deps, files, backup, placement, index, tool)
    deps.runtime.initialise(placement, dataclasses.replace(workload(), init=(*plan.init, *after), init_files=()))
    log.info("%s: restored backup %s (a chain of %d)", placement.instance_id, backup_id, len(chain))


def forget_backup(uow: UnitOfWork, backup_id: str, taken: str) -> None:
    """A backup taken for one copy (`taken`: "for a branch", "to seed a replica") goes once the copy ended; kept
    when the tenant chained an incremental onto it meanwhile (theirs now). One still being taken is left to its
    own operation, which ends it once the copy it was taken for has ended (`backups.CreateBackup`)."""
    backup = uow.backups.get(backup_id)
    if backup is None or backup.deleting or backup.status in (BackupStatus.NEW, BackupStatus.BUILDING):
        return
    if uow.backups.descendants(backup_id):
        uow.events.add(backup.instance_id, "backup", f"backup {backup_id} (taken {taken}) kept: it is a "
                       "parent of another backup")
        return
    uow.backups.mark_deleting(backup_id)
    uow.operations.enqueue(Kind.BACKUP_DELETE, backup_id)


def _extract(
    deps: ReconcilerDeps, files: BackupFiles, backup: Backup, placement: Placement, index: int, tool: ToolSpec
) -> None:
    """Stream one link's verified artifact into its extract tool."""
    manifest = Manifest.from_dict(backup.manifest)
    with deps.runtime.open_tool(placement, tool) as run:
        stdin = run.stdin
        if stdin is None:
            raise PermanentError(f"The engine's extract tool {index} does not read its input.")
        drain = threading.Thread(target=_drain, args=(run.stdout,), name="extract-stdout", daemon=True)
        drain.start()
        try:
            for piece in read_artifact(files.storage, manifest, files.keyring):
                stdin.write(piece)
        except ArtifactError as exc:
            raise PermanentError(f"Backup {backup.id} cannot be restored: {exc.message}") from None
        except BrokenPipeError:
            pass  # the tool exited early: finish() says why
        run.finish(TOOL_EXIT_TIMEOUT)
        drain.join(5.0)


def _drain(stream: BinaryIO) -> None:
    """Read (and drop) what an extract tool writes to stdout, so that it never blocks on a full pipe."""
    try:
        while stream.read(1 << 16):
            pass
    except (OSError, ValueError):
        return
