"""The backups client against a scripted API: request bodies, filters, pagination, waits, faults, restores."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from tests.fakes.api import BACKUP_ID, ENDPOINT, PROJECT, TOKEN, FakeApi, backup_body, fault_response, instance_body

from reddwarf.client import Backup, BackupFailed, ReddwarfAPIError, ReddwarfClient, WaitTimeout

FAULT = {"message": "pg_basebackup exited 1: could not connect", "details": "see the log",
         "created": "2026-11-22T11:33:00"}


def _client(api: FakeApi) -> ReddwarfClient:
    return ReddwarfClient(ENDPOINT, TOKEN, PROJECT, transport=httpx.MockTransport(api))


def _scripted(*responses: httpx.Response) -> FakeApi:
    """Answers each request with the next response; the last one repeats."""
    remaining = list(responses)
    return FakeApi(handler=lambda request: remaining.pop(0) if len(remaining) > 1 else remaining[0])


def _backup(status: str, **extra: Any) -> httpx.Response:
    return httpx.Response(200, json={"backup": backup_body(status=status, **extra)})


def test_create_sends_troves_backup_body() -> None:
    api = FakeApi(handler=lambda request: httpx.Response(202, json={"backup": backup_body()}))
    backups = _client(api).backups
    created = backups.create_backup("nightly", "i1")
    incremental = backups.create_backup("hourly", "i1", description="after the load", incremental=True)
    on_parent = backups.create_backup("hourly", "i1", parent_id="p1")
    assert (created.status, created.id, incremental.id, on_parent.id) == ("NEW", BACKUP_ID, BACKUP_ID, BACKUP_ID)
    assert [(r.method, r.url.path) for r in api.requests] == [("POST", f"/v1.0/{PROJECT}/backups")] * 3
    assert api.bodies() == [
        {"backup": {"name": "nightly", "instance": "i1"}},
        {"backup": {"name": "hourly", "instance": "i1", "description": "after the load", "incremental": 1}},
        {"backup": {"name": "hourly", "instance": "i1", "parent_id": "p1"}},
    ]


def test_backup_model_reads_troves_view_and_the_extensions() -> None:
    body = backup_body(
        status="COMPLETED", size=0.25, uncompressed_size=1.5, parent_id="p1", locationRef="file:///x/b1",
        progress={"bytes_done": 1610612736, "phase": "done"}, fault=None, future={"x": 1},
    )
    api = FakeApi(handler=lambda request: httpx.Response(200, json={"backup": body}))
    backup = _client(api).backups.get_backup(BACKUP_ID)
    assert isinstance(backup, Backup)
    assert (backup.size, backup.uncompressed_size, backup.parent_id) == (0.25, 1.5, "p1")
    assert backup.progress is not None and (backup.progress.bytes_done, backup.progress.phase) == (1610612736, "done")
    assert backup.datastore is not None
    assert (backup.datastore.type, backup.datastore.version_id) == ("postgresql", "v18")
    assert backup.locationRef == "file:///x/b1"
    assert backup.wire() == body
    assert api.requests[0].url.path == f"/v1.0/{PROJECT}/backups/{BACKUP_ID}"


def test_list_sends_the_filters_and_follows_every_page_on_its_own_endpoint() -> None:
    pages = {None: (["b1", "b2"], "b2"), "b2": (["b3"], None)}

    def handler(request: httpx.Request) -> httpx.Response:
        ids, next_marker = pages[request.url.params.get("marker")]
        body: dict[str, Any] = {"backups": [backup_body(i) for i in ids]}
        if next_marker is not None:
            href = f"http://evil.test/v1.0/{PROJECT}/backups?instance_id=i1&limit=2&marker={next_marker}"
            body["links"] = [{"rel": "next", "href": href}]
        return httpx.Response(200, json=body)

    api = FakeApi(handler=handler)
    found = _client(api).backups.list_backups("i1", datastore="postgresql", all_projects=True, limit=2)
    assert [b.id for b in found] == ["b1", "b2", "b3"]
    assert {r.url.host for r in api.requests} == {"dbaas.test"}
    assert [dict(r.url.params) for r in api.requests] == [
        {"instance_id": "i1", "datastore": "postgresql", "all_projects": "true", "limit": "2"},
        {"instance_id": "i1", "datastore": "postgresql", "all_projects": "true", "limit": "2", "marker": "b2"},
    ]


def test_list_without_filters_sends_none() -> None:
    api = FakeApi(handler=lambda request: httpx.Response(200, json={"backups": []}))
    assert _client(api).backups.list_backups() == []
    assert dict(api.requests[0].url.params) == {}


def test_a_repeated_marker_stops_the_list() -> None:
    body = {"backups": [backup_body("b1")], "links": [{"rel": "next", "href": f"{ENDPOINT}/x?marker=b1"}]}
    api = FakeApi(handler=lambda request: httpx.Response(200, json=body))
    with pytest.raises(ReddwarfAPIError, match="repeated the pagination marker"):
        _client(api).backups.list_backups()


def test_delete_uses_troves_route() -> None:
    api = FakeApi(handler=lambda request: httpx.Response(202))
    _client(api).backups.delete_backup(BACKUP_ID)
    assert (api.requests[0].method, api.requests[0].url.path) == ("DELETE", f"/v1.0/{PROJECT}/backups/{BACKUP_ID}")


def test_wait_reports_the_progress_and_returns_the_completed_backup() -> None:
    api = _scripted(
        _backup("NEW"),
        _backup("BUILDING", progress={"bytes_done": 0, "phase": "preparing"}),
        _backup("BUILDING", progress={"bytes_done": 4096, "phase": "streaming"}),
        _backup("COMPLETED", size=0.001, progress={"bytes_done": 8192, "phase": "done"}),
    )
    seen: list[tuple[str, str, int]] = []

    def on_progress(backup: Backup) -> None:
        assert backup.progress is not None
        seen.append((backup.status, backup.progress.phase, backup.progress.bytes_done))

    done = _client(api).backups.wait_for_backup(BACKUP_ID, timeout=10, on_progress=on_progress, interval=0)
    assert done.status == "COMPLETED"
    assert seen == [("NEW", "queued", 0), ("BUILDING", "preparing", 0), ("BUILDING", "streaming", 4096),
                    ("COMPLETED", "done", 8192)]


def test_wait_raises_with_the_fault_when_the_backup_failed() -> None:
    api = _scripted(_backup("BUILDING"), _backup("FAILED", fault=FAULT))
    with pytest.raises(BackupFailed, match="is FAILED: pg_basebackup exited 1: could not connect") as caught:
        _client(api).backups.wait_for_backup(BACKUP_ID, timeout=10, interval=0)
    assert caught.value.backup.fault is not None and caught.value.backup.fault.details == "see the log"


def test_wait_times_out_naming_the_last_status_and_phase() -> None:
    api = _scripted(_backup("BUILDING", progress={"bytes_done": 1, "phase": "streaming"}))
    with pytest.raises(WaitTimeout, match=r"not COMPLETED within .* \(last status BUILDING, streaming\)"):
        _client(api).backups.wait_for_backup(BACKUP_ID, timeout=0.05, interval=0.01)


def test_wait_rides_out_a_brief_outage_and_stops_on_404() -> None:
    outage = fault_response(503, "serviceUnavailable", "store unreachable")
    assert _client(_scripted(outage, _backup("COMPLETED"))).backups.wait_for_backup(
        BACKUP_ID, timeout=10, interval=0).status == "COMPLETED"
    with pytest.raises(ReddwarfAPIError, match="gone"):
        _client(_scripted(fault_response(404, "itemNotFound", "gone"))).backups.wait_for_backup(
            BACKUP_ID, timeout=10, interval=0)


def test_wait_for_delete_ends_on_404() -> None:
    deleting = {"bytes_done": 8192, "phase": "deleting"}
    api = _scripted(_backup("COMPLETED", progress=deleting), _backup("COMPLETED", progress=deleting),
                    fault_response(404, "itemNotFound", "gone"))
    _client(api).backups.wait_for_backup_delete(BACKUP_ID, timeout=10, interval=0)
    assert len(api.requests) == 3


def test_wait_for_delete_fails_on_a_new_fault() -> None:
    api = _scripted(_backup("COMPLETED"), _backup("DELETE_FAILED", fault=FAULT))
    with pytest.raises(BackupFailed, match="DELETE_FAILED"):
        _client(api).backups.wait_for_backup_delete(BACKUP_ID, timeout=10, interval=0)


def test_wait_for_delete_fails_at_once_when_told_the_backup_had_no_fault() -> None:
    api = _scripted(_backup("DELETE_FAILED", fault=FAULT))
    with pytest.raises(BackupFailed, match="could not connect"):
        _client(api).backups.wait_for_backup_delete(BACKUP_ID, timeout=10, interval=0, old_fault=None)


def test_a_retried_delete_ignores_the_fault_of_the_failed_one() -> None:
    old = _backup("DELETE_FAILED", fault=FAULT)
    api = _scripted(old, old, fault_response(404, "itemNotFound", "gone"))
    client = _client(api)
    before = client.backups.get_backup(BACKUP_ID).fault
    client.backups.wait_for_backup_delete(BACKUP_ID, timeout=10, interval=0, old_fault=before)


def test_create_instance_from_a_backup_sends_troves_restore_point() -> None:
    api = FakeApi(handler=lambda request: httpx.Response(200, json={"instance": instance_body("i2")}))
    _client(api).create_instance("copy", "2", 3, backup_id=BACKUP_ID)
    assert api.bodies()[0] == {
        "instance": {"name": "copy", "flavorRef": "2", "volume": {"size": 3}, "restorePoint": {"backupRef": BACKUP_ID}}
    }
