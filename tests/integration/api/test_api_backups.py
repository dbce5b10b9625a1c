"""The backups API and workflow with a fake engine and runtime and the real filesystem storage: Trove's routes
and fields, every refusal of bad input (and that it writes nothing), the BACKUP status while one runs, chains
of incrementals, deletes of a parent with its children, restores (what the extract tool is fed is exactly
what was dumped; a corrupted, truncated or missing artifact fails the restore with a fault naming the backup).
"""

from __future__ import annotations

import dataclasses
import io
import os
import tarfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from test_api_accounts_support import AccountsApi, build_accounts_api
from tests.fakes.backups import EXTRACT
from tests.fakes.engines import AccountsEngine

from reddwarf.domain.backup import ArchivePiece, ArchiveSpec
from reddwarf.domain.capabilities import Capability
from reddwarf.domain.conditions import Observation, Reason
from reddwarf.domain.errors import PermanentError, TemporaryError
from reddwarf.domain.status import ConditionType
from reddwarf.storage.artifact import ArtifactOptions, Manifest
from reddwarf.storage.filesystem import FilesystemStorage
from reddwarf.workflows.kernel.worker import Worker
from reddwarf.workflows.reconcilers.archive import ArchiveShipper, shipped_names, stream_pieces
from reddwarf.workflows.reconcilers.deps import BackupFiles
from reddwarf.workflows.worker import handlers

# ~1.25 MiB, a fifth of it incompressible: several chunks, and a stored size that shows in GB.
DUMP = os.urandom(256 << 10) + bytes(range(256)) * 4096 + b"the end"


@pytest.fixture
def acc(tmp_path: Path, store_template: Path) -> Iterator[AccountsApi]:
    for built in build_accounts_api(tmp_path, store_template):
        for engine in built.engines.values():
            engine.offered = engine.offered | {Capability.BACKUP}
        files = BackupFiles(FilesystemStorage(tmp_path / "backups"), ArtifactOptions(chunk_bytes=64 << 10))
        deps = dataclasses.replace(built.deps, backups=files)
        built.deps = deps
        built.worker = Worker(built.api.db, handlers(deps), lease_ttl=30, poll_interval=0.01, deadline=900)
        runtime: Any = deps.runtime
        runtime.tool_output = DUMP
        yield built


def _backup(acc: AccountsApi, instance_id: str, **fields: Any) -> Any:
    acc.api.clock.now += 1  # backups list in the order they were taken
    body = {"backup": {"name": "nightly", "instance": instance_id, **fields}}
    return acc.api.post("/backups", body)


def _completed(acc: AccountsApi, instance_id: str, **fields: Any) -> dict[str, Any]:
    response = _backup(acc, instance_id, **fields)
    assert response.status_code == 202, response.text
    acc.drain()
    shown = acc.api.get(f"/backups/{response.json()['backup']['id']}").json()["backup"]
    assert shown["status"] == "COMPLETED", shown
    return dict(shown)


def test_a_backup_completes_with_troves_fields_and_the_instance_is_backup_while_it_runs(acc: AccountsApi) -> None:
    iid = acc.active_instance()
    response = _backup(acc, iid, description="before the migration")
    assert response.status_code == 202, response.text
    created = response.json()["backup"]
    assert created["status"] == "NEW" and created["instance_id"] == iid and created["parent_id"] is None
    assert created["datastore"]["type"] == "postgresql" and created["datastore"]["version_id"]
    acc.drain()
    shown = acc.api.get(f"/backups/{created['id']}").json()["backup"]
    assert shown["status"] == "COMPLETED"
    assert shown["uncompressed_size"] == pytest.approx(len(DUMP) / 1024**3, rel=1e-3)
    assert 0 < shown["size"] < shown["uncompressed_size"]  # compressed
    assert shown["locationRef"].startswith("file://") and "/database_backups/" in shown["locationRef"]
    assert shown["progress"] == {"bytes_done": len(DUMP), "phase": "done"}
    assert shown["description"] == "before the migration" and shown["project_id"] == acc.api.project
    instance = acc.api.get(f"/instances/{iid}").json()["instance"]
    assert instance["status"] == "ACTIVE"
    statuses = [event["kind"] for event in acc.api.get(f"/instances/{iid}/events").json()["events"]]
    assert "BACKUP" in statuses  # written by the reconciler while it ran
    assert [b["id"] for b in acc.api.get(f"/instances/{iid}/backups").json()["backups"]] == [created["id"]]


