"""Verified backups (`REDDWARF_VERIFY_BACKUPS`) with a fake engine and runtime and the real filesystem storage:
with the setting on, every completed backup is restored into a throwaway server (no instance row), checked
and removed, and the verdict shows on the backup; a failing check or a damaged artifact records
`verified: false` with the reason and leaves the backup as it was; with the setting off nothing runs.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from test_api_accounts_support import AccountsApi, build_accounts_api
from tests.fakes.backups import EXTRACT

from reddwarf.domain.capabilities import Capability
from reddwarf.domain.errors import PermanentError, TemporaryError
from reddwarf.domain.operations import Kind
from reddwarf.storage.artifact import ArtifactOptions, Manifest
from reddwarf.storage.filesystem import FilesystemStorage
from reddwarf.workflows.kernel.worker import Worker
from reddwarf.workflows.reconcilers.deps import BackupFiles
from reddwarf.workflows.worker import handlers

DUMP = os.urandom(64 << 10) + b"the end"


def _api(tmp_path: Path, store_template: Path, verify: bool) -> Iterator[AccountsApi]:
    for built in build_accounts_api(tmp_path, store_template):
        for engine in built.engines.values():
            engine.offered = engine.offered | {Capability.BACKUP}
        files = BackupFiles(FilesystemStorage(tmp_path / "backups"), ArtifactOptions(chunk_bytes=16 << 10))
        deps = dataclasses.replace(built.deps, backups=files, verify_backups=verify)
        built.deps = deps
        built.worker = Worker(built.api.db, handlers(deps), lease_ttl=30, poll_interval=0.01, deadline=900)
        runtime: Any = deps.runtime
        runtime.tool_output = DUMP
        runtime.addresses = ("127.0.1.9", "127.0.1.10")  # the source holds the first: the throwaway the second
        yield built


@pytest.fixture
def acc(tmp_path: Path, store_template: Path) -> Iterator[AccountsApi]:
    yield from _api(tmp_path, store_template, verify=True)


@pytest.fixture
def acc_off(tmp_path: Path, store_template: Path) -> Iterator[AccountsApi]:
    yield from _api(tmp_path, store_template, verify=False)


def _backed_up(acc: AccountsApi) -> tuple[str, dict[str, Any]]:
    iid = acc.active_instance()
    response = acc.api.post("/backups", {"backup": {"name": "nightly", "instance": iid}})
    assert response.status_code == 202, response.text
    acc.drain()
    shown = acc.api.get(f"/backups/{response.json()['backup']['id']}").json()["backup"]
    assert shown["status"] == "COMPLETED", shown
    return iid, dict(shown)


def _kinds(acc: AccountsApi) -> list[str]:
    return [kind for kind, _ in acc.api.operations()]


def test_a_completed_backup_is_restored_into_a_throwaway_server_checked_and_removed(acc: AccountsApi) -> None:
    iid, backup = _backed_up(acc)
    assert backup["verified"] is True, backup
    assert backup["verified_at"] is not None
    assert "fake check passed" in backup["verification"]
    runtime: Any = acc.deps.runtime
    fake = acc.engines["postgresql"].fake_backups
    # The throwaway lives under the backup's id: restored from the artifact, started, checked, destroyed.
    assert fake.checked == [backup["id"]]
    assert runtime.tool_inputs[(EXTRACT, "0")] == DUMP
    mine = [call for call, owner in runtime.calls if owner == backup["id"]]
    assert mine[0] == "prepare" and "initialise" in mine and "start" in mine and mine[-1] == "destroy", mine
    with acc.api.db.unit_of_work(write=False) as uow:
        assert uow.addresses.get(backup["id"]) is None  # its address released
        assert uow.instances.get(backup["id"], include_deleted=True) is None  # never an instance
    assert Kind.BACKUP_VERIFY in _kinds(acc)
    # Tenants see no throwaway instance, and the source is ACTIVE.
    listed = acc.api.get("/instances").json()["instances"]
    assert [item["id"] for item in listed] == [iid]
    assert acc.api.get(f"/instances/{iid}").json()["instance"]["status"] == "ACTIVE"


def test_a_failing_check_records_verified_false_with_the_reason_and_keeps_the_backup(acc: AccountsApi) -> None:
    acc.engines["postgresql"].fake_backups.check_result = PermanentError("index pg_class_oid_index is corrupt")
    _, backup = _backed_up(acc)
    assert backup["verified"] is False, backup
    assert "index pg_class_oid_index is corrupt" in backup["verification"]
    assert backup["status"] == "COMPLETED" and backup.get("fault") is None
    runtime: Any = acc.deps.runtime
    assert ("destroy", backup["id"]) in runtime.calls  # removed on the failure path too
    with acc.api.db.unit_of_work(write=False) as uow:
        assert uow.addresses.get(backup["id"]) is None


def test_a_damaged_artifact_fails_the_verification_naming_the_reason(acc: AccountsApi) -> None:
    # Take the backup with verification held back (no worker in between), damage it, then let it run.
    iid = acc.active_instance()
    response = acc.api.post("/backups", {"backup": {"name": "nightly", "instance": iid}})
    backup_id = response.json()["backup"]["id"]
    while acc.api.get(f"/backups/{backup_id}").json()["backup"]["status"] != "COMPLETED":
        acc.worker.run_once()
    with acc.api.db.unit_of_work(write=False) as uow:
        backup = uow.backups.get(backup_id)
    assert backup is not None
    files: Any = acc.deps.backups
    key = Manifest.from_dict(backup.manifest).key
    stored = bytearray(files.storage.get(key))
    stored[len(stored) // 2] ^= 0xFF
    files.storage.put(key, bytes(stored))
    acc.drain()
    shown = acc.api.get(f"/backups/{backup_id}").json()["backup"]
    assert shown["verified"] is False and shown["status"] == "COMPLETED", shown
    assert backup_id in shown["verification"] and "corrupted" in shown["verification"], shown
    assert acc.engines["postgresql"].fake_backups.checked == []


def test_with_the_setting_off_nothing_is_verified(acc_off: AccountsApi) -> None:
    _, backup = _backed_up(acc_off)
    assert backup["verified"] is None and backup["verified_at"] is None and backup["verification"] is None
    assert Kind.BACKUP_VERIFY not in _kinds(acc_off)
    assert acc_off.engines["postgresql"].fake_backups.checked == []


def _completed_but_unverified(acc: AccountsApi) -> str:
    iid = acc.active_instance()
    response = acc.api.post("/backups", {"backup": {"name": "nightly", "instance": iid}})
    backup_id = str(response.json()["backup"]["id"])
    while acc.api.get(f"/backups/{backup_id}").json()["backup"]["status"] != "COMPLETED":
        acc.worker.run_once()
    return backup_id


def test_a_retry_resumes_on_the_throwaway_an_earlier_attempt_built(acc: AccountsApi) -> None:
    fake = acc.engines["postgresql"].fake_backups
    fake.check_result = TemporaryError("the restored server went away", delay=0.01)
    backup_id = _completed_but_unverified(acc)
    while not fake.checked:
        acc.worker.run_once()
    with acc.api.db.unit_of_work(write=False) as uow:
        held = uow.addresses.get(backup_id)
    assert held is not None  # the throwaway's address outlives the failed attempt
    fake.check_result = "fake check passed"
    acc.drain()
    shown = acc.api.get(f"/backups/{backup_id}").json()["backup"]
    assert shown["verified"] is True, shown
    runtime: Any = acc.deps.runtime
    mine = [call for call, owner in runtime.calls if owner == backup_id]
    # Restored once (the journal skips what the first attempt did), checked twice, destroyed once.
    assert mine.count("prepare") == 1 and mine.count("initialise") == 1 and mine.count("destroy") == 1, mine
    assert len(fake.checked) == 2


def test_a_backup_deleted_before_its_verification_ran_leaves_nothing(acc: AccountsApi) -> None:
    backup_id = _completed_but_unverified(acc)
    assert acc.api.delete(f"/backups/{backup_id}").status_code == 202
    acc.drain()
    assert acc.api.get(f"/backups/{backup_id}").status_code == 404
    assert acc.engines["postgresql"].fake_backups.checked == []
    runtime: Any = acc.deps.runtime
    assert [call for call, owner in runtime.calls if owner == backup_id] == ["destroy"]
