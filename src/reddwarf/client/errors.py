"""Errors the client raises, and the parser of Trove's fault bodies.

Trove answers a refusal with one key naming the fault: `{"itemNotFound": {"code": 404, "message": "..."}}`.
`fault_from_response` turns any error response into a `ReddwarfAPIError`, falling back to the HTTP reason
when the body is not a fault (a proxy's HTML page, an empty 502).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import httpx

if TYPE_CHECKING:
    from reddwarf.client.models import Backup, Instance, Snapshot

# Longest piece of a non-fault body quoted in an error message: enough to recognise a proxy page.
_MAX_RAW_MESSAGE = 200


class ReddwarfClientError(Exception):
    """Base of everything the client raises on purpose."""


class ReddwarfConnectionError(ReddwarfClientError):
    """The API could not be reached (refused, DNS, TLS, timeout). Says where; never carries the token."""


class ReddwarfAPIError(ReddwarfClientError):
    """The API answered with an error: Trove's HTTP status, fault name and message."""

    def __init__(self, status: int, fault_name: str, message: str, request_id: str | None = None) -> None:
        super().__init__(f"{status} {fault_name}: {message}")
        self.status = status
        self.fault_name = fault_name
        self.message = message
        self.request_id = request_id


class InstanceFaulted(ReddwarfClientError):
    """An instance being waited for reached ERROR; `instance.fault` says why (when the server recorded it)."""

    def __init__(self, instance: Instance) -> None:
        reason = instance.fault.message if instance.fault is not None else "no fault recorded"
        super().__init__(f"instance {instance.id} ({instance.name}) is {instance.status}: {reason}")
        self.instance = instance


class BackupFailed(ReddwarfClientError):
    """A backup being waited for reached FAILED (or DELETE_FAILED while waiting for its delete); `backup.fault`
    says why when the server recorded it."""

    def __init__(self, backup: Backup) -> None:
        reason = backup.fault.message if backup.fault is not None else "no fault recorded"
        super().__init__(f"backup {backup.id} ({backup.name}) is {backup.status}: {reason}")
        self.backup = backup


class SnapshotFailed(ReddwarfClientError):
    """A snapshot being waited for reached FAILED; `snapshot.fault` says why."""

    def __init__(self, snapshot: Snapshot) -> None:
        reason = snapshot.fault.message if snapshot.fault is not None else "no fault recorded"
        super().__init__(f"snapshot {snapshot.id} ({snapshot.name}) is {snapshot.status}: {reason}")
        self.snapshot = snapshot


class WaitTimeout(ReddwarfClientError):
    """A wait ran past its deadline; `instance` is the last state seen (None if never seen)."""

    def __init__(self, message: str, instance: Instance | None) -> None:
        super().__init__(message)
        self.instance = instance


def fault_from_response(response: httpx.Response) -> ReddwarfAPIError:
    """Parse Trove's fault body of an error response; never raises."""
    request_id = response.headers.get("x-openstack-request-id")
    fault_name, message = _parse_fault_body(response)
    if not fault_name:
        fault_name = response.reason_phrase or "error"
    if not message:
        message = response.reason_phrase or f"HTTP {response.status_code}"
    return ReddwarfAPIError(response.status_code, fault_name, message, request_id)


def _parse_fault_body(response: httpx.Response) -> tuple[str, str]:
    try:
        body = response.json()
    except ValueError:
        text = response.text.strip()
        return "", " ".join(text.split())[:_MAX_RAW_MESSAGE]
    if isinstance(body, dict) and len(body) == 1:
        ((name, inner),) = body.items()
        if isinstance(inner, dict) and isinstance(inner.get("message"), str):
            return str(name), inner["message"]
    if isinstance(body, dict) and isinstance(body.get("detail"), str):
        # Not Trove's shape (e.g. a bare framework error): keep its message.
        return "", body["detail"]
    return "", ""