def test_refused_backups_name_the_field_and_write_nothing(acc: AccountsApi) -> None:
    iid = acc.active_instance()
    cases: list[tuple[dict[str, Any], int, str]] = [
        ({"name": "x" * 256, "instance": iid}, 400, "255"),
        ({"instance": iid}, 400, "name"),
        ({"name": "b", "instance": "0" * 8 + "-0000-0000-0000-" + "0" * 12}, 404, "Instance"),
        ({"name": "b", "instance": iid, "parent_id": "1" * 8 + "-1111-1111-1111-" + "1" * 12}, 404, "Backup"),
        ({"name": "b", "instance": iid, "restore_from": {"remote_location": "x"}}, 400, "restore_from"),
        ({"name": "b", "instance": iid, "storage_driver": "tape"}, 400, "storage_driver"),
        ({"name": "b", "instance": iid, "swift_container": "../etc"}, 400, "swift_container"),
        ({"name": "b", "instance": iid, "bogus": 1}, 400, "bogus"),
    ]
    for fields, status, word in cases:
        response = acc.api.post("/backups", {"backup": fields})
        assert response.status_code == status, (fields, response.text)
        assert word in response.text, (fields, response.text)
    assert acc.api.count("backups") == 0
    assert [kind for kind, _ in acc.api.operations(iid) if kind.startswith("backup")] == []
    # Another project sees neither the instance nor its backup.
    foreign = acc.api.post("/backups", {"backup": {"name": "b", "instance": iid}}, who="other",
                           project=acc.api.other_project)
    assert foreign.status_code == 404
    mine = _completed(acc, iid)
    assert acc.api.get(f"/backups/{mine['id']}", who="other", project=acc.api.other_project).status_code == 404
    assert acc.api.delete(f"/backups/{mine['id']}", who="other", project=acc.api.other_project).status_code == 404


def test_a_parent_of_another_instance_is_refused_and_one_backup_runs_at_a_time(acc: AccountsApi) -> None:
    first, second = acc.active_instance(), acc.active_instance()
    parent = _completed(acc, first)
    response = _backup(acc, second, parent_id=parent["id"])
    assert response.status_code == 400 and "another instance" in response.text
    assert _backup(acc, second).status_code == 202
    again = _backup(acc, second)
    assert again.status_code == 422 and "already being backed up" in again.text


def test_a_backup_of_an_instance_that_is_not_active_is_422(acc: AccountsApi) -> None:
    iid = acc.active_instance()
    with acc.api.db.unit_of_work() as uow:
        uow.instances.record(iid, Observation.REBOOTING, "restarting", generation=0)
    response = _backup(acc, iid)
    assert response.status_code == 422 and "ACTIVE" in response.text
    assert acc.api.count("backups") == 0


def test_incrementals_chain_to_their_parent_and_a_delete_removes_the_children_first(
    acc: AccountsApi, tmp_path: Path
) -> None:
    iid = acc.active_instance()
    full = _completed(acc, iid)
    incremental = _completed(acc, iid, incremental=1)
    assert incremental["parent_id"] == full["id"]
    explicit = _completed(acc, iid, parent_id=incremental["id"])
    assert explicit["parent_id"] == incremental["id"]
    engine: AccountsEngine = acc.engines["postgresql"]
    assert [run.parent.backup_id if run.parent else None for run in engine.fake_backups.runs] == [
        None, full["id"], incremental["id"]]
    assert acc.api.delete(f"/backups/{full['id']}").status_code == 202
    acc.drain()
    for gone in (full, incremental, explicit):
        assert acc.api.get(f"/backups/{gone['id']}").status_code == 404
    assert not [p for p in (tmp_path / "backups").rglob("*") if p.is_file()]


