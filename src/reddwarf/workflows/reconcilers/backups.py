"""Backup operations: take a backup ("backup.create", on the instance) and delete one ("backup.delete", on
the backup), as journaled steps.

Taking one: `start` (status BUILDING, the instance BACKUP) -> `stream` (the engine's tool runs through the
runtime; every byte of its stdout is compressed, checksummed, optionally encrypted and written by
`storage.artifact` under a name that carries the attempt's fence tag, so that a stale holder of the lease
never writes over the current one) -> `complete` (in the transaction that confirms the lease: the manifest,
the engine's metadata, COMPLETED, the instance ACTIVE again) -> `tidy` (objects of earlier attempts go).
Nothing is COMPLETED until `complete` commits; a failed backup is FAILED with a fault and its objects are
removed. The instance keeps serving throughout: only its status says BACKUP. With `REDDWARF_VERIFY_BACKUPS`
on, `complete` also records a "backup.verify" of the backup (`reconcilers.verify`).
"""

from __future__ import annotations

import contextlib
import json
import logging
import re
import time
from collections.abc import Iterator, Mapping
from typing import Any

from reddwarf import fencing
from reddwarf.domain.backup import SOURCE_ADMIN_SECRET, Backup, BackupPhase, BackupResult, BackupStatus, ParentBackup
from reddwarf.domain.conditions import Observation
from reddwarf.domain.errors import NotYet, PermanentError
from reddwarf.domain.instance import Instance
from reddwarf.domain.operations import BackupCreate, Kind, payload_of
from reddwarf.domain.secret import ADMIN_SECRET, Secret
from reddwarf.domain.status import Fault
from reddwarf.domain.workload import Placement
from reddwarf.engines.base import BackupRun
from reddwarf.storage.artifact import ArtifactWriter, Manifest, get_side_file, put_side_file
from reddwarf.storage.base import ArtifactError
from reddwarf.store.records import ACTIVE_STATES
from reddwarf.store.uow import UnitOfWork
from reddwarf.workflows.kernel.context import OperationContext, StepResult
from reddwarf.workflows.reconcilers import archive
from reddwarf.workflows.reconcilers.deps import BackupFiles, ReconcilerDeps

log = logging.getLogger(__name__)

CREATE = Kind.BACKUP_CREATE
DELETE = Kind.BACKUP_DELETE
VERIFY = Kind.BACKUP_VERIFY
# How often a running backup's progress (bytes done) is written.
PROGRESS_EVERY = 1.0
# Read size from the tool's stdout.
PIECE = 1 << 20
# How long a tool may take to exit once its stdout has ended; how long it may write nothing at all.
TOOL_EXIT_TIMEOUT = 300.0
TOOL_IDLE_TIMEOUT = 600.0
GIB = 1 << 30


def _stream_limit(instance: Instance) -> int:
    """The most a backup's stream may hold: twice the instance's volume (a tool's stream is the files on it,
    plus some WAL or framing), and never less than a GiB more than it."""
    volume = instance.spec.volume_size_gb * GIB
    return max(2 * volume, volume + GIB)


def prefix_of(backup: Backup) -> str:
    """Every object of a backup lives under this prefix: project, container (Trove's), backup id."""
    return f"{backup.project_id}/{backup.container}/{backup.id}/"


def _attempt_name(tag: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]", "_", tag)


def files_of(deps: ReconcilerDeps) -> BackupFiles:
    if deps.backups is None:
        raise PermanentError("No backup storage is configured on this worker.")
    return deps.backups


def side_files(files: BackupFiles, backup: Backup) -> dict[str, bytes]:
    """A completed backup's side files (the engine's small files, e.g. PostgreSQL's backup manifest),
    verified against its manifest."""
    manifest = Manifest.from_dict(backup.manifest)
    try:
        return {name: get_side_file(files.storage, manifest, name, files.keyring) for name in manifest.side_files}
    except ArtifactError as exc:
        raise PermanentError(f"Backup {backup.id} cannot be used: {exc.message}") from None


