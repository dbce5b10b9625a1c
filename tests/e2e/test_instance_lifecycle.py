"""A tenant's API call becomes a running PostgreSQL server, and every later call does what it says."""

from __future__ import annotations

import os
import pwd
import signal
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

from reddwarf.client import Instance, ReddwarfClient, UserRequest
from reddwarf.client.models import Volume
from reddwarf.domain.secret import Secret
from tests.support.server import ACTIVE_TIMEOUT, DELETE_TIMEOUT, ReddwarfProcesses, processes_of, wait_for

ALICE = UserRequest(name="alice", password=Secret("correct horse"), databases=("app",))
ActiveInstance = tuple[ReddwarfClient, Instance]


def connect(view: Instance, user: str, password: str, dbname: str) -> psycopg.Connection[Any]:
    return psycopg.connect(host=view.address, port=view.port, user=user, password=password, dbname=dbname,
                           connect_timeout=5)


@pytest.fixture
def active_instance(reddwarf: ReddwarfProcesses, unique_name: str) -> Iterator[ActiveInstance]:
    with reddwarf.tenant() as client:
        created = client.create_instance(unique_name, "1", 1, datastore="postgresql", version="15",
                                         databases=["app"], users=[ALICE])
        assert created.status == "BUILD"
        view = client.wait_for_instance(created.id, timeout=ACTIVE_TIMEOUT)
        yield client, view
        if any(i.id == view.id for i in client.list_instances(all=True)):
            client.delete_instance(view.id)
            client.wait_for_delete(view.id, timeout=DELETE_TIMEOUT)


def test_created_instance_is_a_real_server_the_tenant_user_can_use(active_instance: ActiveInstance) -> None:
    _client, view = active_instance
    assert view.operating_status == "HEALTHY"
    assert view.datastore is not None and (view.datastore.type, view.datastore.version) == ("postgresql", "15")
    assert view.address is not None and view.address.startswith("127.0.90.")
    assert view.port == 5432
    with connect(view, "alice", "correct horse", "app") as conn:
        conn.execute("create table t (i int)")
        conn.execute("insert into t values (42)")
        row = conn.execute("select i from t").fetchone()
        assert row == (42,)
        checksums = conn.execute("show data_checksums").fetchone()
        assert checksums == ("on",)


def test_wrong_password_is_refused(active_instance: ActiveInstance) -> None:
    _client, view = active_instance
    with pytest.raises(psycopg.OperationalError):
        connect(view, "alice", "wrong", "app")


def test_server_runs_as_its_own_unprivileged_user(active_instance: ActiveInstance) -> None:
    _client, view = active_instance
    users = {pwd.getpwuid(Path(f"/proc/{pid}").stat().st_uid).pw_name
             for pid in _server_pids(view)}
    assert len(users) == 1
    (user,) = users
    assert user != "root"
    assert pwd.getpwnam(user).pw_uid != 0


def test_killed_server_is_restarted_and_status_shows_it(active_instance: ActiveInstance) -> None:
    client, view = active_instance
    (postmaster,) = [pid for pid in _server_pids(view) if _is_postmaster(pid)]
    os.kill(postmaster, signal.SIGKILL)
    wait_for(lambda: client.get_instance(view.id).status != "ACTIVE"
             or _restarted(view, postmaster), 30, "the health sweep to notice the dead server")
    wait_for(lambda: _restarted(view, postmaster), 60, "the server to be restarted")
    healthy = client.wait_for_instance(view.id, timeout=ACTIVE_TIMEOUT)
    assert healthy.operating_status in {"HEALTHY", ""}
    with connect(view, "alice", "correct horse", "app") as conn:
        assert conn.execute("select 1").fetchone() == (1,)


def test_restart_action(active_instance: ActiveInstance) -> None:
    client, view = active_instance
    before = {pid for pid in _server_pids(view) if _is_postmaster(pid)}
    client.restart_instance(view.id)
    wait_for(lambda: _restarted(view, next(iter(before))), 60, "a new postmaster")
    client.wait_for_instance(view.id, timeout=ACTIVE_TIMEOUT)
    with connect(view, "alice", "correct horse", "app") as conn:
        assert conn.execute("select 1").fetchone() == (1,)