def test_redis_has_no_incrementals_and_says_so(acc: AccountsApi) -> None:
    engine = acc.engines["redis"]
    engine.fake_backups.incremental = False
    iid = acc.active_instance("redis")
    _completed(acc, iid)
    response = _backup(acc, iid, incremental=1)
    assert response.status_code == 400 and "no incrementals" in response.text


def test_a_restore_feeds_the_extract_exactly_what_was_dumped_and_rotates_the_credential(acc: AccountsApi) -> None:
    iid = acc.active_instance()
    full = _completed(acc, iid)
    response = acc.api.post("/instances", {"instance": {
        "name": "copy", "flavorRef": "1", "volume": {"size": 1}, "restorePoint": {"backupRef": full["id"]}}})
    assert response.status_code == 200, response.text
    copy = response.json()["instance"]
    assert copy["datastore"]["version"] == full["datastore"]["version"]
    acc.drain()
    shown = acc.api.get(f"/instances/{copy['id']}").json()["instance"]
    assert shown["status"] == "ACTIVE", shown
    runtime: Any = acc.deps.runtime
    assert runtime.tool_inputs[(EXTRACT, "0")] == DUMP
    assert [adopted for adopted, _ in acc.engines["postgresql"].fake_backups.adopted] == [copy["id"]]


def test_restore_refusals_write_nothing(acc: AccountsApi) -> None:
    iid = acc.active_instance()
    full = _completed(acc, iid)
    before = acc.api.count("instances")

    def restore(**fields: Any) -> Any:
        body = {"name": "copy", "flavorRef": "1", "volume": {"size": 1}, "restorePoint": {"backupRef": full["id"]}}
        body.update(fields)
        return acc.api.post("/instances", {"instance": body})

    wrong_version = restore(datastore={"type": "postgresql", "version": "15"})
    assert wrong_version.status_code == 400 and "only be restored into" in wrong_version.text
    unknown = restore(restorePoint={"backupRef": "2" * 8 + "-2222-2222-2222-" + "2" * 12})
    assert unknown.status_code == 404
    assert acc.api.post("/instances", {"instance": {
        "name": "c", "flavorRef": "1", "volume": {"size": 1}, "restorePoint": {"backupRef": full["id"]}}},
        who="other", project=acc.api.other_project).status_code == 404
    assert acc.api.count("instances") == before


