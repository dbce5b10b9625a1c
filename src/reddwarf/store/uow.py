"""The unit of work: one transaction and the repositories that share it.

Obtained from `Database.unit_of_work()`; everything done through one `UnitOfWork` commits or rolls back
together (e.g. an instance row, its encrypted passwords and the operation that will build it).
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from sqlalchemy.orm import Session

from reddwarf.store.repositories.addresses import AddressRepository
from reddwarf.store.repositories.backups import ArchivedLogRepository, BackupRepository
from reddwarf.store.repositories.events import EventRepository
from reddwarf.store.repositories.identity import IdentityRepository
from reddwarf.store.repositories.instances import InstanceRepository
from reddwarf.store.repositories.leases import LeaseRepository
from reddwarf.store.repositories.operations import OperationRepository
from reddwarf.store.repositories.pool import PoolRepository
from reddwarf.store.repositories.replication import ReplicationRepository
from reddwarf.store.repositories.reservations import ReservationRepository
from reddwarf.store.repositories.secrets import SecretRepository
from reddwarf.store.repositories.snapshots import SnapshotRepository
from reddwarf.store.secrets import SecretCipher

log = logging.getLogger(__name__)


class UnitOfWork:
    """The repositories of one transaction. Do not keep it beyond its `with` block."""

    def __init__(self, session: Session, cipher: SecretCipher) -> None:
        self._session = session
        self.secrets = SecretRepository(session, cipher)
        self.instances = InstanceRepository(session, self.secrets)
        self.operations = OperationRepository(session)
        self.addresses = AddressRepository(session)
        self.identity = IdentityRepository(session)
        self.events = EventRepository(session)
        self.pool = PoolRepository(session)
        self.leases = LeaseRepository(session)
        self.reservations = ReservationRepository(session)
        self.backups = BackupRepository(session)
        self.snapshots = SnapshotRepository(session)
        self.archived_logs = ArchivedLogRepository(session)
        self.replication = ReplicationRepository(session)
        self._after_commit: list[Callable[[], None]] = []
        self._after_rollback: list[Callable[[], None]] = []

    def after_commit(self, callback: Callable[[], None]) -> None:
        """Call `callback` once this unit of work has committed (not at all if it rolls back)."""
        self._after_commit.append(callback)

    def after_rollback(self, callback: Callable[[], None]) -> None:
        """Call `callback` if this unit of work rolls back (or its commit fails)."""
        self._after_rollback.append(callback)

    def _committed(self) -> None:
        _run_all(self._after_commit, "after commit")

    def _rolled_back(self) -> None:
        _run_all(self._after_rollback, "after rollback")

    def flush(self) -> None:
        """Send pending writes now (they still commit or roll back with the unit of work)."""
        self._session.flush()


def _run_all(callbacks: list[Callable[[], None]], when: str) -> None:
    """Every callback, each once: the transaction's outcome is decided, and a failing callback must neither
    turn it into an error for the caller nor keep the next callback from running."""
    for callback in callbacks:
        try:
            callback()
        except Exception:  # boundary: the unit of work already committed or rolled back
            log.exception("a unit of work's %s callback failed", when)