def test_delete_leaves_nothing_behind(reddwarf: ReddwarfProcesses, unique_name: str) -> None:
    with reddwarf.tenant() as client:
        created = client.create_instance(unique_name, "1", 1, datastore="postgresql", version="15")
        view = client.wait_for_instance(created.id, timeout=ACTIVE_TIMEOUT)
        user = _server_user(view)
        instance_dirs = list(reddwarf.state_dir.rglob(f"*{view.id}*"))
        assert instance_dirs, "the instance should have files under the state dir"
        client.delete_instance(view.id)
        client.wait_for_delete(view.id, timeout=DELETE_TIMEOUT)
    assert processes_of(user) == []
    with pytest.raises(KeyError):
        pwd.getpwnam(user)
    assert not [p for p in instance_dirs if p.exists()]
    assert not [line for line in Path("/proc/mounts").read_text().splitlines() if view.id in line]


def test_delete_while_building_supersedes_the_create(reddwarf: ReddwarfProcesses, unique_name: str) -> None:
    with reddwarf.tenant() as client:
        created = client.create_instance(unique_name, "1", 1, datastore="postgresql", version="15")
        assert created.status == "BUILD"
        client.delete_instance(created.id)
        client.wait_for_delete(created.id, timeout=DELETE_TIMEOUT)
    assert not [line for line in Path("/proc/mounts").read_text().splitlines() if created.id in line]


def _server_pids(view: Instance) -> list[int]:
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().split(b"\0")
        except (FileNotFoundError, ProcessLookupError, PermissionError):
            continue
        if cmdline and cmdline[0].endswith(b"postgres") and _runs_in_instance_dirs(int(entry.name), view):
            pids.append(int(entry.name))
    return pids


def _runs_in_instance_dirs(pid: int, view: Instance) -> bool:
    try:
        cwd = os.readlink(f"/proc/{pid}/cwd")
    except OSError:
        return False
    return view.id in cwd or view.id[:12] in cwd


def _is_postmaster(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    ppid = int(stat.rsplit(")", 1)[1].split()[1])
    return not _is_postgres(ppid)


def _is_postgres(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")[0].endswith(b"postgres")
    except (FileNotFoundError, IndexError):
        return False


def _restarted(view: Instance, old_pid: int) -> bool:
    return any(_is_postmaster(pid) and pid != old_pid for pid in _server_pids(view))


def _server_user(view: Instance) -> str:
    pids = _server_pids(view)
    assert pids, "no server process found"
    return pwd.getpwuid(Path(f"/proc/{pids[0]}").stat().st_uid).pw_name


def test_every_installed_version_serves_tenants(reddwarf: ReddwarfProcesses, unique_name: str) -> None:
    with reddwarf.tenant() as client:
        versions = [v.name for v in client.list_datastore_versions("postgresql")]
        assert "15" in versions
        if os.environ.get("CI"):
            assert "18" in versions, "CI installs PostgreSQL 18 from PyPI (dev.sh test)"
        carol = UserRequest(name="carol", password=Secret("pw with spaces"))
        for version in versions:
            created = client.create_instance(f"{unique_name}-{version}", "1", 1, datastore="postgresql",
                                             version=version, users=[carol])
            view = client.wait_for_instance(created.id, timeout=ACTIVE_TIMEOUT)
            assert view.datastore is not None and (view.datastore.version_number or "").startswith(version)
            with connect(view, "carol", "pw with spaces", "postgres") as conn:
                server_version = conn.execute("show server_version").fetchone()
                assert server_version is not None and server_version[0].startswith(version)
            client.delete_instance(view.id)
            client.wait_for_delete(view.id, timeout=DELETE_TIMEOUT)


def test_view_reports_volume_usage_and_history(
    active_instance: ActiveInstance, reddwarf: ReddwarfProcesses
) -> None:
    client, view = active_instance

    def reported() -> Volume | None:
        volume = client.get_instance(view.id).volume
        return volume if volume is not None and volume.used is not None else None

    shown: Volume = wait_for(reported, 30, "the health sweep to report volume usage")
    assert shown.size == 1
    assert shown.used is not None and 0 < shown.used < 1
    with reddwarf.client() as wire:  # the events are Reddwarf's extension, read off the wire
        events = wire.get(f"/instances/{view.id}/events").json()["events"]
    messages = [e["message"] for e in events]
    assert any("ready" in m for m in messages), messages
