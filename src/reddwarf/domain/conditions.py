"""The rules of an instance's conditions, and Trove's status derived from them. Pure.

Reconcilers never choose Trove's `status` and `operating_status`. They report what they did or saw as an
`Observation` (a create started, the endpoint stopped answering, an operation failed); `advance` turns the
previous conditions and that observation into the new ones, and `derive` computes the wire statuses from the
conditions alone. The store writes conditions and the derived statuses in one compare-and-swap
(`store/repositories/instances.py::transition`), so the stored statuses always match the stored conditions
and nothing derives a status on read.

Three conditions, always all three once an instance exists (CloudNativePG's style: a machine reads
`reason`, a person reads `message`; `since` is the time of the last flip of `status`, not of the last
write, as Kubernetes' lastTransitionTime):

- Ready: the instance serves its tenant (False while it is built, rebooted, deleted, down or failed).
- Progressing: an operation is changing it (create, restart, delete); the reason names which.
- Degraded: something is wrong that a look at the instance found (server not running, suspended, endpoint
  silent, admin access lost, or the last operation failed).

How each observation moves them, and what the statuses become (the complete list of what the reconcilers
write; "=" keeps a condition as it is):

| observation      | Ready                | Progressing       | Degraded               | status / operating  |
|------------------|----------------------|-------------------|------------------------|---------------------|
| CREATING         | F Creating           | T Creating        | F Creating             | BUILD / ""          |
| REBOOTING        | F Rebooting          | T Rebooting       | =                      | REBOOT / ""         |
| DELETING         | F Deleting           | T Deleting        | =                      | SHUTDOWN / SHUTDOWN |
| DETACHING        | =                    | T Detaching       | =                      | DETACH / ""         |
| PROMOTING        | =                    | T Promoting       | =                      | PROMOTE / ""        |
| EJECTING         | =                    | T Ejecting        | =                      | EJECT / ""          |
| FENCED           | F Fenced             | F Settled         | T Fenced               | ERROR / ERROR       |
| READY            | T Available          | F Settled         | F EndpointAnswers      | ACTIVE / HEALTHY    |
| FAILED           | F OperationFailed    | F OperationFailed | T OperationFailed      | ERROR / ERROR       |
| SERVER_DOWN      | F ServerNotRunning   | =                 | T ServerNotRunning     | SHUTDOWN / SHUTDOWN |
| SERVER_SUSPENDED | =                    | =                 | T ServerSuspended      | (Ready) / ERROR     |
| ENDPOINT_SILENT  | =                    | =                 | T EndpointNotAnswering | (Ready) / ERROR     |
| ADMIN_LOST       | =                    | =                 | T AdminAccessLost      | (Ready) / ERROR     |
| ENDPOINT_ANSWERS | T Available (1)      | =                 | F EndpointAnswers      | (Ready) / HEALTHY   |
| BACKING_UP       | =                    | T BackingUp       | =                      | BACKUP / (2)        |
| BACKUP_ENDED     | =                    | F Settled         | =                      | (Ready) / (2)       |
| ARCHIVE_STALLED  | =                    | =                 | T ArchiveNotShipping   | (Ready) / ERROR     |
| ARCHIVE_SHIPPING | =                    | =                 | F EndpointAnswers (3)  | (Ready) / HEALTHY   |
| REPLICA_STOPPED  | =                    | =                 | T ReplicationStopped   | (Ready) / ERROR     |
| REPLICA_STREAMS  | =                    | =                 | F EndpointAnswers (4)  | (Ready) / HEALTHY   |
| COMMITS_WAIT     | =                    | =                 | T CommitsWaitForReplica| (Ready) / ERROR     |
| COMMITS_FLOW     | =                    | =                 | F EndpointAnswers (5)  | (Ready) / HEALTHY   |
| VOLUME_FULL      | =                    | =                 | T VolumeFull           | (Ready) / ERROR     |
| VOLUME_ROOM      | =                    | =                 | F EndpointAnswers (6)  | (Ready) / HEALTHY   |

(1) only when it was False for ServerNotRunning; else =.
(3) only when it was True for ArchiveNotShipping; else =. And ENDPOINT_ANSWERS leaves a Degraded that is True
    for ArchiveNotShipping alone: only the shipper, which saw the archive stall, says it ships again.
(4) only when it was True for ReplicationStopped; else =. ENDPOINT_ANSWERS leaves a Degraded that is True for
    ReplicationStopped too: only the replication watch, which saw the replica stop, says it streams again.
(5) only when it was True for CommitsWaitForReplica (a primary of durability strict whose commits wait: no replica
    acknowledges them); else =. Only the failover watch, which saw them wait, says they flow again.
(6) only when it was True for VolumeFull; else =. Only the health sweep, which saw the volume full, says it has
    room again. A server that is not running with its volume full is SERVER_DOWN, and not repaired until the
    volume has room (a restart would fail the same way, again and again).
(2) a backup does not stop the server: operating_status is what Ready and Degraded say, as when nothing runs.

"(Ready)" is ACTIVE when Ready is True, SHUTDOWN when it is False because the server was found not running
(the health sweep's view of a dead server until `instance.reconcile` starts it again). A server seen
answering again after it was found dead is Ready again (ACTIVE / HEALTHY), whoever started it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from enum import StrEnum

from reddwarf.domain.status import Condition, ConditionType, InstanceStatus, OperatingStatus

ORDER = (ConditionType.READY, ConditionType.PROGRESSING, ConditionType.DEGRADED)


class Reason(StrEnum):
    """The machine-readable reasons a condition may carry."""

    CREATING = "Creating"
    REBOOTING = "Rebooting"
    DELETING = "Deleting"
    DETACHING = "Detaching"
    PROMOTING = "Promoting"
    EJECTING = "Ejecting"
    FENCED = "Fenced"
    AVAILABLE = "Available"
    SETTLED = "Settled"
    ENDPOINT_ANSWERS = "EndpointAnswers"
    OPERATION_FAILED = "OperationFailed"
    SERVER_NOT_RUNNING = "ServerNotRunning"
    SERVER_SUSPENDED = "ServerSuspended"
    ENDPOINT_NOT_ANSWERING = "EndpointNotAnswering"
    ADMIN_ACCESS_LOST = "AdminAccessLost"
    BACKING_UP = "BackingUp"
    ARCHIVE_NOT_SHIPPING = "ArchiveNotShipping"
    REPLICATION_STOPPED = "ReplicationStopped"
    COMMITS_WAIT_FOR_REPLICA = "CommitsWaitForReplica"
    VOLUME_FULL = "VolumeFull"


class Observation(StrEnum):
    """What a reconciler did or saw, as far as the instance's status is concerned."""

    CREATING = "creating"
    REBOOTING = "rebooting"
    DELETING = "deleting"
    DETACHING = "detaching"
    PROMOTING = "promoting"
    EJECTING = "ejecting"
    FENCED = "fenced"
    READY = "ready"
    FAILED = "failed"
    SERVER_DOWN = "server_down"
    SERVER_SUSPENDED = "server_suspended"
    ENDPOINT_SILENT = "endpoint_silent"
    ADMIN_LOST = "admin_lost"
    ENDPOINT_ANSWERS = "endpoint_answers"
    BACKING_UP = "backing_up"
    BACKUP_ENDED = "backup_ended"
    ARCHIVE_STALLED = "archive_stalled"
    ARCHIVE_SHIPPING = "archive_shipping"
    REPLICA_STOPPED = "replica_stopped"
    REPLICA_STREAMS = "replica_streams"
    COMMITS_WAIT = "commits_wait"
    COMMITS_FLOW = "commits_flow"
    VOLUME_FULL = "volume_full"
    VOLUME_ROOM = "volume_room"


