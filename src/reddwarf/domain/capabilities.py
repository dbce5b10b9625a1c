"""What an engine can do, declared up front so that a request for a missing capability fails before work starts."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class Capability(StrEnum):
    USERS = "users"
    DATABASES = "databases"
    ROOT = "root"
    BACKUP = "backup"
    REPLICATION = "replication"
    # Synchronous replication (a commit waits for a replica): `replication.mode = "sync"` on its sets.
    SYNC_REPLICATION = "sync_replication"
    CLUSTERING = "clustering"
    CONFIGURATION = "configuration"
    RESIZE_FLAVOR = "resize_flavor"
    RESIZE_VOLUME = "resize_volume"
    LOGS = "logs"


@dataclass(frozen=True, slots=True)
class Capabilities:
    """The set of capabilities of one engine version; strategies name the tools behind them."""

    offered: frozenset[Capability]
    backup_strategies: tuple[str, ...] = ()
    replication_strategies: tuple[str, ...] = ()

    def has(self, capability: Capability) -> bool:
        return capability in self.offered
