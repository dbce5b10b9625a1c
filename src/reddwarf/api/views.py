"""Domain objects -> Trove's v1.0 response bodies (`trove/instance/views.py`, datastore and flavor views).

Pure functions: the routers pass in the base URL for links and whether the caller is an admin.
Times are UTC ISO 8601 without a zone ("2026-11-22T11:33:00"), as Trove writes them.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

from reddwarf.domain.backup import Backup
from reddwarf.domain.capabilities import Capability
from reddwarf.domain.catalog import REDDWARF_NAMESPACE, DatastoreVersion, Flavor
from reddwarf.domain.conditions import Reason
from reddwarf.domain.events import Event
from reddwarf.domain.instance import Instance
from reddwarf.domain.replication import Mode, SyncState
from reddwarf.domain.snapshot import Snapshot
from reddwarf.domain.status import ConditionType
from reddwarf.services.backups import Strategy
from reddwarf.services.catalog import Datastore
from reddwarf.services.classification import Level, VersionStatus

JSON = dict[str, Any]

API_VERSION = "v1.0"
VERSION_UPDATED = "2012-08-01T00:00:00Z"
PRIVATE_NETWORK = "reddwarf"
_GB = 1024.0**3


def isotime(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%dT%H:%M:%S")


def links(base: str, project_id: str, collection: str, ident: str) -> list[JSON]:
    """Trove's `self` (versioned, with project) and `bookmark` (unversioned) links."""
    return [
        {"href": f"{base}/{API_VERSION}/{project_id}/{collection}/{ident}", "rel": "self"},
        {"href": f"{base}/{collection}/{ident}", "rel": "bookmark"},
    ]


def version_body(base: str) -> JSON:
    return {
        "id": API_VERSION,
        "status": "CURRENT",
        "updated": VERSION_UPDATED,
        "links": [{"href": f"{base}/{API_VERSION}/", "rel": "self"}],
    }


def instance_view(
    instance: Instance,
    *,
    base: str,
    version_number: str,
    region: str,
    detail: bool,
    is_admin: bool,
) -> JSON:
    """Trove's instance view: the summary for lists, the detail view for show/create/detail lists."""
    spec = instance.spec
    datastore: JSON = {"type": spec.datastore, "version": spec.datastore_version}
    volume: JSON = {"size": spec.volume_size_gb}
    body: JSON = {
        "id": instance.id,
        "name": spec.name,
        "status": instance.status.value,
        "operating_status": instance.operating_status.value,
        "links": links(base, instance.project_id, "instances", instance.id),
        "flavor": {"id": spec.flavor_id, "links": links(base, instance.project_id, "flavors", spec.flavor_id)},
        "datastore": datastore,
        "region": region,
        "volume": volume,
        "access": {"is_public": False, "allowed_cidrs": []},
        "replicas": [{"id": replica_id, "links": links(base, instance.project_id, "instances", replica_id)}
                     for replica_id in instance.replicas],
    }
    if instance.replica_of is not None:
        body["replica_of"] = {
            "id": instance.replica_of, "links": links(base, instance.project_id, "instances", instance.replica_of)
        }
        # Extension: the replica's streaming state and lag as the replication watch last recorded them.
        health = instance.replication_health
        if instance.fenced is not None:
            body["replication"] = {"role": "replica", "state": "fenced", "fenced": isotime(instance.fenced),
                                   "reason": "fenced by a failover: it rejoins as a replica of its set's primary"}
        elif health is None:
            body["replication"] = {"role": "replica"}
        else:
            body["replication"] = {
                "role": "replica",
                "state": "streaming" if health.state.streaming else "stopped",
                "lag_seconds": health.state.lag_seconds,
                "lag_bytes": health.state.lag_bytes,
                "observed": isotime(health.observed),
                **({"reason": health.state.detail} if health.state.detail else {}),
            }
    elif instance.replicas:
        body["replication"] = {"role": "primary"}
    policy = instance.set_policy
    if policy is not None and instance.replica_of is None:
        body.setdefault("replication", {"role": "primary"})
        body["replication"].update(mode=policy.mode.value, auto_failover=policy.auto_failover)
        sync, since = instance.set_sync or (SyncState.ASYNC, None)
        if policy.mode is Mode.SYNC:
            body["replication"].update(durability=policy.durability.value, synchronous={
                "state": sync.value, **({"since": isotime(since)} if since is not None else {})})
        if instance.replicas and not instance.streaming_replicas:
            # Degraded until a replica is back: nothing could take over from this primary now.
            reason = "no replica streams from this primary now"
            if policy.mode is Mode.SYNC and sync.waits:
                reason += ": its commits wait until one does"
            body["replication"].update(state="degraded", reason=reason)
        degraded = {c.type: c for c in instance.conditions}.get(ConditionType.DEGRADED)
        if degraded is not None and degraded.status and degraded.reason == Reason.COMMITS_WAIT_FOR_REPLICA:
            body["replication"].update(state="degraded", reason=degraded.message)  # strict: why writes wait
    writer, reader = instance.set_endpoints
    if writer is not None:
        # Extension: where the set's tenants write (it never changes) and read (spread over its replicas).
        body["endpoints"] = {"writer": {"address": writer[0], "port": writer[1]},
                             **({"reader": {"address": reader[0], "port": reader[1]}} if reader else {})}
    if instance.endpoint is not None:
        body["ip"] = [instance.endpoint.address]
        body["addresses"] = [
            {"address": instance.endpoint.address, "type": "private", "network": PRIVATE_NETWORK}
        ]
        body["port"] = instance.endpoint.port
    if is_admin:
        body["tenant_id"] = instance.project_id
    if detail:
        datastore["version_number"] = version_number
        body["created"] = isotime(instance.created)
        body["updated"] = isotime(instance.updated)
        if instance.volume_used_bytes is not None:
            volume["used"] = round(instance.volume_used_bytes / _GB, 2)
        if instance.fault is not None:
            body["fault"] = {
                "message": instance.fault.message,
                "created": isotime(instance.fault.created),
                "details": instance.fault.details,
            }
    return body