# (status, reason) a condition takes; None keeps it as it is.
_Set = tuple[bool, Reason] | None

# Per observation: what Ready, Progressing and Degraded become (the table of the module docstring).
_EFFECTS: Mapping[Observation, tuple[_Set, _Set, _Set]] = {
    Observation.CREATING: ((False, Reason.CREATING), (True, Reason.CREATING), (False, Reason.CREATING)),
    Observation.REBOOTING: ((False, Reason.REBOOTING), (True, Reason.REBOOTING), None),
    Observation.DELETING: ((False, Reason.DELETING), (True, Reason.DELETING), None),
    Observation.DETACHING: (None, (True, Reason.DETACHING), None),
    Observation.PROMOTING: (None, (True, Reason.PROMOTING), None),
    Observation.EJECTING: (None, (True, Reason.EJECTING), None),
    Observation.FENCED: ((False, Reason.FENCED), (False, Reason.SETTLED), (True, Reason.FENCED)),
    Observation.READY: ((True, Reason.AVAILABLE), (False, Reason.SETTLED), (False, Reason.ENDPOINT_ANSWERS)),
    Observation.FAILED: (
        (False, Reason.OPERATION_FAILED), (False, Reason.OPERATION_FAILED), (True, Reason.OPERATION_FAILED)
    ),
    Observation.SERVER_DOWN: ((False, Reason.SERVER_NOT_RUNNING), None, (True, Reason.SERVER_NOT_RUNNING)),
    Observation.SERVER_SUSPENDED: (None, None, (True, Reason.SERVER_SUSPENDED)),
    Observation.ENDPOINT_SILENT: (None, None, (True, Reason.ENDPOINT_NOT_ANSWERING)),
    Observation.ADMIN_LOST: (None, None, (True, Reason.ADMIN_ACCESS_LOST)),
    Observation.ENDPOINT_ANSWERS: (None, None, (False, Reason.ENDPOINT_ANSWERS)),
    Observation.BACKING_UP: (None, (True, Reason.BACKING_UP), None),
    Observation.BACKUP_ENDED: (None, (False, Reason.SETTLED), None),
    Observation.ARCHIVE_STALLED: (None, None, (True, Reason.ARCHIVE_NOT_SHIPPING)),
    Observation.ARCHIVE_SHIPPING: (None, None, (False, Reason.ENDPOINT_ANSWERS)),
    Observation.REPLICA_STOPPED: (None, None, (True, Reason.REPLICATION_STOPPED)),
    Observation.REPLICA_STREAMS: (None, None, (False, Reason.ENDPOINT_ANSWERS)),
    Observation.COMMITS_WAIT: (None, None, (True, Reason.COMMITS_WAIT_FOR_REPLICA)),
    Observation.COMMITS_FLOW: (None, None, (False, Reason.ENDPOINT_ANSWERS)),
    Observation.VOLUME_FULL: (None, None, (True, Reason.VOLUME_FULL)),
    Observation.VOLUME_ROOM: (None, None, (False, Reason.ENDPOINT_ANSWERS)),
}