class CreateBackup:
    def __init__(self, deps: ReconcilerDeps) -> None:
        self.deps = deps

    def run(self, ctx: OperationContext) -> None:
        deps = self.deps
        payload = payload_of(ctx.op.kind, ctx.op.payload, BackupCreate)
        with deps.db.unit_of_work(write=False) as uow:
            backup = uow.backups.get(payload.backup_id)
            found = uow.instances.get_with_secrets(ctx.resource_id)
            parent = None if backup is None or backup.parent_id is None else uow.backups.get(backup.parent_id)
        if backup is None:
            return
        if backup.status is BackupStatus.COMPLETED:
            # Completed by this operation (journaled): a retry still tidies up what earlier attempts left.
            if "complete" in ctx.journal and self.deps.backups is not None:
                keep = str(ctx.journal["stream"]["attempt"])
                ctx.step("tidy", lambda: tidy(files_of(deps), backup, keep=keep))
            return
        if found is None or found[0].deleting:
            raise PermanentError(f"Instance {ctx.resource_id} no longer exists or is being deleted.")
        _still_wanted(deps, ctx)
        instance, owned = found
        admin = owned.get(ADMIN_SECRET)
        if admin is None:
            raise PermanentError("The instance's admin credential is missing.")
        files = files_of(deps)
        ctx.store_step("start", lambda uow: self._start(uow, instance, backup))
        placement = deps.placement(instance)
        version = deps.version_for(instance.spec)
        engine = deps.engine(instance)

        def stream() -> StepResult:
            parent_view = None
            if backup.parent_id is not None:
                if parent is None or parent.status is not BackupStatus.COMPLETED:
                    raise PermanentError(f"The parent backup {backup.parent_id} is gone or not completed.")
                parent_view = ParentBackup(parent.id, parent.metadata, side_files(files, parent))
            run = engine.backups(version).backup(placement, admin, parent_view)
            return self.stream(files, backup, instance, placement, run)

        result = ctx.step("stream", stream)
        _still_wanted(deps, ctx)
        ctx.store_step("complete", lambda uow: self._complete(uow, files, instance, backup, result, admin))
        ctx.step("tidy", lambda: tidy(files, backup, keep=str(result["attempt"])))

    def _start(self, uow: UnitOfWork, instance: Instance, backup: Backup) -> None:
        uow.backups.start(backup.id)
        status, _ = uow.instances.record(
            instance.id, Observation.BACKING_UP, f"backup {backup.id} running", generation=instance.generation
        )
        uow.events.add(instance.id, status.value, f"backup {backup.id} started")

    def stream(
        self, files: BackupFiles, backup: Backup, instance: Instance, placement: Placement, run: BackupRun
    ) -> StepResult:
        deps = self.deps
        attempt = _attempt_name(fencing.current().tag)
        key = f"{prefix_of(backup)}{attempt}/data"
        report = _Progress(deps, backup.id)
        report(0, BackupPhase.PREPARING, force=True)
        run.prepare()
        report(0, BackupPhase.STREAMING, force=True)
        writer = ArtifactWriter(files.storage, key, files.options, files.keyring)
        limit = _stream_limit(instance)
        try:
            with contextlib.ExitStack() as stack:
                tool = None if run.tool is None else stack.enter_context(deps.runtime.open_tool(placement, run.tool))
                source = self._archived(instance, run) if tool is None else tool.output(PIECE, TOOL_IDLE_TIMEOUT)
                for piece in source:
                    run.observe(piece)
                    writer.write(piece)
                    if writer.raw_bytes > limit:
                        raise PermanentError(
                            f"The backup stream passed {limit} bytes, more than the instance's volume can "
                            "hold: something other than the database's files is being read."
                        )
                    report(writer.raw_bytes, BackupPhase.STREAMING)
                collected: Mapping[str, bytes] = {} if tool is None else tool.finish(TOOL_EXIT_TIMEOUT)
            report(writer.raw_bytes, BackupPhase.FINISHING, force=True)
            result: BackupResult = run.finish(collected)
            manifest = writer.close()
        except BaseException:
            writer.abort()
            raise
        for name, data in result.side_files.items():
            manifest = put_side_file(
                files.storage, manifest, name, f"{prefix_of(backup)}{attempt}/{name}", data, files.keyring
            )
        # The manifest beside the artifact too: storage alone says what each object is (the store's copy is
        # the one a restore trusts).
        files.storage.put(f"{prefix_of(backup)}{attempt}/manifest.json", json.dumps(manifest.to_dict()).encode())
        return {"attempt": attempt, "key": key, "manifest": manifest.to_dict(), "metadata": dict(result.metadata)}

    def _archived(self, instance: Instance, run: BackupRun) -> Iterator[bytes]:
        """A WAL-based backup's stream: what the server archived, shipped first, then the run's pieces of it."""
        deps = self.deps
        shipper = archive.ArchiveShipper(deps, fencing.current().tag)
        while (shipped := shipper.ship(instance)) == archive.BATCH:
            fencing.current().check()
        if shipped is None:
            raise NotYet("the instance's archived logs are being shipped; the backup goes on next", delay=1.0)
        pieces = run.pieces(archive.shipped_names(deps, instance.id))
        return archive.stream_pieces(deps, instance.id, pieces)

    def _complete(
        self, uow: UnitOfWork, files: BackupFiles, instance: Instance, backup: Backup, result: StepResult,
        admin: Secret,
    ) -> None:
        parsed = record_completed(uow, self.deps, files, backup, result)
        # What a restore needs to log in to the restored server once (then it rotates it): wrapped as every secret.
        uow.secrets.put(backup.id, SOURCE_ADMIN_SECRET, admin)
        status, _ = uow.instances.record(
            instance.id, Observation.BACKUP_ENDED, f"backup {backup.id} completed", generation=instance.generation
        )
        uow.events.add(instance.id, status.value, f"backup {backup.id} completed ({parsed.raw_bytes} bytes)")

    def on_failure(self, ctx: OperationContext, error: PermanentError) -> None:
        deps = self.deps
        payload = payload_of(ctx.op.kind, ctx.op.payload, BackupCreate)
        with deps.db.unit_of_work() as uow:
            backup = uow.backups.get(payload.backup_id)
            if backup is None or backup.status is BackupStatus.COMPLETED or not ctx.lease.renew_in(uow):
                return
            uow.backups.fail(backup.id, Fault(message=error.message, details=error.details, created=time.time()))
            if isinstance(error, Unwanted):  # taken for a copy that ended without it: nobody's backup
                uow.backups.mark_deleting(backup.id)
                uow.operations.enqueue(DELETE, backup.id)
            instance = uow.instances.get(ctx.resource_id)
            if instance is not None:
                uow.instances.record(
                    instance.id, Observation.BACKUP_ENDED, f"backup {backup.id} failed: {error.message}",
                    generation=instance.generation,
                )
                uow.events.add(instance.id, "backup", f"backup {backup.id} failed: {error.message}")
        remove_failed_objects(deps, backup)