def flavor_view(flavor: Flavor, *, base: str, project_id: str) -> JSON:
    return {
        "id": flavor.id,
        "str_id": flavor.id,
        "name": flavor.name,
        "ram": flavor.ram_mb,
        "vcpus": flavor.vcpus,
        "links": links(base, project_id, "flavors", flavor.id),
    }


def version_summary(version: DatastoreVersion, *, base: str, project_id: str) -> JSON:
    return {
        "id": version.id,
        "name": version.name,
        "version": version.number,
        "links": links(base, project_id, "datastores/versions", version.id),
    }


def datastore_view(
    datastore: Datastore, *, base: str, project_id: str, is_admin: bool, classification: Level | None = None
) -> JSON:
    """Trove's datastore; the extension field `classification` is its default version's."""
    body: JSON = {
        "id": datastore.id,
        "name": datastore.name,
        "links": links(base, project_id, "datastores", datastore.id),
    }
    default = datastore.default_version
    if default is not None:
        body["default_version"] = default.id
    if classification is not None:
        body["classification"] = classification.value
    versions = []
    for version in datastore.versions:
        summary = version_summary(version, base=base, project_id=project_id)
        if is_admin:
            summary["active"] = version.active
        versions.append(summary)
    body["versions"] = versions
    return body


def datastore_version_view(
    version: DatastoreVersion, *, base: str, project_id: str, status: VersionStatus | None = None,
    branch_refusal: str | None = None,
) -> JSON:
    """Trove's datastore version, plus the extension fields `capabilities` (names), `strategies`
    (`{"backup": [{"name", "classification"}], "replication": [...]}`), `classification` and `branches`
    (how this deployment branches instances: `{"available", "method", "snapshots", "reason"}`, method
    `copy-on-write` (instant; snapshots available) or `backup-and-restore` (a host without reflinks: a full
    backup of the source restored into the branch; no snapshots), `reason` why not copy-on-write; a
    capability of the runtime, the same for every version)."""
    body: JSON = {
        "id": version.id,
        "name": version.name,
        "datastore": version.datastore_id,
        "version": version.number,
        "version_number": version.number,
        "active": version.active,
        "image": "",
        "packages": "",
        "links": links(base, project_id, "datastores/versions", version.id),
    }
    if status is not None:
        body["capabilities"] = sorted(c.value for c in status.capabilities.offered)
        strategies: dict[str, list[JSON]] = {"backup": [], "replication": []}
        for strategy in status.strategies:
            strategies.setdefault(strategy.kind, []).append(
                {"name": strategy.name, "classification": strategy.level.value}
            )
        body["strategies"] = strategies
        body["classification"] = status.classification.level.value
        body["branches"] = {
            "available": True, "method": "copy-on-write" if branch_refusal is None else "backup-and-restore",
            "snapshots": branch_refusal is None, "reason": branch_refusal,
        }
    return body