# Degraded reasons that only the watcher that found them clears (by its own observation), never a ping.
_WATCHED_REASONS: Mapping[Observation, Reason] = {
    Observation.ARCHIVE_SHIPPING: Reason.ARCHIVE_NOT_SHIPPING,
    Observation.REPLICA_STREAMS: Reason.REPLICATION_STOPPED,
    Observation.COMMITS_FLOW: Reason.COMMITS_WAIT_FOR_REPLICA,
    Observation.VOLUME_ROOM: Reason.VOLUME_FULL,
}

# While Progressing is True, its reason alone says the statuses.
_PROGRESS_STATUS: Mapping[str, tuple[InstanceStatus, OperatingStatus]] = {
    Reason.CREATING: (InstanceStatus.BUILD, OperatingStatus.NONE),
    Reason.REBOOTING: (InstanceStatus.REBOOT, OperatingStatus.NONE),
    Reason.DELETING: (InstanceStatus.SHUTDOWN, OperatingStatus.SHUTDOWN),
    Reason.DETACHING: (InstanceStatus.DETACH, OperatingStatus.NONE),
    Reason.PROMOTING: (InstanceStatus.PROMOTE, OperatingStatus.NONE),
    Reason.EJECTING: (InstanceStatus.EJECT, OperatingStatus.NONE),
}

# Trove's status of an instance that is not Ready and not progressing, by Ready's reason.
_NOT_READY_STATUS: Mapping[str, InstanceStatus] = {
    Reason.OPERATION_FAILED: InstanceStatus.ERROR,
    Reason.FENCED: InstanceStatus.ERROR,
    Reason.SERVER_NOT_RUNNING: InstanceStatus.SHUTDOWN,
    Reason.CREATING: InstanceStatus.BUILD,
    Reason.REBOOTING: InstanceStatus.REBOOT,
    Reason.DELETING: InstanceStatus.SHUTDOWN,
}


