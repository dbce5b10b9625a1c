"""Branches through the API with a fake engine and runtime: `restorePoint: {"instanceRef": ...}` makes a new
instance from a snapshot of a running one (the snapshot removed after, the copy adopted with the source's
credential), of the source's version by default; every refusal of bad input names the field and writes
nothing; a source deleted before the worker gets to it fails the branch with a fault naming it."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from test_api_accounts_support import AccountsApi, build_accounts_api

from reddwarf.domain.capacity import GIB


@pytest.fixture
def acc(tmp_path: Path, store_template: Path) -> Iterator[AccountsApi]:
    yield from build_accounts_api(tmp_path, store_template)


def _branch(acc: AccountsApi, source: str, **fields: Any) -> Any:
    body: dict[str, Any] = {"name": "copy", "flavorRef": "1", "volume": {"size": 2},
                            "restorePoint": {"instanceRef": source}}
    body.update(fields)
    return acc.api.post("/instances", {"instance": body})


def test_a_branch_snapshots_its_source_and_adopts_the_copy(acc: AccountsApi) -> None:
    source = acc.active_instance(volume={"size": 2})
    response = _branch(acc, source)
    assert response.status_code == 200, response.text
    copy = response.json()["instance"]
    origin = acc.api.get(f"/instances/{source}").json()["instance"]
    assert copy["status"] == "BUILD" and copy["datastore"]["version"] == origin["datastore"]["version"]
    acc.drain()
    shown = acc.api.get(f"/instances/{copy['id']}").json()["instance"]
    assert shown["status"] == "ACTIVE", shown
    runtime: Any = acc.deps.runtime
    assert ("snapshot", source) in runtime.calls and ("branch", copy["id"]) in runtime.calls
    assert ("prepare", copy["id"]) not in runtime.calls  # the branch prepares on the copy itself
    assert runtime.snapshots == set()  # removed once the copy holds its blocks
    assert [adopted for adopted, _ in acc.engines["postgresql"].fake_backups.adopted] == [copy["id"]]
    assert acc.api.get(f"/instances/{source}").json()["instance"]["status"] == "ACTIVE"


def test_branch_refusals_name_the_field_and_write_nothing(acc: AccountsApi) -> None:
    source = acc.active_instance(volume={"size": 2})
    building = acc.api.post("/instances", {"instance": {"name": "b", "flavorRef": "1", "volume": {"size": 2}}})
    before = acc.api.count("instances")

    both = _branch(acc, source, restorePoint={"instanceRef": source, "backupRef": source})
    assert both.status_code == 400 and "exactly one of backupRef" in both.text and "restorePoint" in both.text
    unknown = _branch(acc, "2" * 8 + "-2222-2222-2222-" + "2" * 12)
    assert unknown.status_code == 404
    others = acc.api.post("/instances", {"instance": {"name": "c", "flavorRef": "1", "volume": {"size": 2},
                                                      "restorePoint": {"instanceRef": source}}},
                          who="other", project=acc.api.other_project)
    assert others.status_code == 404
    not_ready = _branch(acc, building.json()["instance"]["id"])
    assert not_ready.status_code == 422 and "must be ACTIVE" in not_ready.text
    wrong_version = _branch(acc, source, datastore={"type": "postgresql", "version": "15"})
    assert wrong_version.status_code == 400 and "a branch of it runs the same" in wrong_version.text
    smaller = _branch(acc, source, volume={"size": 1})
    assert smaller.status_code == 400 and "volume.size" in smaller.text and "at least as much" in smaller.text
    assert acc.api.count("instances") == before


def test_a_source_deleted_before_the_branch_fails_it_with_a_fault(acc: AccountsApi) -> None:
    source = acc.active_instance(volume={"size": 2})
    copy = _branch(acc, source).json()["instance"]
    assert acc.api.delete(f"/instances/{source}").status_code == 202
    acc.drain()
    shown = acc.api.get(f"/instances/{copy['id']}").json()["instance"]
    assert shown["status"] == "ERROR"
    assert f"Instance {source} cannot be branched: it no longer exists." in shown["fault"]["message"]


def test_a_copy_the_runtime_refuses_fails_the_branch_and_keeps_no_snapshot(acc: AccountsApi) -> None:
    """The snapshot a branch takes is its own and in no record: a refused copy must not leave it behind."""
    source = acc.active_instance(volume={"size": 2})
    runtime: Any = acc.deps.runtime
    runtime.refuse_copies = "the volume copied holds symbolic links that lead outside it (e.g. 'data/x')"
    copy = _branch(acc, source).json()["instance"]
    acc.drain()
    shown = acc.api.get(f"/instances/{copy['id']}").json()["instance"]
    assert shown["status"] == "ERROR" and "symbolic links that lead outside it" in shown["fault"]["message"]
    assert runtime.snapshots == set()
    assert acc.api.get(f"/instances/{source}").json()["instance"]["status"] == "ACTIVE"


def _snapshot(acc: AccountsApi, instance_id: str, **fields: Any) -> Any:
    return acc.api.post(f"/instances/{instance_id}/snapshots", {"snapshot": {"name": "before-migration", **fields}})


def test_a_snapshot_is_taken_listed_branched_from_after_its_source_is_gone_and_deleted(acc: AccountsApi) -> None:
    source = acc.active_instance(volume={"size": 2})
    response = _snapshot(acc, source, description="the night before")
    assert response.status_code == 202, response.text
    made = response.json()["snapshot"]
    assert made["status"] == "NEW" and made["instance_id"] == source and made["volume"] == {"size": 2}
    acc.drain()
    shown = acc.api.get(f"/snapshots/{made['id']}").json()["snapshot"]
    assert shown["status"] == "COMPLETED" and shown["description"] == "the night before"
    runtime: Any = acc.deps.runtime
    assert made["id"] in runtime.snapshots
    assert [s["id"] for s in acc.api.get(f"/instances/{source}/snapshots").json()["snapshots"]] == [made["id"]]
    assert [s["id"] for s in acc.api.get("/snapshots").json()["snapshots"]] == [made["id"]]

    assert acc.api.delete(f"/instances/{source}").status_code == 202
    acc.drain()
    copy = _branch(acc, "", restorePoint={"snapshotRef": made["id"]}).json()["instance"]
    acc.drain()
    assert acc.api.get(f"/instances/{copy['id']}").json()["instance"]["status"] == "ACTIVE"
    assert ("branch", copy["id"]) in runtime.calls and made["id"] in runtime.snapshots  # the snapshot stays

    assert acc.api.delete(f"/snapshots/{made['id']}").status_code == 202
    acc.drain()
    assert acc.api.get(f"/snapshots/{made['id']}").status_code == 404
    assert runtime.snapshots == set()
    assert acc.api.get(f"/instances/{copy['id']}").json()["instance"]["status"] == "ACTIVE"


def test_snapshot_refusals_name_the_field_and_write_nothing(acc: AccountsApi) -> None:
    source = acc.active_instance(volume={"size": 2})
    building = acc.api.post("/instances", {"instance": {"name": "b", "flavorRef": "1", "volume": {"size": 1}}})
    assert _snapshot(acc, source, name="").status_code == 400
    too_long = _snapshot(acc, source, name="n" * 256)
    assert too_long.status_code == 400 and "256 characters" in too_long.text
    unknown_key = _snapshot(acc, source, incremental=1)
    assert unknown_key.status_code == 400 and "incremental" in unknown_key.text
    assert _snapshot(acc, "2" * 8 + "-2222-2222-2222-" + "2" * 12).status_code == 404
    others = acc.api.post(f"/instances/{source}/snapshots", {"snapshot": {"name": "x"}}, who="other",
                          project=acc.api.other_project)
    assert others.status_code == 404
    not_ready = _snapshot(acc, building.json()["instance"]["id"])
    assert not_ready.status_code == 422 and "must be ACTIVE" in not_ready.text
    refusing = dataclasses.replace(acc.api.ctx, branch_refusal="no copy-on-write volume pool (disabled)")
    acc.api.client.app.state.reddwarf = refusing  # type: ignore[attr-defined]
    no_pool = _snapshot(acc, source)
    assert no_pool.status_code == 400 and "cannot take snapshots: no copy-on-write volume pool" in no_pool.text
    assert acc.api.get("/snapshots").json()["snapshots"] == []
    assert acc.api.count("snapshots") == 0


def test_each_version_says_how_this_deployment_branches(acc: AccountsApi) -> None:
    versions = acc.api.get("/datastores/postgresql/versions").json()["versions"]
    shown = acc.api.get(f"/datastores/versions/{versions[0]['id']}").json()["version"]
    assert shown["branches"] == {"available": True, "method": "copy-on-write", "snapshots": True, "reason": None}
    refusing = dataclasses.replace(acc.api.ctx, branch_refusal="no copy-on-write volume pool (disabled)")
    acc.api.client.app.state.reddwarf = refusing  # type: ignore[attr-defined]
    shown = acc.api.get(f"/datastores/versions/{versions[0]['id']}").json()["version"]
    assert shown["branches"] == {"available": True, "method": "backup-and-restore", "snapshots": False,
                                 "reason": "no copy-on-write volume pool (disabled)"}


def test_a_pool_without_room_refuses_snapshots_and_branches_with_503_and_writes_nothing(acc: AccountsApi) -> None:
    """Each snapshot and branch reserves its source's volume size against the pool: one the pool cannot hold
    is refused before anything is copied, so a full pool never becomes a tenant's write error."""
    source = acc.active_instance(volume={"size": 2})
    object.__setattr__(acc.api.ctx, "storage_capacity", lambda: 3 * GIB)
    before = (acc.api.count("instances"), acc.api.count("snapshots"), acc.api.count("storage_reservations"),
              len(acc.api.operations()))

    snapshot = _snapshot(acc, source)
    branch = _branch(acc, source)

    for refused in (snapshot, branch):
        assert refused.status_code == 503, refused.text
        assert "not enough storage" in refused.json()["serviceUnavailable"]["message"]
    assert (acc.api.count("instances"), acc.api.count("snapshots"), acc.api.count("storage_reservations"),
            len(acc.api.operations())) == before
    assert acc.api.get(f"/instances/{source}").json()["instance"]["status"] == "ACTIVE"
    object.__setattr__(acc.api.ctx, "storage_capacity", lambda: 4 * GIB)
    assert _snapshot(acc, source).status_code == 202
