"""Client methods of the backup routes (`ReddwarfClient.backups`): create, list, show, delete and the waits.

A create answers 202 with the backup in status NEW; the server's reconciler then moves it to BUILDING and
COMPLETED or FAILED, reporting `progress` (bytes of the tool's stream stored, and the phase) while it runs.
`wait_for_backup` polls with a deadline, hands each view to `on_progress` (what draws the CLI's progress bar)
and raises `BackupFailed` with the server's fault when it fails. A delete also answers 202 (incremental
children go first, as Trove) and the backup answers 404 once it is gone: `wait_for_backup_delete` waits for
that. A restore is not here: it is an instance create with `backup_id` (Trove's `restorePoint`).

Lists follow the pagination like `ReddwarfClient.iter_instances`: markers are read from the `next` link and
asked of the client's own endpoint, never followed to another host.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from typing import Any

from reddwarf.client.accounts import Requester
from reddwarf.client.errors import BackupFailed, ReddwarfAPIError, WaitTimeout
from reddwarf.client.http import (
    DEFAULT_WAIT_TIMEOUT,
    _list_field,
    _next_marker,
    _object_field,
    _segment,
    poll,
)
from reddwarf.client.models import Backup, BackupPage, Fault

logger = logging.getLogger(__name__)

COMPLETED = "COMPLETED"
FAILED = "FAILED"
DELETE_FAILED = "DELETE_FAILED"

ProgressCallback = Callable[[Backup], None]

# "The fault the backup had when its delete was asked": unknown until the first poll of the wait.
_FIRST_POLL: Any = object()


class BackupsClient:
    """The project's backups, over one `ReddwarfClient` connection."""

    def __init__(self, request: Requester, poll_interval: float) -> None:
        self._request = request
        self._poll_interval = poll_interval

    def create_backup(
        self, name: str, instance_id: str, *, description: str | None = None, parent_id: str | None = None,
        incremental: bool = False, from_snapshot: bool = False,
    ) -> Backup:
        """Ask for a backup of an instance; the answer is the backup in status NEW.

        `parent_id` makes it an incremental on that backup; `incremental` without a parent makes it an
        incremental on the instance's latest completed backup (the server refuses an incremental the engine
        cannot take, rather than taking a full copy). `from_snapshot` (Reddwarf's extension): a full backup
        streamed in the background from a snapshot taken first, kept as the tenant's.
        """
        backup: dict[str, Any] = {"name": name, "instance": instance_id}
        if description is not None:
            backup["description"] = description
        if parent_id is not None:
            backup["parent_id"] = parent_id
        if incremental:
            backup["incremental"] = 1  # Trove's 0/1, as troveclient sends it
        if from_snapshot:
            backup["from_snapshot"] = True
        body = self._request("POST", "/backups", json={"backup": backup})
        created = Backup.model_validate(_object_field(body, "backup"))
        logger.info("backup %s (%s) of instance %s requested", created.id, created.name, instance_id)
        return created

    def list_backups(
        self, instance_id: str | None = None, *, datastore: str | None = None, all_projects: bool = False,
        limit: int | None = None,
    ) -> list[Backup]:
        """Every backup matching the filters (following every page), oldest first. `all_projects` lists
        every project's (admins only; the server ignores it for others). `limit` is the page size."""
        return list(self.iter_backups(instance_id, datastore=datastore, all_projects=all_projects, limit=limit))

    def iter_backups(
        self, instance_id: str | None = None, *, datastore: str | None = None, all_projects: bool = False,
        limit: int | None = None, marker: str | None = None,
    ) -> Iterator[Backup]:
        """The backups from `marker` on, a page of `limit` (the server's default if None) at a time."""
        seen: set[str] = set()
        while True:
            page = self.list_backups_page(
                instance_id, datastore=datastore, all_projects=all_projects, limit=limit, marker=marker
            )
            yield from page.backups
            if page.next_marker is None or not page.backups:
                return
            if page.next_marker in seen:
                raise ReddwarfAPIError(
                    500, "badPagination", f"the server repeated the pagination marker {page.next_marker}"
                )
            seen.add(page.next_marker)
            marker = page.next_marker

    def list_backups_page(
        self, instance_id: str | None = None, *, datastore: str | None = None, all_projects: bool = False,
        limit: int | None = None, marker: str | None = None,
    ) -> BackupPage:
        """One page of backups and the marker of the next page, if any."""
        params: dict[str, str | int] = {}
        if instance_id is not None:
            params["instance_id"] = instance_id
        if datastore is not None:
            params["datastore"] = datastore
        if all_projects:
            params["all_projects"] = "true"
        if limit is not None:
            params["limit"] = limit
        if marker is not None:
            params["marker"] = marker
        body = self._request("GET", "/backups", params=params)
        backups = [Backup.model_validate(item) for item in _list_field(body, "backups")]
        return BackupPage(backups=backups, next_marker=_next_marker(body))

    def get_backup(self, backup_id: str) -> Backup:
        body = self._request("GET", f"/backups/{_segment(backup_id)}")
        return Backup.model_validate(_object_field(body, "backup"))

    def delete_backup(self, backup_id: str) -> None:
        """Ask for the delete of a backup and of its incremental descendants (202; 422 while one is taken)."""
        self._request("DELETE", f"/backups/{_segment(backup_id)}")

    def wait_for_backup(
        self, backup_id: str, timeout: float = DEFAULT_WAIT_TIMEOUT, on_progress: ProgressCallback | None = None,
        *, interval: float | None = None,
    ) -> Backup:
        """Poll until the backup is COMPLETED and return it; `on_progress` gets every view polled.

        Raises `BackupFailed` (with the server's fault) when it reaches FAILED, `WaitTimeout` after `timeout`
        seconds, `ReddwarfAPIError` for a 4xx (404: the backup is gone). A brief outage of the API is retried.
        """

        def settled(view: Backup) -> bool:
            if on_progress is not None:
                on_progress(view)
            if view.status == COMPLETED:
                return True
            if view.status in (FAILED, DELETE_FAILED):
                raise BackupFailed(view)
            return False

        end = poll(lambda: self.get_backup(backup_id), settled, timeout=timeout,
                   interval=self._poll_interval if interval is None else interval, label=f"backup {backup_id}")
        if end.view is None or end.expired:
            raise WaitTimeout(_timeout_message(backup_id, COMPLETED, timeout, end.view, end.error), None)
        return end.view

    def wait_for_backup_delete(
        self, backup_id: str, timeout: float = DEFAULT_WAIT_TIMEOUT, on_progress: ProgressCallback | None = None,
        *, interval: float | None = None, old_fault: Fault | None = _FIRST_POLL,
    ) -> None:
        """Poll until the backup is gone (404). `BackupFailed` when the delete fails (DELETE_FAILED with a
        new fault). `old_fault` is the fault the backup had before the delete was asked (a delete retried
        after a DELETE_FAILED keeps showing it until it ends); by default, the one the first poll sees."""
        known_fault = old_fault

        def settled(view: Backup) -> bool:
            nonlocal known_fault
            if on_progress is not None:
                on_progress(view)
            if known_fault is _FIRST_POLL:
                known_fault = view.fault
            elif view.status == DELETE_FAILED and view.fault is not None and view.fault != known_fault:
                raise BackupFailed(view)
            return False

        end = poll(lambda: self.get_backup(backup_id), settled, timeout=timeout,
                   interval=self._poll_interval if interval is None else interval, label=f"backup {backup_id}",
                   until_gone=True)
        if end.expired:
            raise WaitTimeout(_timeout_message(backup_id, "deleted", timeout, end.view, end.error), None)


def _timeout_message(
    backup_id: str, wanted: str, timeout: float, last: Backup | None, error: Exception | None
) -> str:
    message = f"backup {backup_id} was not {wanted} within {timeout:g} s"
    if last is not None:
        phase = f", {last.progress.phase}" if last.progress is not None and last.progress.phase else ""
        message += f" (last status {last.status}{phase})"
    if error is not None:
        message += f"; last error: {error}"
    return message
