"""Client methods of the snapshot routes (`ReddwarfClient.snapshots`, Reddwarf's extension): take, list,
show, delete, and wait. A branch is not here: it is an instance create with `branch_of` (an instance) or
`snapshot_id` (a snapshot)."""

from __future__ import annotations

import logging
from typing import Any

from reddwarf.client.accounts import Requester
from reddwarf.client.errors import SnapshotFailed, WaitTimeout
from reddwarf.client.http import DEFAULT_WAIT_TIMEOUT, _list_field, _object_field, _segment, poll
from reddwarf.client.models import Snapshot

logger = logging.getLogger(__name__)

COMPLETED = "COMPLETED"


class SnapshotsClient:
    """The project's snapshots, over one `ReddwarfClient` connection."""

    def __init__(self, request: Requester, poll_interval: float) -> None:
        self._request = request
        self._poll_interval = poll_interval

    def create_snapshot(self, instance_id: str, name: str, *, description: str | None = None) -> Snapshot:
        """Ask for a snapshot of a running instance; the answer is the snapshot in status NEW."""
        snapshot: dict[str, Any] = {"name": name}
        if description is not None:
            snapshot["description"] = description
        body = self._request("POST", f"/instances/{_segment(instance_id)}/snapshots", json={"snapshot": snapshot})
        created = Snapshot.model_validate(_object_field(body, "snapshot"))
        logger.info("snapshot %s (%s) of instance %s requested", created.id, created.name, instance_id)
        return created

    def list_snapshots(self, instance_id: str | None = None) -> list[Snapshot]:
        path = "/snapshots" if instance_id is None else f"/instances/{_segment(instance_id)}/snapshots"
        return [Snapshot.model_validate(item) for item in _list_field(self._request("GET", path), "snapshots")]

    def get_snapshot(self, snapshot_id: str) -> Snapshot:
        body = self._request("GET", f"/snapshots/{_segment(snapshot_id)}")
        return Snapshot.model_validate(_object_field(body, "snapshot"))

    def delete_snapshot(self, snapshot_id: str) -> None:
        self._request("DELETE", f"/snapshots/{_segment(snapshot_id)}")

    def wait_for_snapshot(self, snapshot_id: str, timeout: float = DEFAULT_WAIT_TIMEOUT) -> Snapshot:
        """Poll until the snapshot is COMPLETED; `SnapshotFailed` when it fails, `WaitTimeout` past `timeout`."""

        def settled(view: Snapshot) -> bool:
            if view.status in ("FAILED", "DELETE_FAILED"):
                raise SnapshotFailed(view)
            return view.status == COMPLETED

        end = poll(lambda: self.get_snapshot(snapshot_id), settled, timeout=timeout, interval=self._poll_interval,
                   label=f"snapshot {snapshot_id}")
        if end.view is None or end.expired:
            raise WaitTimeout(f"snapshot {snapshot_id} was not {COMPLETED} within {timeout:g}s", None)
        return end.view

    def wait_for_snapshot_delete(self, snapshot_id: str, timeout: float = DEFAULT_WAIT_TIMEOUT) -> None:
        """Poll until the snapshot is gone (404); `SnapshotFailed` when its delete fails."""

        def settled(view: Snapshot) -> bool:
            if view.status == "DELETE_FAILED":
                raise SnapshotFailed(view)
            return False

        end = poll(lambda: self.get_snapshot(snapshot_id), settled, timeout=timeout, interval=self._poll_interval,
                   label=f"snapshot {snapshot_id}", until_gone=True)
        if not end.gone:
            raise WaitTimeout(f"snapshot {snapshot_id} was not deleted within {timeout:g}s", None)
