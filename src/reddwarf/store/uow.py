"""The unit of work: one transaction and the repositories that share it.

Obtained from `Database.unit_of_work()`; everything done through one `UnitOfWork` commits or rolls back
together (e.g. an instance row, its encrypted passwords and the operation that will build it).
"""

from __future__ import annotations

from sqlalchemy.orm import Session

from reddwarf.store.repositories.addresses import AddressRepository
from reddwarf.store.repositories.events import EventRepository
from reddwarf.store.repositories.identity import IdentityRepository
from reddwarf.store.repositories.instances import InstanceRepository
from reddwarf.store.repositories.operations import OperationRepository
from reddwarf.store.repositories.pool import PoolRepository
from reddwarf.store.repositories.secrets import SecretRepository
from reddwarf.store.secrets import SecretCipher


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

    def flush(self) -> None:
        """Send pending writes now (they still commit or roll back with the unit of work)."""
        self._session.flush()
