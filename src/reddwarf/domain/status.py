"""Statuses as Trove shows them on the wire, and the conditions Reddwarf keeps beside them.

The reconciler alone writes status; services write the initial status of a resource they create. An
instance's statuses are derived from its conditions when they are written (`domain.conditions`).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class InstanceStatus(StrEnum):
    """Trove's instance `status` values."""

    BUILD = "BUILD"
    ACTIVE = "ACTIVE"
    ERROR = "ERROR"
    REBOOT = "REBOOT"
    RESIZE = "RESIZE"
    BACKUP = "BACKUP"
    RESTART_REQUIRED = "RESTART_REQUIRED"
    PROMOTE = "PROMOTE"
    EJECT = "EJECT"
    DETACH = "DETACH"
    SHUTDOWN = "SHUTDOWN"
    FAILED = "FAILED"


class OperatingStatus(StrEnum):
    """Trove's `operating_status`: what the datastore itself looks like from outside."""

    NONE = ""
    HEALTHY = "HEALTHY"
    ACTIVE = "ACTIVE"
    SHUTDOWN = "SHUTDOWN"
    ERROR = "ERROR"
    UNKNOWN = "UNKNOWN"


class ConditionType(StrEnum):
    READY = "Ready"
    PROGRESSING = "Progressing"
    DEGRADED = "Degraded"


@dataclass(frozen=True, slots=True)
class Condition:
    """One typed condition (as CloudNativePG's), with the reason a machine reads and a message a person reads."""

    type: ConditionType
    status: bool
    reason: str
    message: str = ""
    since: float = 0.0


@dataclass(frozen=True, slots=True)
class Fault:
    """What went wrong with the last operation on a resource, as Trove shows it."""

    message: str
    details: str
    created: float
