"""A fake worker for tests of the API and the CLI that need operations to finish but no database server.

It claims operations from the real store and settles them the way the reconcilers would, at once:
instance.create and instance.restore -> ACTIVE and HEALTHY (ERROR with `FAULT_MESSAGE` for names starting with
`FAILING_NAME_PREFIX`), instance.delete -> deleted, backup.create -> COMPLETED with `BACKUP_BYTES` of data
(FAILED with `BACKUP_FAULT_MESSAGE` for names starting with `FAILING_NAME_PREFIX`), backup.delete -> the
backup and its incremental descendants deleted, anything else -> done.
"""

from __future__ import annotations

import threading
import time

from reddwarf.domain.backup import BackupPhase
from reddwarf.domain.conditions import Observation
from reddwarf.domain.operations import Kind
from reddwarf.domain.status import Fault
from reddwarf.store.database import Database
from reddwarf.store.uow import UnitOfWork

FAILING_NAME_PREFIX = "doomed"
FAULT_MESSAGE = "initdb failed: No space left on device"
BACKUP_FAULT_MESSAGE = "the backup tool exited 1: could not connect"
BACKUP_BYTES = 3 << 20
OWNER = "fake-worker"
POLL_INTERVAL_S = 0.05
JOIN_TIMEOUT_S = 10.0


class FakeWorker:
    """A thread that settles every operation it claims; a context manager (started on enter)."""

    def __init__(self, db: Database) -> None:
        self._db = db
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=OWNER, daemon=True)

    def __enter__(self) -> FakeWorker:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=JOIN_TIMEOUT_S)

    def _run(self) -> None:
        while not self._stop.wait(POLL_INTERVAL_S):
            self.settle_one()

    def settle_one(self) -> bool:
        """Claim one operation and settle it; False when there was none."""
        with self._db.unit_of_work() as uow:
            op = uow.operations.claim(OWNER, lease_ttl=30)
            if op is None:
                return False
            instance = uow.instances.get(op.resource_id)
            if instance is not None and op.kind in (Kind.INSTANCE_CREATE, Kind.INSTANCE_RESTORE):
                if instance.spec.name.startswith(FAILING_NAME_PREFIX):
                    fault = Fault(message=FAULT_MESSAGE, details="", created=time.time())
                    uow.instances.record(instance.id, Observation.FAILED, FAULT_MESSAGE, generation=0, fault=fault)
                else:
                    uow.instances.record(instance.id, Observation.READY, "ready", generation=0)
            elif instance is not None and op.kind == Kind.INSTANCE_DELETE:
                uow.instances.mark_deleted(instance.id)
            elif op.kind == Kind.BACKUP_CREATE:
                _take_backup(uow, str(op.payload["backup_id"]))
            elif op.kind == Kind.BACKUP_DELETE:
                for backup in [*uow.backups.descendants(op.resource_id), uow.backups.get(op.resource_id)]:
                    if backup is not None:
                        uow.backups.mark_deleted(backup.id)
            uow.operations.complete(op.id, OWNER)
            return True


def _take_backup(uow: UnitOfWork, backup_id: str) -> None:
    backup = uow.backups.get(backup_id)
    if backup is None:
        return
    uow.backups.start(backup_id)
    uow.backups.progress(backup_id, BACKUP_BYTES // 2, BackupPhase.STREAMING)
    if backup.name.startswith(FAILING_NAME_PREFIX):
        uow.backups.fail(backup_id, Fault(message=BACKUP_FAULT_MESSAGE, details="", created=time.time()))
        return
    uow.backups.complete(
        backup_id, location=f"file:///fake/{backup_id}", size_bytes=BACKUP_BYTES // 3, raw_bytes=BACKUP_BYTES,
        metadata={}, manifest={},
    )
