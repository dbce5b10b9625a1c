"""Pure conversions between domain values and the JSON the store keeps in its columns.

User passwords are never part of the JSON: `spec_to_json` drops them and `spec_from_json` takes them back
from a name -> Secret mapping that the instance repository reads from the encrypted secrets table.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from reddwarf.domain.instance import DatabaseSpec, InstanceSpec, UserSpec
from reddwarf.domain.secret import Secret
from reddwarf.domain.status import Condition, ConditionType

log = logging.getLogger(__name__)


def spec_to_json(spec: InstanceSpec) -> dict[str, Any]:
    return {
        "name": spec.name,
        "flavor_id": spec.flavor_id,
        "volume_size_gb": spec.volume_size_gb,
        "datastore": spec.datastore,
        "datastore_version": spec.datastore_version,
        "databases": [
            {"name": db.name, "character_set": db.character_set, "collate": db.collate} for db in spec.databases
        ],
        "users": [{"name": user.name, "host": user.host, "databases": list(user.databases)} for user in spec.users],
        "availability_zone": spec.availability_zone,
        "region_name": spec.region_name,
        "restore_backup_id": spec.restore_backup_id,
        "branch_source_id": spec.branch_source_id,
        "branch_snapshot_id": spec.branch_snapshot_id,
        "replica_source_id": spec.replica_source_id,
    }


def spec_from_json(data: Mapping[str, Any], passwords: Mapping[str, Secret]) -> InstanceSpec:
    users = []
    for user in data.get("users", []):
        host = user.get("host", "%")
        # Keyed by name@host; a bare name is how rows written before per-host keys hold it.
        password = passwords.get(f"{user['name']}@{host}") or passwords.get(user["name"])
        if password is None:
            # Expected once a deleted instance's secrets are purged; anything else is worth a look.
            log.debug("no stored password for user %s", user["name"])
            password = Secret("")
        users.append(
            UserSpec(
                name=user["name"],
                password=password,
                host=host,
                databases=tuple(user.get("databases", ())),
            )
        )
    return InstanceSpec(
        name=data["name"],
        flavor_id=data["flavor_id"],
        volume_size_gb=int(data["volume_size_gb"]),
        datastore=data["datastore"],
        datastore_version=data["datastore_version"],
        databases=tuple(
            DatabaseSpec(name=db["name"], character_set=db.get("character_set"), collate=db.get("collate"))
            for db in data.get("databases", [])
        ),
        users=tuple(users),
        availability_zone=data.get("availability_zone"),
        region_name=data.get("region_name"),
        restore_backup_id=data.get("restore_backup_id"),
        branch_source_id=data.get("branch_source_id"),
        branch_snapshot_id=data.get("branch_snapshot_id"),
        replica_source_id=data.get("replica_source_id"),
    )


def conditions_to_json(conditions: tuple[Condition, ...]) -> list[dict[str, Any]]:
    return [
        {
            "type": condition.type.value,
            "status": condition.status,
            "reason": condition.reason,
            "message": condition.message,
            "since": condition.since,
        }
        for condition in conditions
    ]


def conditions_from_json(data: list[dict[str, Any]]) -> tuple[Condition, ...]:
    return tuple(
        Condition(
            type=ConditionType(item["type"]),
            status=bool(item["status"]),
            reason=item["reason"],
            message=item.get("message", ""),
            since=float(item.get("since", 0.0)),
        )
        for item in data
    )