class Unwanted(PermanentError):
    """A backup taken as a child of another operation (a replica's seed) whose parent ended without it."""


def _still_wanted(deps: ReconcilerDeps, ctx: OperationContext) -> None:
    """A child backup (`ctx.op.parent_id`) goes on only while its parent does: one whose parent ended (the
    replica it seeds was deleted, or its create failed) stops here, at the start or before it completes, and
    its backup is deleted (`on_failure`)."""
    if ctx.op.parent_id is None:
        return
    with deps.db.unit_of_work(write=False) as uow:
        parent = uow.operations.get(ctx.op.parent_id)
    if parent is None or parent.state not in ACTIVE_STATES:
        raise Unwanted(f"The operation this backup was taken for ({ctx.op.parent_id}) has ended without it.")


class _Progress:
    """Writes a running backup's bytes done and phase at most every `PROGRESS_EVERY` seconds."""

    def __init__(self, deps: ReconcilerDeps, backup_id: str) -> None:
        self._deps = deps
        self._backup_id = backup_id
        self._next = 0.0

    def __call__(self, done: int, phase: BackupPhase, *, force: bool = False) -> None:
        moment = time.monotonic()
        if not force and moment < self._next:
            return
        self._next = moment + PROGRESS_EVERY
        with self._deps.db.unit_of_work() as uow:
            uow.backups.progress(self._backup_id, done, phase)


