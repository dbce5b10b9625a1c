"""Plain records the store returns besides the domain types: operations, projects, tokens, events.

Frozen dataclasses with no SQLAlchemy type inside, so callers never hold a session-bound object.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Any


class OperationState(StrEnum):
    """Where a durable operation stands. `pending` and `running` are active; the rest are final."""

    PENDING = "pending"
    RUNNING = "running"
    DONE = "done"
    FAILED = "failed"
    SUPERSEDED = "superseded"


ACTIVE_STATES: frozenset[str] = frozenset({OperationState.PENDING.value, OperationState.RUNNING.value})


@dataclass(frozen=True, slots=True)
class Operation:
    """One durable work item. `lease_owner`/`lease_expires` say which worker holds it and until when."""

    id: str
    kind: str
    resource_id: str
    payload: dict[str, Any]
    state: str
    attempts: int
    lease_owner: str | None
    lease_expires: float | None
    not_before: float
    created: float
    updated: float
    last_error: str
    parent_id: str | None = None


@dataclass(frozen=True, slots=True)
class Project:
    id: str
    name: str
    created: float


@dataclass(frozen=True, slots=True)
class TokenRecord:
    """A built-in API token. The token itself is never stored: only its SHA-256 hex digest."""

    id: str
    project_id: str
    roles: tuple[str, ...]
    description: str
    expires_at: float | None
    revoked: bool
    created: float
