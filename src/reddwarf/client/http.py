"""`ReddwarfClient`: a synchronous httpx client of the v1.0 API, one project, one token.

The token travels only in the `X-Auth-Token` header to the configured endpoint: it is never logged, never
part of an exception message, and pagination never follows a `next` link to another host (the client reads
the marker from the link and asks its own endpoint). Waits poll with a deadline; a brief outage of the API
(connection error or 5xx) during a wait is retried until that deadline.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Collection, Iterator, Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import TYPE_CHECKING, Any, Generic, Self, TypeVar
from urllib.parse import parse_qs, quote, urlsplit

import httpx

from reddwarf import __version__
from reddwarf.client.errors import (
    InstanceFaulted,
    ReddwarfAPIError,
    ReddwarfConnectionError,
    WaitTimeout,
    fault_from_response,
)
from reddwarf.client.models import (
    DatabaseRequest,
    Datastore,
    DatastoreVersion,
    Flavor,
    Instance,
    InstancePage,
    UserRequest,
)
from reddwarf.domain.secret import Secret

if TYPE_CHECKING:
    from reddwarf.client.accounts import AccountsClient
    from reddwarf.client.backups import BackupsClient
    from reddwarf.client.snapshots import SnapshotsClient

logger = logging.getLogger(__name__)

API_VERSION = "v1.0"
ERROR_STATUS = "ERROR"
DEFAULT_WAIT_TIMEOUT = 900.0
DEFAULT_POLL_INTERVAL = 2.0
FIRST_POLL_INTERVAL = 0.25

PollCallback = Callable[[Instance], None]


def _plain_http_transport(endpoint: str) -> httpx.BaseTransport | None:
    """For an `http://` endpoint, a transport without a TLS trust store; None (httpx's default, which
    verifies certificates) for anything else.

    Every request of this client goes to its own endpoint (pagination reads markers, never follows another
    host's link), so a plain-HTTP endpoint never needs TLS; httpx would still load the CA bundle for its
    default transport, a fifth of a tenant command's start-up (bench/cli_startup.py).
    """
    if urlsplit(endpoint).scheme != "http":
        return None
    return httpx.HTTPTransport(verify=False)


class ReddwarfClient:
    """A tenant's view of the API: `/v1.0/{project_id}/...` with `X-Auth-Token`.

    `endpoint` is the API root (`http://127.0.0.1:8779`); a Trove-style endpoint that already ends in
    `/v1.0` or `/v1.0/{project_id}` is accepted too. `poll_interval` is the longest pause between two polls
    of a wait (a program that waits for many short operations polls more often than a person at a terminal).
    `transport` lets tests plug an in-process transport. Use it as a context manager, or call `close()`.
    """

    def __init__(
        self,
        endpoint: str,
        token: str | Secret,
        project_id: str,
        *,
        timeout: float = 30,
        poll_interval: float = DEFAULT_POLL_INTERVAL,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        if not project_id:
            raise ValueError("project_id must not be empty")
        secret = token if isinstance(token, Secret) else Secret(token)
        if not secret:
            raise ValueError("token must not be empty")
        self.endpoint = _api_root(endpoint, project_id)
        self.project_id = project_id
        self.poll_interval = poll_interval
        self._base_path = f"/{API_VERSION}/{quote(project_id, safe='')}"
        self._http = httpx.Client(
            base_url=self.endpoint,
            headers={
                "X-Auth-Token": secret.reveal(),
                "Accept": "application/json",
                "User-Agent": f"reddwarf-client/{__version__}",
            },
            timeout=timeout,
            transport=transport or _plain_http_transport(self.endpoint),
        )

    def __repr__(self) -> str:
        return f"ReddwarfClient(endpoint={self.endpoint!r}, project_id={self.project_id!r})"

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

    @property
    def accounts(self) -> AccountsClient:
        """Databases, users, grants and root of the project's instances (see `reddwarf.client.accounts`)."""
        # Imported on first use: the instance commands of the CLI never need it (bench/cli_startup.py).
        from reddwarf.client.accounts import AccountsClient

        return AccountsClient(self._request)

    @property
    def backups(self) -> BackupsClient:
        """Backups of the project's instances and the waits on them (see `reddwarf.client.backups`)."""
        from reddwarf.client.backups import BackupsClient

        return BackupsClient(self._request, self.poll_interval)

    @property
    def snapshots(self) -> SnapshotsClient:
        """Snapshots of the project's instances (see `reddwarf.client.snapshots`)."""
        from reddwarf.client.snapshots import SnapshotsClient

        return SnapshotsClient(self._request, self.poll_interval)

    # Instances

    def list_instances(
        self, limit: int | None = None, marker: str | None = None, *, all: bool = False, detail: bool = False
    ) -> list[Instance]:
        """Instances of the project, oldest first. One page unless `all`, which follows every `next` link."""
        if not all:
            return self.list_instances_page(limit, marker, detail=detail).instances
        return list(self.iter_instances(limit, marker, detail=detail))

    def iter_instances(
        self, limit: int | None = None, marker: str | None = None, *, detail: bool = False
    ) -> Iterator[Instance]:
        """Every instance from `marker` on, fetching pages of `limit` (the server's default if None)."""
        seen: set[str] = set()
        while True:
            page = self.list_instances_page(limit, marker, detail=detail)
            yield from page.instances
            if page.next_marker is None or not page.instances:
                return
            if page.next_marker in seen:
                raise ReddwarfAPIError(
                    500, "badPagination", f"the server repeated the pagination marker {page.next_marker}"
                )
            seen.add(page.next_marker)
            marker = page.next_marker

    def list_instances_page(
        self, limit: int | None = None, marker: str | None = None, *, detail: bool = False
    ) -> InstancePage:
        """One page of instances and the marker of the next page, if any."""
        params: dict[str, str | int] = {}
        if limit is not None:
            params["limit"] = limit
        if marker is not None:
            params["marker"] = marker
        body = self._get("/instances/detail" if detail else "/instances", params=params)
        instances = [Instance.model_validate(item) for item in _list_field(body, "instances")]
        return InstancePage(instances=instances, next_marker=_next_marker(body))

    def get_instance(self, instance_id: str) -> Instance:
        body = self._get(f"/instances/{_segment(instance_id)}")
        return Instance.model_validate(_object_field(body, "instance"))

    def create_instance(
        self,
        name: str,
        flavor: str,
        volume_size: int,
        *,
        datastore: str | None = None,
        version: str | None = None,
        databases: Sequence[str | DatabaseRequest] = (),
        users: Sequence[UserRequest] = (),
        backup_id: str | None = None,
        branch_of: str | None = None,
        snapshot_id: str | None = None,
    ) -> Instance:
        """Ask for a new instance; the answer is its detail view in status BUILD (Trove answers 200).
        A database is a name, or a `DatabaseRequest` with its character set and collation. `backup_id`
        restores that backup (its whole incremental chain) into the new instance (Trove's `restorePoint`);
        the datastore and version default to the backup's. `branch_of` branches that running instance
        (`restorePoint.instanceRef`): a copy of its data at this moment, its version by default;
        `snapshot_id` branches that snapshot (`restorePoint.snapshotRef`)."""
        instance: dict[str, Any] = {"name": name, "flavorRef": flavor, "volume": {"size": volume_size}}
        if datastore is not None or version is not None:
            store: dict[str, str] = {}
            if datastore is not None:
                store["type"] = datastore
            if version is not None:
                store["version"] = version
            instance["datastore"] = store
        if databases:
            instance["databases"] = [
                DatabaseRequest(name=db).body() if isinstance(db, str) else db.body() for db in databases
            ]
        if users:
            instance["users"] = [user.body() for user in users]
        if backup_id is not None:
            instance["restorePoint"] = {"backupRef": backup_id}
        if branch_of is not None:
            instance["restorePoint"] = {"instanceRef": branch_of}
        if snapshot_id is not None:
            instance["restorePoint"] = {"snapshotRef": snapshot_id}
        body = self._request("POST", "/instances", json={"instance": instance})
        created = Instance.model_validate(_object_field(body, "instance"))
        logger.info("instance %s (%s) requested", created.id, created.name)
        return created

    def create_replicas(
        self, name: str, source_id: str, count: int | None = None, *, mode: str | None = None,
        auto_failover: bool | None = None, durability: str | None = None,
    ) -> Instance:
        """Ask for `count` (default 1, at most 3) replicas of the instance `source_id` (Trove's `replica_of`):
        they take its flavor, volume size and datastore version; several are named `name-1` ... `name-N`.
        `mode`, `durability` and `auto_failover` set the set's replication policy (extension; None: leave it
        as it is).
        The answer is the first replica's detail view in status BUILD."""
        instance: dict[str, Any] = {"name": name, "replica_of": source_id}
        if count is not None:
            instance["replica_count"] = count
        policy = _policy(mode, auto_failover, durability)
        if policy:
            instance["replication"] = policy
        body = self._request("POST", "/instances", json={"instance": instance})
        created = Instance.model_validate(_object_field(body, "instance"))
        logger.info("replica %s (%s) of instance %s requested", created.id, created.name, source_id)
        return created

    def delete_instance(self, instance_id: str) -> None:
        self._request("DELETE", f"/instances/{_segment(instance_id)}")

    def restart_instance(self, instance_id: str) -> None:
        self._request("POST", f"/instances/{_segment(instance_id)}/action", json={"restart": {}})

    def set_replication(
        self, instance_id: str, *, mode: str | None = None, auto_failover: bool | None = None,
        durability: str | None = None,
    ) -> None:
        """Change the replication policy of the set whose primary is `instance_id` (extension)."""
        self._request("PATCH", f"/instances/{_segment(instance_id)}",
                      json={"instance": {"replication": _policy(mode, auto_failover, durability)}})

    def detach_replica(self, instance_id: str) -> None:
        """Trove's detach: the replica becomes an independent read-write instance with its own admin credential."""
        self._request("PUT", f"/instances/{_segment(instance_id)}", json={"instance": {"replica_of": None}})

    def promote_replica(self, instance_id: str) -> None:
        """Trove's `promote_to_replica_source` (switchover): the replica becomes its set's primary, the old
        primary and the other replicas follow it."""
        self._request("POST", f"/instances/{_segment(instance_id)}/action", json={"promote_to_replica_source": {}})

    def eject_replica_source(self, instance_id: str) -> None:
        """Trove's `eject_replica_source` (failover), on a source that has been unhealthy long enough: it is
        fenced, and its most advanced replica takes its place."""
        self._request("POST", f"/instances/{_segment(instance_id)}/action", json={"eject_replica_source": {}})

    def wait_for_detach(
        self, instance_id: str, timeout: float = DEFAULT_WAIT_TIMEOUT, on_poll: PollCallback | None = None
    ) -> Instance:
        """Poll until the instance is ACTIVE and no replica any more (detached, or promoted); `InstanceFaulted`
        when it reaches ERROR."""

        def settled(view: Instance) -> bool:
            if on_poll is not None:
                on_poll(view)
            if view.status == ERROR_STATUS:
                raise InstanceFaulted(view)
            return view.status == "ACTIVE" and view.source_id is None

        end = poll(lambda: self.get_instance(instance_id), settled, timeout=timeout, interval=self.poll_interval,
                   label=f"instance {instance_id}")
        if end.view is None or end.expired:
            raise WaitTimeout(_timeout_message(instance_id, {"ACTIVE (detached)"}, timeout, end.view, end.error),
                              end.view)
        return end.view

    def rename_instance(self, instance_id: str, name: str) -> None:
        self._request("PUT", f"/instances/{_segment(instance_id)}", json={"instance": {"name": name}})

    def wait_for_instance(
        self,
        instance_id: str,
        statuses: Collection[str] = frozenset({"ACTIVE"}),
        timeout: float = DEFAULT_WAIT_TIMEOUT,
        on_poll: PollCallback | None = None,
        *,
        interval: float | None = None,
    ) -> Instance:
        """Poll until the instance has one of `statuses`; return it. Polls at most `interval` seconds apart
        (the client's `poll_interval` if None).

        Raises `InstanceFaulted` when it reaches ERROR (unless ERROR is awaited), `WaitTimeout` after
        `timeout` seconds, `ReddwarfAPIError` for a 4xx (404: the instance is gone).
        """

        def settled(view: Instance) -> bool:
            if on_poll is not None:
                on_poll(view)
            if view.status in statuses:
                return True
            if view.status == ERROR_STATUS:
                raise InstanceFaulted(view)
            return False

        end = poll(lambda: self.get_instance(instance_id), settled, timeout=timeout,
                   interval=self.poll_interval if interval is None else interval, label=f"instance {instance_id}")
        if end.view is None or end.expired:
            raise WaitTimeout(_timeout_message(instance_id, statuses, timeout, end.view, end.error), end.view)
        return end.view

    def wait_for_delete(
        self,
        instance_id: str,
        timeout: float = DEFAULT_WAIT_TIMEOUT,
        on_poll: PollCallback | None = None,
        *,
        interval: float | None = None,
    ) -> None:
        """Poll until the instance is gone (404); `InstanceFaulted` if a new fault appears meanwhile."""
        first_fault: object = None
        first = True

        def settled(view: Instance) -> bool:
            nonlocal first, first_fault
            if on_poll is not None:
                on_poll(view)
            if first:
                # An instance in ERROR before the delete keeps its old fault; only a new one is a failure.
                first_fault, first = view.fault, False
            elif view.status == ERROR_STATUS and view.fault is not None and view.fault != first_fault:
                raise InstanceFaulted(view)
            return False

        end = poll(lambda: self.get_instance(instance_id), settled, timeout=timeout,
                   interval=self.poll_interval if interval is None else interval, label=f"instance {instance_id}",
                   until_gone=True)
        if end.expired:
            message = _timeout_message(instance_id, ("deleted",), timeout, end.view, end.error)
            raise WaitTimeout(message, end.view)

    # Catalogue

    def list_datastores(self) -> list[Datastore]:
        body = self._get("/datastores")
        return [Datastore.model_validate(item) for item in _list_field(body, "datastores")]

    def list_datastore_versions(self, datastore: str) -> list[DatastoreVersion]:
        """Versions of a datastore, by name or id."""
        body = self._get(f"/datastores/{_segment(datastore)}/versions")
        return [DatastoreVersion.model_validate(item) for item in _list_field(body, "versions")]

    def list_flavors(self) -> list[Flavor]:
        body = self._get("/flavors")
        return [Flavor.model_validate(item) for item in _list_field(body, "flavors")]

    # Transport

    def _get(self, path: str, params: dict[str, str | int] | None = None) -> Any:
        return self._request("GET", path, params=params)

    def _request(self, method: str, path: str, *, params: dict[str, str | int] | None = None, json: Any = None) -> Any:
        """Send one request under the project prefix; the parsed JSON body (None when empty)."""
        url = self._base_path + path
        try:
            response = self._http.request(method, url, params=params, json=json)
        except httpx.TimeoutException as exc:
            raise ReddwarfConnectionError(f"{method} {self.endpoint}{url} timed out ({type(exc).__name__})") from exc
        except httpx.TransportError as exc:
            raise ReddwarfConnectionError(f"cannot reach {self.endpoint}: {exc}") from exc
        logger.debug("%s %s -> %s", method, url, response.status_code)
        if response.is_error:
            raise fault_from_response(response)
        if not response.content:
            return None
        try:
            return response.json()
        except ValueError as exc:
            raise ReddwarfAPIError(
                response.status_code, "badResponse", f"{method} {url} answered a body that is not JSON"
            ) from exc


def _api_root(endpoint: str, project_id: str) -> str:
    root = endpoint.strip().rstrip("/")
    for suffix in (f"/{API_VERSION}/{project_id}", f"/{API_VERSION}"):
        if root.endswith(suffix):
            root = root[: -len(suffix)]
            break
    parts = urlsplit(root)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ValueError(f"endpoint must be an http(s) URL such as http://127.0.0.1:8779, not {endpoint!r}")
    return root


def _segment(value: str) -> str:
    if not value:
        raise ValueError("an id or name must not be empty")
    return quote(value, safe="")


def _list_field(body: Any, key: str) -> list[Any]:
    value = body.get(key) if isinstance(body, dict) else None
    if not isinstance(value, list):
        raise ReddwarfAPIError(200, "badResponse", f"the answer has no {key!r} list")
    return value


def _object_field(body: Any, key: str) -> Any:
    value = body.get(key) if isinstance(body, dict) else None
    if not isinstance(value, dict):
        raise ReddwarfAPIError(200, "badResponse", f"the answer has no {key!r} object")
    return value


def _next_marker(body: Any) -> str | None:
    """The marker of Trove's `links: [{"rel": "next", "href": "...?marker=X"}]`, or None."""
    links = body.get("links") if isinstance(body, dict) else None
    if not isinstance(links, list):
        return None
    for link in links:
        if isinstance(link, dict) and link.get("rel") == "next" and isinstance(link.get("href"), str):
            markers = parse_qs(urlsplit(link["href"]).query).get("marker")
            if markers:
                return markers[0]
    return None


def _transient(exc: Exception) -> bool:
    """Worth retrying within a wait: the API was unreachable or failed on its side."""
    return isinstance(exc, ReddwarfConnectionError) or (isinstance(exc, ReddwarfAPIError) and exc.status >= 500)


def _backoff(interval: float) -> Iterator[float]:
    """Poll delays: quick at first (a create may settle in a second), doubling up to `interval`."""
    delay = min(FIRST_POLL_INTERVAL, interval)
    while True:
        yield delay
        delay = min(delay * 2, interval)


V = TypeVar("V")


@dataclass(frozen=True)
class PollEnd(Generic[V]):
    """How a `poll` ended: the view it settled on, or the resource gone (404, when waited for), or the deadline
    passed (`expired`, with the last view and the last transient error seen)."""

    view: V | None = None
    gone: bool = False
    expired: bool = False
    error: Exception | None = None


def poll(
    fetch: Callable[[], V], settled: Callable[[V], bool], *, timeout: float, interval: float, label: str,
    until_gone: bool = False,
) -> PollEnd[V]:
    """Fetch until `settled(view)` (which may raise to end the wait as a failure), at most `interval` seconds
    apart (quicker at first), for `timeout` seconds. A brief outage of the API (`_transient`) is retried; any
    other error propagates, except a 404 when `until_gone`, which ends the wait."""
    deadline = time.monotonic() + timeout
    delays = _backoff(interval)
    last: V | None = None
    last_error: Exception | None = None
    while True:
        try:
            last = fetch()
        except (ReddwarfConnectionError, ReddwarfAPIError) as exc:
            if until_gone and isinstance(exc, ReddwarfAPIError) and exc.status == 404:
                return PollEnd(gone=True)
            if not _transient(exc):
                raise
            last_error = exc
            logger.warning("%s: API unavailable while waiting (%s); retrying", label, exc)
        else:
            last_error = None
            if settled(last):
                return PollEnd(view=last)
        if not _pause(deadline, next(delays)):
            return PollEnd(view=last, expired=True, error=last_error)


def _pause(deadline: float, interval: float) -> bool:
    """Sleep until the next poll; False when the deadline has passed."""
    remaining = deadline - time.monotonic()
    if remaining <= 0:
        return False
    time.sleep(min(interval, remaining))
    return True


def _timeout_message(
    instance_id: str, wanted: Collection[str], timeout: float, last: Instance | None, error: Exception | None
) -> str:
    target = " or ".join(sorted(wanted))
    message = f"instance {instance_id} did not become {target} within {timeout:g} s"
    if last is not None:
        message += f" (last status {last.status})"
    if error is not None:
        message += f"; last error: {error}"
    return message


def _policy(mode: str | None, auto_failover: bool | None, durability: str | None = None) -> dict[str, Any]:
    policy: dict[str, Any] = {}
    if mode is not None:
        policy["mode"] = mode
    if durability is not None:
        policy["durability"] = durability
    if auto_failover is not None:
        policy["auto_failover"] = auto_failover
    return policy