def advance(
    conditions: tuple[Condition, ...], observation: Observation, message: str, now: float
) -> tuple[Condition, ...]:
    """The conditions after `observation`, in the order Ready, Progressing, Degraded.

    A condition the observation sets takes its status, reason and `message`; its `since` moves to `now` only
    when its status flips (or it did not exist). Equal to the input when nothing changes, so that a caller
    can skip a write that would change nothing."""
    by_type = {condition.type: condition for condition in conditions}
    effects = _EFFECTS[observation]
    ready_effect, degraded_effect = effects[0], effects[2]
    degraded = by_type.get(ConditionType.DEGRADED)
    watched = degraded.reason if degraded is not None and degraded.status else None
    if observation is Observation.ENDPOINT_ANSWERS and watched in _WATCHED_REASONS.values():
        degraded_effect = None
    if observation in _WATCHED_REASONS and watched != _WATCHED_REASONS[observation]:
        degraded_effect = None
    if observation is Observation.ENDPOINT_ANSWERS:
        ready = by_type.get(ConditionType.READY)
        if ready is not None and not ready.status and ready.reason == Reason.SERVER_NOT_RUNNING:
            ready_effect = (True, Reason.AVAILABLE)
    result = []
    for kind, effect in zip(ORDER, (ready_effect, effects[1], degraded_effect), strict=True):
        previous = by_type.get(kind)
        if effect is None:
            if previous is not None:
                result.append(previous)
            continue
        status, reason = effect
        if previous is not None and (previous.status, previous.reason, previous.message) == (status, reason, message):
            result.append(previous)
        elif previous is not None and previous.status == status:
            result.append(replace(previous, reason=reason.value, message=message))
        else:
            result.append(Condition(kind, status, reason.value, message, since=now))
    return tuple(result)


# Degraded for one of these, an instance has no heartbeat (Trove's word): its server does not serve. Degraded
# for another reason (its archive or replication stalls, its admin login was changed) it still serves.
_NO_HEARTBEAT = frozenset({Reason.SERVER_NOT_RUNNING, Reason.SERVER_SUSPENDED, Reason.ENDPOINT_NOT_ANSWERING,
                           Reason.OPERATION_FAILED})


def unhealthy_since(conditions: tuple[Condition, ...]) -> float | None:
    """Since when an instance has been without a heartbeat, without a break: its server found not running,
    or Degraded because it does not serve (not answering, suspended, its repair failed); None while it
    serves."""
    by_type = {c.type: c for c in conditions}
    ready, degraded = by_type.get(ConditionType.READY), by_type.get(ConditionType.DEGRADED)
    moments = []
    if ready is not None and not ready.status and ready.reason == Reason.SERVER_NOT_RUNNING:
        moments.append(ready.since)
    if degraded is not None and degraded.status and degraded.reason in _NO_HEARTBEAT:
        moments.append(degraded.since)
    return min(moments) if moments else None


def held_by_a_watcher(conditions: tuple[Condition, ...]) -> bool:
    """Degraded for a reason only its watcher clears (the archive, replication): a ping that answers leaves
    operating_status ERROR."""
    degraded = {c.type: c for c in conditions}.get(ConditionType.DEGRADED)
    return degraded is not None and degraded.status and degraded.reason in _WATCHED_REASONS.values()


def derive(conditions: tuple[Condition, ...]) -> tuple[InstanceStatus, OperatingStatus]:
    """Trove's (status, operating_status) of an instance with these conditions (the docstring's table).

    Total: no conditions at all (nothing observed yet) is BUILD; a reason this code does not know (a newer
    writer's) is ERROR / UNKNOWN rather than a guess."""
    by_type = {condition.type: condition for condition in conditions}
    progressing = by_type.get(ConditionType.PROGRESSING)
    backing_up = progressing is not None and progressing.status and progressing.reason == Reason.BACKING_UP
    if progressing is not None and progressing.status and not backing_up:
        return _PROGRESS_STATUS.get(progressing.reason, (InstanceStatus.ERROR, OperatingStatus.UNKNOWN))
    ready = by_type.get(ConditionType.READY)
    if ready is None:
        return InstanceStatus.BUILD, OperatingStatus.NONE
    if backing_up:
        status = InstanceStatus.BACKUP
    elif ready.status:
        status = InstanceStatus.ACTIVE
    elif ready.reason in _NOT_READY_STATUS:
        status = _NOT_READY_STATUS[ready.reason]
    else:
        return InstanceStatus.ERROR, OperatingStatus.UNKNOWN
    degraded = by_type.get(ConditionType.DEGRADED)
    if degraded is not None and degraded.status:
        if degraded.reason == Reason.SERVER_NOT_RUNNING:
            return status, OperatingStatus.SHUTDOWN
        return status, OperatingStatus.ERROR
    return status, OperatingStatus.HEALTHY if ready.status else OperatingStatus.NONE  # (a backup needs Ready)


def created(message: str, now: float) -> tuple[Condition, ...]:
    """The conditions of an instance a service has just recorded (BUILD)."""
    return advance((), Observation.CREATING, message, now)