@pytest.mark.parametrize("damage", ["corrupt", "truncate", "delete"])
def test_a_damaged_artifact_fails_the_restore_with_a_fault_naming_the_backup(
    acc: AccountsApi, tmp_path: Path, damage: str
) -> None:
    iid = acc.active_instance()
    full = _completed(acc, iid)
    with acc.api.db.unit_of_work(write=False) as uow:
        record = uow.backups.get(full["id"])
    assert record is not None
    manifest = Manifest.from_dict(record.manifest)
    data = next(p for p in (tmp_path / "backups").rglob("*") if p.is_file() and p.name == manifest.key.rsplit("/")[-1])
    if damage == "corrupt":
        raw = bytearray(data.read_bytes())
        raw[len(raw) // 2] ^= 0xFF
        data.write_bytes(bytes(raw))
    elif damage == "truncate":
        data.write_bytes(data.read_bytes()[: data.stat().st_size // 2])
    else:
        data.unlink()
    response = acc.api.post("/instances", {"instance": {
        "name": "copy", "flavorRef": "1", "volume": {"size": 1}, "restorePoint": {"backupRef": full["id"]}}})
    copy = response.json()["instance"]
    acc.drain()
    shown = acc.api.get(f"/instances/{copy['id']}").json()["instance"]
    assert shown["status"] == "ERROR"
    assert full["id"] in shown["fault"]["message"], shown["fault"]
    # The backup itself is untouched by a failed restore.
    assert acc.api.get(f"/backups/{full['id']}").json()["backup"]["status"] == "COMPLETED"


def test_backup_strategies_set_the_default_container(acc: AccountsApi) -> None:
    iid = acc.active_instance()
    created = acc.api.post("/backup_strategies", {"backup_strategy": {"swift_container": "team-backups"}})
    assert created.status_code == 200, created.text
    assert created.json()["backup_strategy"] == {
        "project_id": acc.api.project, "instance_id": None, "backend": "swift", "swift_container": "team-backups"}
    listed = acc.api.get("/backup_strategies").json()["backup_strategies"]
    assert [s["swift_container"] for s in listed] == ["team-backups"]
    backup = _completed(acc, iid)
    assert "/team-backups/" in backup["locationRef"]
    deleted = acc.api.client.delete(acc.api.url("/backup_strategies"), headers=acc.api.headers())
    assert deleted.status_code == 202
    assert acc.api.get("/backup_strategies").json()["backup_strategies"] == []


def test_lists_filter_and_page(acc: AccountsApi) -> None:
    first, second = acc.active_instance(), acc.active_instance()
    ids = [_completed(acc, first)["id"], _completed(acc, second)["id"], _completed(acc, first)["id"]]
    page = acc.api.get("/backups?limit=2").json()
    assert [b["id"] for b in page["backups"]] == ids[:2]
    next_href = page["links"][0]["href"]
    assert "marker=" in next_href
    rest = acc.api.get(f"/backups?limit=2&marker={ids[1]}").json()
    assert [b["id"] for b in rest["backups"]] == ids[2:]
    assert [b["id"] for b in acc.api.get(f"/backups?instance_id={first}").json()["backups"]] == [ids[0], ids[2]]
    assert acc.api.get("/backups?datastore=redis").json()["backups"] == []
    assert acc.api.get("/backups", who="other", project=acc.api.other_project).json()["backups"] == []
    everyone = acc.api.get("/backups?all_projects=1", who="admin", project=acc.api.admin_project).json()
    assert len(everyone["backups"]) == 3


def test_a_backup_outlives_its_instance(acc: AccountsApi) -> None:
    iid = acc.active_instance()
    full = _completed(acc, iid)
    assert acc.api.delete(f"/instances/{iid}").status_code == 202
    acc.drain()
    assert acc.api.get(f"/backups/{full['id']}").json()["backup"]["status"] == "COMPLETED"


def _archiving(acc: AccountsApi) -> tuple[str, Any]:
    engine = acc.engines["postgresql"]
    engine.fake_backups.archive_spec = ArchiveSpec("/nonexistent/archive", r"[0-9A-F]{24}", 1 << 20)
    iid = acc.active_instance()
    runtime: Any = acc.deps.runtime
    return iid, runtime


def _instance(acc: AccountsApi, iid: str) -> Any:
    with acc.api.db.unit_of_work(write=False) as uow:
        return uow.instances.get(iid)


def test_the_shipper_moves_archived_segments_to_storage_and_streams_pieces_back(acc: AccountsApi) -> None:
    iid, runtime = _archiving(acc)
    segment = "000000010000000000000004"
    runtime.archive[iid] = {segment: bytes(range(256)) * 64, "000000010000000000000004.part": b"half",
                            "junk": b"x"}
    shipper = ArchiveShipper(acc.deps, "test")
    assert shipper.ship(_instance(acc, iid)) == 1
    assert sorted(runtime.archive[iid]) == ["000000010000000000000004.part", "junk"]  # only finished ones go
    assert shipped_names(acc.deps, iid) == [segment]
    stream = b"".join(stream_pieces(acc.deps, iid, [ArchivePiece(segment, 256, 1024)]))
    with tarfile.open(fileobj=io.BytesIO(stream)) as archive:
        (member,) = archive.getmembers()
        assert member.name == f"{segment}.256"
        assert archive.extractfile(member).read() == (bytes(range(256)) * 64)[256:1024]  # type: ignore[union-attr]


def test_an_archive_that_cannot_ship_degrades_the_instance_until_it_ships_again(
    acc: AccountsApi, monkeypatch: pytest.MonkeyPatch
) -> None:
    iid, runtime = _archiving(acc)
    runtime.archive[iid] = {"000000010000000000000005": b"wal"}
    storage = acc.deps.backups.storage  # type: ignore[union-attr]

    def refuse(key: str) -> Any:
        raise TemporaryError("the bucket is unreachable")

    monkeypatch.setattr(storage, "open_write", refuse)
    with pytest.raises(TemporaryError):
        ArchiveShipper(acc.deps, "test").ship(_instance(acc, iid))
    stalled = _instance(acc, iid)
    degraded = {c.type: c for c in stalled.conditions}[ConditionType.DEGRADED]
    assert (degraded.status, degraded.reason) == (True, Reason.ARCHIVE_NOT_SHIPPING)
    assert "the bucket is unreachable" in degraded.message
    assert runtime.archive[iid]  # nothing removed that was not shipped
    monkeypatch.undo()
    assert ArchiveShipper(acc.deps, "test").ship(stalled) == 1
    healthy = {c.type: c for c in _instance(acc, iid).conditions}[ConditionType.DEGRADED]
    assert healthy.status is False


def test_a_volume_too_small_for_the_backup_is_refused_before_anything_is_built(acc: AccountsApi) -> None:
    iid = acc.active_instance()
    full = _completed(acc, iid)
    with acc.api.db.unit_of_work() as uow:  # as if the source had held 3.5 GB
        record = uow.backups.get(full["id"])
        assert record is not None
        uow.backups.complete(full["id"], location=record.location, size_bytes=1 << 30, raw_bytes=int(3.5 * (1 << 30)),
                             metadata=record.metadata, manifest=record.manifest)
    before = acc.api.count("instances")
    response = acc.api.post("/instances", {"instance": {
        "name": "copy", "flavorRef": "1", "volume": {"size": 2}, "restorePoint": {"backupRef": full["id"]}}})
    assert response.status_code == 400 and "volume.size" in response.text and "at least 4 GB" in response.text
    assert acc.api.count("instances") == before


def test_while_a_backup_runs_account_writes_are_accepted_and_other_actions_are_422(acc: AccountsApi) -> None:
    iid = acc.active_instance()
    assert _backup(acc, iid).status_code == 202
    with acc.api.db.unit_of_work() as uow:  # the reconciler's `start` step, as it writes it
        uow.instances.record(iid, Observation.BACKING_UP, "backup running", generation=0)
    shown = acc.api.get(f"/instances/{iid}").json()["instance"]
    assert (shown["status"], shown["operating_status"]) == ("BACKUP", "HEALTHY")
    assert acc.api.post(f"/instances/{iid}/databases", {"databases": [{"name": "during"}]}).status_code == 202
    restart = acc.api.post(f"/instances/{iid}/action", {"restart": {}})
    assert restart.status_code == 422 and "BACKUP" in restart.text
    again = _backup(acc, iid)
    assert again.status_code == 422
    acc.drain()  # the account write is applied beside the backup, which completes
    assert "during" in [d["name"] for d in acc.api.get(f"/instances/{iid}/databases").json()["databases"]]
    assert acc.api.get(f"/instances/{iid}").json()["instance"]["status"] == "ACTIVE"


def test_without_a_copy_on_write_pool_a_branch_restores_a_backup_taken_for_it(acc: AccountsApi) -> None:
    source = acc.active_instance()
    no_pool = dataclasses.replace(acc.api.ctx, branch_refusal="no copy-on-write volume pool (disabled)")
    acc.api.client.app.state.reddwarf = no_pool  # type: ignore[attr-defined]
    response = acc.api.post("/instances", {"instance": {
        "name": "copy", "flavorRef": "1", "volume": {"size": 1}, "restorePoint": {"instanceRef": source}}})
    assert response.status_code == 200, response.text
    copy = response.json()["instance"]
    taken = acc.api.get(f"/instances/{source}/backups").json()["backups"]
    assert [(b["name"], b["status"]) for b in taken] == [("branch copy", "NEW")]

    acc.drain()
    shown = acc.api.get(f"/instances/{copy['id']}").json()["instance"]
    assert shown["status"] == "ACTIVE", shown
    runtime: Any = acc.deps.runtime
    assert runtime.tool_inputs[(EXTRACT, "0")] == DUMP  # the source's data, through a full backup
    assert not any(call[0] == "snapshot" for call in runtime.calls)
    assert [adopted for adopted, _ in acc.engines["postgresql"].fake_backups.adopted] == [copy["id"]]
    # The backup taken for the branch is gone once the branch is made; the source is ACTIVE again.
    assert acc.api.get("/backups").json()["backups"] == []
    assert acc.api.get(f"/instances/{source}").json()["instance"]["status"] == "ACTIVE"


def test_a_branch_whose_backup_fails_fails_with_a_fault_naming_it(acc: AccountsApi) -> None:
    source = acc.active_instance()
    no_pool = dataclasses.replace(acc.api.ctx, branch_refusal="no copy-on-write volume pool (disabled)")
    acc.api.client.app.state.reddwarf = no_pool  # type: ignore[attr-defined]
    acc.engines["postgresql"].fake_backups.backup_error = PermanentError("the fake dump tool exited with 3")
    response = acc.api.post("/instances", {"instance": {
        "name": "copy", "flavorRef": "1", "volume": {"size": 1}, "restorePoint": {"instanceRef": source}}})
    assert response.status_code == 200, response.text
    acc.drain()
    shown = acc.api.get(f"/instances/{response.json()['instance']['id']}").json()["instance"]
    (backup,) = acc.api.get(f"/instances/{source}/backups").json()["backups"]
    assert shown["status"] == "ERROR" and backup["status"] == "FAILED"
    assert f"Backup {backup['id']} cannot be restored: it failed" in shown["fault"]["message"]
    assert acc.api.get(f"/instances/{source}").json()["instance"]["status"] == "ACTIVE"


def _snapshot_backup(acc: AccountsApi, source: str, name: str = "from-snapshot") -> dict[str, Any]:
    response = _backup(acc, source, name=name, from_snapshot=True)
    assert response.status_code == 202, response.text
    created = response.json()["backup"]
    assert created["status"] == "NEW" and created["snapshot_id"] is not None
    acc.drain()
    shown = acc.api.get(f"/backups/{created['id']}").json()["backup"]
    assert shown["status"] == "COMPLETED", shown
    return dict(shown)


def test_a_backup_from_a_snapshot_is_streamed_by_a_throwaway_server_on_a_copy(acc: AccountsApi) -> None:
    source = acc.active_instance()
    backup = _snapshot_backup(acc, source)
    runtime: Any = acc.deps.runtime
    # The instance was only snapshotted; the tool ran against a server on a copy of the snapshot, removed after.
    assert ("snapshot", source) in runtime.calls
    assert ("branch", backup["id"]) in runtime.calls and ("destroy", backup["id"]) in runtime.calls
    assert not any(call[0].startswith("tool:") and call[1] == source for call in runtime.calls)
    assert [run.parent for run in acc.engines["postgresql"].fake_backups.runs] == [None]
    # The snapshot is the tenant's, kept (named after the backup); the instance is ACTIVE.
    (snapshot,) = acc.api.get(f"/instances/{source}/snapshots").json()["snapshots"]
    assert (snapshot["id"], snapshot["name"], snapshot["status"]) == (backup["snapshot_id"], "backup from-snapshot",
                                                                       "COMPLETED")
    assert acc.api.get(f"/instances/{source}").json()["instance"]["status"] == "ACTIVE"
    assert backup["instance_id"] == source and backup["size"] is not None

    # It is never an incremental's parent: `incremental` takes the latest backup streamed from the instance.
    streamed = _completed(acc, source)
    _snapshot_backup(acc, source, name="later")
    incremental = _completed(acc, source, incremental=1)
    assert incremental["parent_id"] == streamed["id"]
    named = _backup(acc, source, parent_id=backup["id"])
    assert named.status_code == 400 and "parent_id" in named.text and "streamed from a snapshot" in named.text


def test_a_restore_of_a_backup_from_a_kept_snapshot_branches_from_it(acc: AccountsApi) -> None:
    source = acc.active_instance()
    backup = _snapshot_backup(acc, source)
    runtime: Any = acc.deps.runtime
    runtime.addresses = ("127.0.1.9", "127.0.1.10", "127.0.1.11")
    body = {"name": "copy", "flavorRef": "1", "volume": {"size": 1}, "restorePoint": {"backupRef": backup["id"]}}
    first = acc.api.post("/instances", {"instance": body}).json()["instance"]
    acc.drain()
    assert acc.api.get(f"/instances/{first['id']}").json()["instance"]["status"] == "ACTIVE"
    assert ("branch", first["id"]) in runtime.calls and ("prepare", first["id"]) not in runtime.calls
    assert runtime.tool_inputs == {}  # nothing streamed back

    # The snapshot deleted: the next restore streams the backup.
    assert acc.api.delete(f"/snapshots/{backup['snapshot_id']}").status_code == 202
    acc.drain()
    second = acc.api.post("/instances", {"instance": {**body, "name": "copy-2"}}).json()["instance"]
    acc.drain()
    assert acc.api.get(f"/instances/{second['id']}").json()["instance"]["status"] == "ACTIVE"
    assert ("branch", second["id"]) not in runtime.calls
    assert runtime.tool_inputs[(EXTRACT, "0")] == DUMP
    adopted = [instance for instance, _ in acc.engines["postgresql"].fake_backups.adopted]
    assert first["id"] in adopted and second["id"] in adopted


def test_backups_from_snapshots_refuse_what_they_cannot_be(acc: AccountsApi) -> None:
    source = acc.active_instance()
    incremental = _backup(acc, source, from_snapshot=True, incremental=1)
    assert incremental.status_code == 400 and "from_snapshot" in incremental.text and "full backup" in incremental.text
    not_bool = _backup(acc, source, from_snapshot="yes")
    assert not_bool.status_code == 400 and "from_snapshot" in not_bool.text
    no_pool = dataclasses.replace(acc.api.ctx, branch_refusal="no copy-on-write volume pool (disabled)")
    acc.api.client.app.state.reddwarf = no_pool  # type: ignore[attr-defined]
    refused = _backup(acc, source, from_snapshot=True)
    assert refused.status_code == 400 and "cannot take snapshots: no copy-on-write volume pool" in refused.text
    assert acc.api.get("/backups").json()["backups"] == [] and acc.api.count("snapshots") == 0


def test_a_snapshot_a_backup_streams_from_cannot_be_deleted_until_it_ends(acc: AccountsApi) -> None:
    source = acc.active_instance()
    created = _backup(acc, source, from_snapshot=True).json()["backup"]
    assert acc.worker.run_once()  # the snapshot is taken; the backup waits its turn
    snapshot = acc.api.get(f"/snapshots/{created['snapshot_id']}").json()["snapshot"]
    assert snapshot["status"] == "COMPLETED"
    refused = acc.api.delete(f"/snapshots/{created['snapshot_id']}")
    assert refused.status_code == 422 and f"being streamed into backup {created['id']}" in refused.text
    acc.drain()
    assert acc.api.get(f"/backups/{created['id']}").json()["backup"]["status"] == "COMPLETED"
    assert acc.api.delete(f"/snapshots/{created['snapshot_id']}").status_code == 202
    acc.drain()
    # The backup restores without its snapshot: it kept the source's credential of its own.
    response = acc.api.post("/instances", {"instance": {
        "name": "copy", "flavorRef": "1", "volume": {"size": 1}, "restorePoint": {"backupRef": created["id"]}}})
    assert response.status_code == 200, response.text
    acc.deps.runtime.addresses = ("127.0.1.9", "127.0.1.10")  # type: ignore[attr-defined]
    acc.drain()
    assert acc.api.get(f"/instances/{response.json()['instance']['id']}").json()["instance"]["status"] == "ACTIVE"
