"""Errors that cross layers.

Request errors (`RequestError` and its children) carry what the API needs to answer in Trove's fault
format; the one error mapping in `reddwarf.api` turns them into HTTP responses. Workflow errors
(`TemporaryError`, `PermanentError`) tell the durable worker whether to retry a step or record a fault.
"""

from __future__ import annotations


class ReddwarfError(Exception):
    """Base of every error Reddwarf raises on purpose."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class RequestError(ReddwarfError):
    """A request Reddwarf refuses; `status` and `fault` are Trove's (HTTP code, fault body name)."""

    status = 400
    fault = "badRequest"


class BadRequest(RequestError):
    """The request is malformed or asks for something impossible; `field` names the culprit."""

    def __init__(self, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.field = field


class CapabilityMissing(BadRequest):
    """The datastore version does not offer what the request needs."""

    def __init__(self, datastore: str, version: str, capability: str) -> None:
        super().__init__(
            f"Datastore {datastore} version {version} does not support {capability}.", field=capability
        )
        self.capability = capability


class Unauthorized(RequestError):
    status = 401
    fault = "unauthorized"


class Forbidden(RequestError):
    status = 403
    fault = "forbidden"


class NotFound(RequestError):
    status = 404
    fault = "itemNotFound"

    def __init__(self, kind: str, ident: str) -> None:
        super().__init__(f"{kind} {ident} could not be found.")
        self.kind = kind
        self.ident = ident


class Conflict(RequestError):
    status = 409
    fault = "conflictingRequest"


class UnprocessableEntity(RequestError):
    """The resource is in a state where the request cannot run now (Trove answers 422)."""

    status = 422
    fault = "unprocessableEntity"


class OverLimit(RequestError):
    status = 413
    fault = "overLimit"


class ServiceUnavailable(RequestError):
    status = 503
    fault = "serviceUnavailable"


class StoreUnavailable(ServiceUnavailable):
    """The metadata store cannot be reached, or stays locked past its busy timeout: retry later."""

    def __init__(
        self, message: str = "Reddwarf's metadata store is unavailable; try again shortly."
    ) -> None:
        super().__init__(message)


class StoreOutcomeUnknown(StoreUnavailable):
    """The store went away while committing: the request may or may not have been recorded."""

    def __init__(self) -> None:
        super().__init__(
            "Reddwarf's metadata store became unavailable while recording this request, which may or may not "
            "have been recorded: look (list or show) before trying again."
        )


class TemporaryError(ReddwarfError):
    """A step failed for a reason that may pass: the worker retries it after `delay` seconds."""

    def __init__(self, message: str, delay: float = 1.0) -> None:
        super().__init__(message)
        self.delay = delay


class NotYet(TemporaryError):
    """Not an error: the step waits for something else (another operation's lease, an earlier operation on
    the same resource). The worker requeues it after `delay` without counting an attempt; the operation's
    deadline still bounds the wait (CloudNativePG's "requeue", not a failure)."""


class LeaseLost(ReddwarfError):
    """Another worker owns the operation now (this worker's lease expired, or the operation was superseded):
    whatever the step was doing is abandoned, uncommitted (`reddwarf.fencing`)."""


class PermanentError(ReddwarfError):
    """A step failed for good: the worker records a fault on the resource and stops the operation."""

    def __init__(self, message: str, details: str = "") -> None:
        super().__init__(message)
        self.details = details