CAPABILITY_DESCRIPTIONS: dict[Capability, str] = {
    Capability.USERS: "Create, list, change and delete database users.",
    Capability.DATABASES: "Create, list and delete databases, and grant users access to them.",
    Capability.ROOT: "Enable the datastore's superuser account.",
    Capability.BACKUP: "Back up an instance and restore a backup into a new instance.",
    Capability.REPLICATION: "Create replicas of an instance, promote and eject them.",
    Capability.CLUSTERING: "Create clusters of several member instances.",
    Capability.CONFIGURATION: "Attach configuration groups that set the datastore's parameters.",
    Capability.RESIZE_FLAVOR: "Change an instance's flavor (memory and CPUs).",
    Capability.RESIZE_VOLUME: "Grow an instance's volume.",
    Capability.LOGS: "Publish and show the datastore's logs.",
}


def capabilities_view(version: DatastoreVersion, status: VersionStatus) -> JSON:
    """Trove's legacy capabilities shape: every capability, `enabled` when the version declares it."""
    return {
        "capabilities": [
            {
                "id": str(uuid.uuid5(REDDWARF_NAMESPACE, f"capability:{version.datastore}:{version.name}:{cap}")),
                "name": cap.value,
                "description": CAPABILITY_DESCRIPTIONS.get(cap, cap.value),
                "enabled": status.capabilities.has(cap),
            }
            for cap in Capability
        ]
    }


def event_view(event: Event) -> JSON:
    """One entry of an instance's history (extension route `/instances/{id}/events`)."""
    return {"created": isotime(event.created), "kind": event.kind, "message": event.message}


def _gb(size: int | None) -> float | None:
    return None if size is None else round(size / _GB, 6)


def backup_view(backup: Backup) -> JSON:
    """Trove's backup view, plus `progress`, `uncompressed_size`, `fault` and `verified`, `verified_at`,
    `verification` (extensions; null until a verification ended: `REDDWARF_VERIFY_BACKUPS`), and
    `snapshot_id` (the snapshot it was streamed from, null: from the instance)."""
    body: JSON = {
        "id": backup.id,
        "name": backup.name,
        "description": backup.description,
        "locationRef": backup.location or None,
        "instance_id": backup.instance_id,
        "created": isotime(backup.created),
        "updated": isotime(backup.updated),
        "size": _gb(backup.size_bytes),
        "status": backup.status.value,
        "parent_id": backup.parent_id,
        "project_id": backup.project_id,
        "storage_driver": "swift",
        "datastore": {
            "type": backup.datastore, "version": backup.datastore_version, "version_id": backup.datastore_version_id,
        },
        "progress": {"bytes_done": backup.bytes_done, "phase": backup.phase.value},
        "uncompressed_size": _gb(backup.raw_bytes),
        "verified": backup.verified,
        "verified_at": None if backup.verified_at is None else isotime(backup.verified_at),
        "verification": backup.verification,
        "snapshot_id": backup.snapshot_id,
    }
    if backup.fault is not None:
        body["fault"] = {
            "message": backup.fault.message, "details": backup.fault.details, "created": isotime(backup.fault.created)
        }
    return body


def snapshot_view(snapshot: Snapshot) -> JSON:
    """A snapshot (Reddwarf's extension): what it is of, its status, and its fault when it failed."""
    body: JSON = {
        "id": snapshot.id,
        "name": snapshot.name,
        "description": snapshot.description,
        "instance_id": snapshot.instance_id,
        "project_id": snapshot.project_id,
        "status": snapshot.status.value,
        "datastore": {"type": snapshot.datastore, "version": snapshot.datastore_version},
        "volume": {"size": snapshot.volume_size_gb},
        "created": isotime(snapshot.created),
        "updated": isotime(snapshot.updated),
    }
    if snapshot.fault is not None:
        body["fault"] = {"message": snapshot.fault.message, "details": snapshot.fault.details,
                         "created": isotime(snapshot.fault.created)}
    return body


def strategy_view(strategy: Strategy) -> JSON:
    """Trove's backup strategy: the default container of a project (`instance_id` empty) or an instance."""
    return {
        "project_id": strategy.project_id, "instance_id": strategy.instance_id or None,
        "backend": strategy.backend, "swift_container": strategy.container,
    }
