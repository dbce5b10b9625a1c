"""The metadata store: the ONLY package that imports SQLAlchemy and Alembic.

`Database` (database.py) opens SQLite or PostgreSQL, migrates under a lock and hands out `UnitOfWork`s
(uow.py) whose repositories (repositories/) speak domain objects and the records in records.py. Rows
(tables.py) never leave the package. Secrets are encrypted at rest with the key in secrets.py.
Imported by `services`, `workflows`, `identity` and `wiring`; `api` must not import `store.tables`.
"""

from reddwarf.domain.events import Event
from reddwarf.store.database import Database
from reddwarf.store.records import Operation, OperationState, Project, TokenRecord
from reddwarf.store.repositories.secrets import ADMIN_SECRET, user_secret_name
from reddwarf.store.uow import UnitOfWork

__all__ = [
    "ADMIN_SECRET",
    "Database",
    "Event",
    "Operation",
    "OperationState",
    "Project",
    "TokenRecord",
    "UnitOfWork",
    "user_secret_name",
]
