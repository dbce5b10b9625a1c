"""Request bodies of `/backups` and `/backup_strategies` (Trove's `apischema` shapes).

Unknown keys inside `backup` are refused by name (a typo must not silently take a full backup instead of an
incremental one). `incremental` is Trove's 0/1 (a boolean is accepted too). `from_snapshot` (Reddwarf's
extension) takes a snapshot and streams the backup from it in the background.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, StrictBool, StrictInt, StrictStr

from reddwarf.services.backups import CreateBackupRequest


class BackupIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: StrictStr | None = None
    instance: StrictStr | None = None
    description: StrictStr | None = None
    parent_id: StrictStr | None = None
    incremental: StrictBool | StrictInt | None = None
    swift_container: StrictStr | None = None
    storage_driver: StrictStr | None = None
    restore_from: dict[str, Any] | None = None
    from_snapshot: StrictBool = False

    def to_request(self) -> CreateBackupRequest:
        return CreateBackupRequest(
            name=self.name, instance_id=self.instance, description=self.description, parent_id=self.parent_id,
            incremental=bool(self.incremental), swift_container=self.swift_container,
            storage_driver=self.storage_driver, restore_from=self.restore_from is not None,
            from_snapshot=self.from_snapshot,
        )


class BackupCreateBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    backup: BackupIn


class BackupStrategyIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    instance_id: StrictStr | None = None
    swift_container: StrictStr


class BackupStrategyBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    backup_strategy: BackupStrategyIn