def record_completed(
    uow: UnitOfWork, deps: ReconcilerDeps, files: BackupFiles, backup: Backup, result: StepResult
) -> Manifest:
    """Record the backup COMPLETED with what its `stream` step wrote (`result`), and its verification when
    backups are verified (in the same transaction: a completed backup is always verified)."""
    manifest: dict[str, Any] = result["manifest"]
    parsed = Manifest.from_dict(manifest)
    uow.backups.complete(
        backup.id, location=files.storage.location(str(result["key"])), size_bytes=parsed.stored_bytes,
        raw_bytes=parsed.raw_bytes, metadata=dict(result["metadata"]), manifest=manifest,
    )
    if deps.verify_backups:
        uow.operations.enqueue(VERIFY, backup.id)
    return parsed


def remove_failed_objects(deps: ReconcilerDeps, backup: Backup) -> None:
    """After a failure is recorded: remove what the backup wrote to storage (a delete of the backup removes
    whatever this cannot)."""
    if deps.backups is None:
        return
    try:
        deps.backups.storage.delete_prefix(prefix_of(backup))
    except Exception:  # boundary: the fault is recorded; a delete of the backup removes the rest
        log.exception("backup %s: cannot remove the objects of the failed backup", backup.id)


def tidy(files: BackupFiles, backup: Backup, keep: str) -> None:
    """Remove what earlier attempts of the backup left (their own prefixes), keeping attempt `keep`'s."""
    prefix = prefix_of(backup)
    attempts = {key.removeprefix(prefix).split("/", 1)[0] for key in files.storage.keys(prefix)}
    for attempt in sorted(attempts - {keep}):
        files.storage.delete_prefix(f"{prefix}{attempt}/")


class DeleteBackup:
    """Remove a backup's objects and record it deleted; its incremental descendants first, deepest first."""

    def __init__(self, deps: ReconcilerDeps) -> None:
        self.deps = deps

    def run(self, ctx: OperationContext) -> None:
        deps = self.deps
        with deps.db.unit_of_work(write=False) as uow:
            backup = uow.backups.get(ctx.resource_id)
            family = [] if backup is None else [*uow.backups.descendants(backup.id), backup]
        for member in family:
            ctx.step(f"delete:{member.id}", lambda member=member: self._delete(member))  # type: ignore[misc]

    def _delete(self, backup: Backup) -> None:
        deps = self.deps
        if deps.backups is not None:
            deps.backups.storage.delete_prefix(prefix_of(backup))
        fencing.current().confirm()
        with deps.db.unit_of_work() as uow:
            uow.backups.mark_deleted(backup.id)
            uow.secrets.delete_owner(backup.id)
            uow.events.add(backup.instance_id, "backup", f"backup {backup.id} deleted")

    def on_failure(self, ctx: OperationContext, error: PermanentError) -> None:
        with self.deps.db.unit_of_work() as uow:
            backup = uow.backups.get(ctx.resource_id)
            if backup is None or not ctx.lease.renew_in(uow):
                return
            fault = Fault(message=error.message, details=error.details, created=time.time())
            for member in [*uow.backups.descendants(backup.id), backup]:
                uow.backups.fail(member.id, fault, status=BackupStatus.DELETE_FAILED)


def handlers(deps: ReconcilerDeps) -> dict[str, CreateBackup | DeleteBackup]:
    return {CREATE: CreateBackup(deps), DELETE: DeleteBackup(deps)}
